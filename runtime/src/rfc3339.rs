//! RFC 3339 timestamps in UTC with nanoseconds
//! (`2026-12-02T05:10:00.123456789Z`), the time format of CRI log records.
//!
//! Written here rather than taken from a crate because the monitor has no
//! `std` (no `SystemTime`); the calendar arithmetic is in [`crate::civil`].

/// Length of a formatted timestamp.
pub const LEN: usize = 30;

use crate::civil::{civil_from_days, days_from_civil, days_in_month};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Formats Unix time in nanoseconds. Every `i64` is a year between 1677
/// and 2262, so four digits always suffice.
pub fn format_nanos(unix_nanos: i64) -> [u8; LEN] {
    let secs = unix_nanos.div_euclid(NANOS_PER_SEC);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put(&mut out[0..4], y as u64);
    put(&mut out[5..7], m as u64);
    put(&mut out[8..10], d as u64);
    put(&mut out[11..13], (sod / 3600) as u64);
    put(&mut out[14..16], (sod / 60 % 60) as u64);
    put(&mut out[17..19], (sod % 60) as u64);
    put(&mut out[20..29], nanos as u64);
    out
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (a fraction of 1 to 9 digits)
/// into Unix time in nanoseconds. `None` for anything else, including
/// offsets other than `Z` and out-of-range fields.
pub fn parse_nanos(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (h, mi, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let rest = &b[19..];
    let (frac, tail) = match rest.first() {
        Some(b'.') => {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let mut n = num(&rest[1..1 + digits])?;
            for _ in digits..9 {
                n *= 10;
            }
            (n, &rest[1 + digits..])
        }
        _ => (0, rest),
    };
    if tail != b"Z" {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(frac)
}

fn num(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn put(dst: &mut [u8], mut n: u64) {
    for c in dst.iter_mut().rev() {
        *c = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn fmt(n: i64) -> String {
        String::from_utf8(format_nanos(n).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            fmt(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(
            parse_nanos("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        assert_eq!(parse_nanos("1970-01-01T00:00:00.5Z"), Some(500_000_000));
    }

    #[test]
    fn agrees_with_humantime_both_ways() {
        // Every 7,919th second over 1970-2200 plus odd nanoseconds: crosses
        // leap days, century rules and month ends.
        let mut n: i64 = 3;
        while n < 7_258_118_400 * 1_000_000_000 {
            let ours = fmt(n);
            let theirs =
                humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(n as u64))
                    .to_string();
            assert_eq!(ours, theirs);
            assert_eq!(parse_nanos(&ours), Some(n));
            let t = humantime::parse_rfc3339(&ours).unwrap();
            assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64, n);
            n += 7_919_000_000_123;
        }
    }

    #[test]
    fn rejects_what_is_not_a_utc_timestamp() {
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02T05:10:00",
            "2026-12-02T05:10:00+01:00",
            "2026-13-02T05:10:00Z",
            "2026-02-29T05:10:00Z",
            "2026-12-02T24:10:00Z",
            "2026-12-02T05:10:00.Z",
            "2026-12-02T05:10:00.1234567890Z",
            "2026-12-02 05:10:00Z",
            "2026-12-02T05:10:00Zjunk",
            "+026-12-02T05:10:00Z",
        ] {
            assert_eq!(parse_nanos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn covers_the_whole_range() {
        assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(parse_nanos(&fmt(1 << 62)), Some(1 << 62));
    }
}
