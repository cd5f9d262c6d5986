//! Times for people: RFC 3339, "5 seconds ago", "About a minute".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_runtime::civil::civil_from_days;
use prost_types::Timestamp;

/// Formats a timestamp as RFC 3339 in UTC, with as many fractional digits as
/// needed (none for whole seconds), like Go's RFC3339Nano.
pub fn rfc3339(ts: &Timestamp) -> String {
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if ts.nanos > 0 {
        let frac = format!("{:09}", ts.nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// RFC 3339 with always nine fractional digits, so that `logs -t` output
/// lines up (Docker's RFC3339NanoFixed).
pub fn rfc3339_fixed(ts: &Timestamp) -> String {
    let whole = rfc3339(&Timestamp {
        seconds: ts.seconds,
        nanos: 0,
    });
    format!(
        "{}.{:09}Z",
        whole.trim_end_matches('Z'),
        ts.nanos.clamp(0, 999_999_999)
    )
}

/// Time from `ts` to `now` (zero if `ts` is in the future, e.g. clock skew
/// between berthctl's host and the agent's).
pub fn since(ts: &Timestamp, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ns = i128::from(now.as_secs() as i64) * 1_000_000_000 + i128::from(now.subsec_nanos());
    let ts_ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    let diff = (now_ns - ts_ns).max(0);
    Duration::new((diff / 1_000_000_000) as u64, (diff % 1_000_000_000) as u32)
}

/// A duration in Docker's words: "Less than a second", "5 seconds",
/// "About a minute", "3 hours", "2 weeks" (Docker's `units.HumanDuration`).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// "5 seconds ago", or "N/A" for an unset time.
pub fn ago(ts: &Option<Timestamp>, now: SystemTime) -> String {
    match ts {
        Some(t) => format!("{} ago", human_duration(since(t, now))),
        None => "N/A".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            rfc3339(&Timestamp {
                seconds: 0,
                nanos: 0
            }),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(&Timestamp {
                seconds: 1_714_557_600,
                nanos: 500_000_000
            }),
            "2024-05-01T10:00:00.5Z"
        );
        assert_eq!(
            rfc3339(&Timestamp {
                seconds: 1_709_164_799,
                nanos: 1
            }),
            "2024-02-28T23:59:59.000000001Z"
        );
        assert_eq!(
            rfc3339(&Timestamp {
                seconds: -1,
                nanos: 0
            }),
            "1969-12-31T23:59:59Z"
        );
        let t = Timestamp {
            seconds: 1_714_557_600,
            nanos: 123_000,
        };
        assert_eq!(crate::parse::rfc3339(&rfc3339(&t)), Some(t));
        assert_eq!(rfc3339_fixed(&t), "2024-05-01T10:00:00.000123000Z");
    }

    #[test]
    fn durations_in_words() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(5)), "5 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(150)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3 * 3600)), "3 hours");
        assert_eq!(human_duration(s(3 * 86_400)), "3 days");
        assert_eq!(human_duration(s(21 * 86_400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86_400)), "3 months");
        assert_eq!(human_duration(s(3 * 365 * 86_400)), "3 years");
        let now = UNIX_EPOCH + s(1000);
        assert_eq!(ago(&ts(995), now), "5 seconds ago");
        assert_eq!(ago(&ts(2000), now), "Less than a second ago");
        assert_eq!(ago(&None, now), "N/A");
    }
}
