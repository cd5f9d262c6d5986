//! Parsing of the values users type on the command line: sizes, CPU counts,
//! labels, environment variables, signals, durations and times.
//!
//! Every parser returns `Result<_, String>` so it can be used directly as a
//! clap `value_parser`, which turns the message into a usage error.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_runtime::civil::{days_from_civil, days_in_month};
use prost_types::Timestamp;

pub mod mounts;
mod ports;
pub use ports::ports;

/// Parses a memory size such as `64m`, `1.5g`, `512k`, `100` (bytes) or
/// `64MiB`, the way Docker's `--memory` does: case-insensitive, 1024-based.
pub fn size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let bad = || {
        format!(
            "invalid size {s:?} (expected a number with an optional b, k, m or g suffix, e.g. 64m)"
        )
    };
    if num.is_empty() {
        return Err(bad());
    }
    // "k", "kb" and "kib" all mean KiB, as in Docker's RAMInBytes.
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = decimal_times(num, mult).ok_or_else(bad)?;
    i64::try_from(bytes).map_err(|_| format!("size {s:?} is too large"))
}

/// Parses `--memory-swap`: a size, or `-1` for unlimited swap.
pub fn swap_size(s: &str) -> Result<i64, String> {
    if s.trim() == "-1" {
        Ok(-1)
    } else {
        size(s)
    }
}

/// Parses `--cpus` (`0.5`, `2`, `1.25`) into billionths of a CPU.
///
/// Done in integer arithmetic so that `0.1` is exactly 100000000 rather than
/// whatever a float rounds to.
pub fn nano_cpus(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid CPU count {s:?} (expected a number such as 0.5 or 2)");
    let t = s.trim();
    if let Some((_, frac)) = t.split_once('.') {
        if frac.len() > 9 {
            return Err(format!(
                "CPU count {s:?} is too precise (at most 9 decimals)"
            ));
        }
    }
    let n = decimal_times(t, 1_000_000_000).ok_or_else(bad)?;
    i64::try_from(n).map_err(|_| format!("CPU count {s:?} is too large"))
}

/// Multiplies a non-negative decimal number (`"1.5"`) by `mult`, truncating
/// any fraction of a unit left over. `None` when `num` is not a number or
/// the result overflows.
fn decimal_times(num: &str, mult: u64) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_part: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let total = int_part.checked_mul(mult)?;
    // The fraction as digits / 10^len, in 128 bits so 18 digits times any
    // u64 multiplier cannot overflow; what `mult` cannot resolve is dropped.
    let frac = &frac[..frac.len().min(18)];
    let frac_part = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().ok()?;
        digits * u128::from(mult) / 10u128.pow(frac.len() as u32)
    };
    let total = total.checked_add(u64::try_from(frac_part).ok()?)?;
    Some(total)
}

/// Parses a `key=value` label; `key` alone gives an empty value, like Docker.
pub fn label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("invalid label {s:?}: the key is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses a `--sysctl KEY=VALUE` (Docker's syntax; the value is required,
/// and may be empty or hold '=').
pub fn sysctl(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "invalid sysctl {:?}: expected KEY=VALUE",
            s.chars().take(64).collect::<String>()
        )),
    }
}

/// Collects labels into a map; a later value for the same key wins.
pub fn labels(items: &[(String, String)]) -> HashMap<String, String> {
    items.iter().cloned().collect()
}

/// Expands `-e` values into `KEY=value` strings: `KEY=value` is kept as is,
/// a bare `KEY` takes its value from `lookup` (berthctl's own environment)
/// and is dropped when unset there, as `docker run -e` does.
pub fn env(
    items: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.split_once('=') {
            Some(("", _)) => {
                return Err(format!(
                    "invalid environment variable {item:?}: the name is empty"
                ))
            }
            Some(_) => out.push(item.clone()),
            None if item.is_empty() => {
                return Err("invalid environment variable \"\": the name is empty".into())
            }
            None => {
                if let Some(v) = lookup(item) {
                    out.push(format!("{item}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Linux signal names and numbers (x86/arm, the architectures berth runs on):
/// exactly the set berthd accepts (`agent/src/signal.rs`, through nix's
/// `Signal`), so a signal berthctl lets through is never refused by the
/// agent. No real-time signals (berthd cannot send them), no aliases (IOT,
/// POLL) berthd does not know; `signals_match_the_agents` keeps the two in
/// step.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The highest signal number berthd accepts (SIGSYS; real-time signals are
/// not supported).
const MAX_SIGNAL: i32 = 31;

/// Parses a Docker-style restart policy: "no", "on-failure",
/// "on-failure:3", "always", "unless-stopped".
pub fn restart_policy(s: &str) -> Result<berth::v1::RestartPolicy, String> {
    use berth::v1::restart_policy::Mode;
    let (name, retries) = match s.split_once(':') {
        Some((n, r)) => (n, Some(r)),
        None => (s, None),
    };
    let mode = match name {
        "no" => Mode::No,
        "on-failure" => Mode::OnFailure,
        "always" => Mode::Always,
        "unless-stopped" => Mode::UnlessStopped,
        _ => {
            return Err(format!(
                "unknown restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        }
    };
    let max_retries = match (mode, retries) {
        (_, None) => 0,
        (Mode::OnFailure, Some(r)) => r
            .parse()
            .map_err(|_| format!("{r:?} is not a number of retries"))?,
        (_, Some(_)) => return Err(format!("only on-failure takes a retry count: {s:?}")),
    };
    Ok(berth::v1::RestartPolicy {
        mode: mode as i32,
        max_retries,
    })
}

/// Parses a signal given as a name (`SIGTERM`, `term`) or number (`15`)
/// and returns its canonical spelling for the agent: `SIGTERM` or `15`.
///
/// Checked here so a typo is reported before anything is sent.
pub fn signal(s: &str) -> Result<String, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=MAX_SIGNAL).contains(&n) {
            return Ok(n.to_string());
        }
        return Err(format!(
            "invalid signal {s:?}: numbers go from 1 to {MAX_SIGNAL} (real-time signals are not supported)"
        ));
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.iter().any(|(n, _)| *n == name) {
        return Ok(format!("SIG{name}"));
    }
    Err(format!("invalid signal {s:?}"))
}

/// Parses a Go-style duration: `10s`, `5m`, `1h30m`, `1.5h`, `250ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 30s, 10m, 1h30m)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit_ns: u64 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        total_ns += u128::from(decimal_times(num, unit_ns).ok_or_else(bad)?);
        rest = tail;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// Parses `--since`: a duration back from `now` (`10m`), an RFC 3339 time
/// (`2024-05-01T10:00:00Z`), or Unix seconds (`1714557600`, `1714557600.5`).
pub fn since(s: &str, now: SystemTime) -> Result<Timestamp, String> {
    let t = s.trim();
    if let Some(ts) = rfc3339(t) {
        return Ok(ts);
    }
    if let Some(ts) = unix_seconds(t) {
        return Ok(ts);
    }
    let d = duration(t).map_err(|_| {
        format!("invalid time {s:?} (expected a duration such as 10m, an RFC 3339 time, or Unix seconds)")
    })?;
    let at = now.checked_sub(d).unwrap_or(UNIX_EPOCH);
    Ok(system_time_to_timestamp(at))
}

/// A `SystemTime` as a protobuf timestamp (times before 1970 clamp to it).
pub fn system_time_to_timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

fn unix_seconds(s: &str) -> Option<Timestamp> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let seconds = int.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        i32::try_from(decimal_times(&format!("0.{frac}"), 1_000_000_000)?).ok()?
    };
    Some(Timestamp { seconds, nanos })
}

/// Parses an RFC 3339 time (`2024-05-01T10:00:00Z`, `...T10:00:00.5+02:00`);
/// `t` may also be a space or lower-case, as RFC 3339 allows.
pub fn rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0i32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        nanos = i32::try_from(decimal_times(
            &format!("0.{}", &frac[..digits]),
            1_000_000_000,
        )?)
        .ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = o.get(0..2)?.parse().ok()?;
            let om: i64 = o.get(3..5)?.parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Some(Timestamp { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::civil::civil_from_days;

    #[test]
    fn sizes() {
        assert_eq!(size("100"), Ok(100));
        assert_eq!(size("100b"), Ok(100));
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("64MB"), Ok(64 << 20));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("1.5g"), Ok(3 << 29));
        assert_eq!(size("0.5k"), Ok(512));
        for bad in [
            "",
            "m",
            "-5m",
            "12x",
            "1.2.3m",
            "ten",
            "5 m",
            "99999999999999999999g",
            "5bb",
        ] {
            assert!(size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(swap_size("-1"), Ok(-1));
        assert_eq!(swap_size("128m"), Ok(128 << 20));
        assert!(swap_size("-2").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(nano_cpus("0.5"), Ok(500_000_000));
        assert_eq!(nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(nano_cpus("0.1"), Ok(100_000_000));
        assert_eq!(nano_cpus("1.25"), Ok(1_250_000_000));
        assert_eq!(nano_cpus(".5"), Ok(500_000_000));
        assert_eq!(nano_cpus("0.000000001"), Ok(1));
        assert!(nano_cpus("0.0000000001").is_err());
        assert!(nano_cpus("-1").is_err());
        assert!(nano_cpus("half").is_err());
        assert!(nano_cpus("").is_err());
    }

    #[test]
    fn labels_and_env() {
        assert_eq!(label("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(label("a"), Ok(("a".into(), "".into())));
        assert!(label("=b").is_err());
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(
            env(
                &["A=1".into(), "HOME".into(), "UNSET".into(), "B=".into()],
                lookup
            ),
            Ok(vec!["A=1".to_string(), "HOME=/root".into(), "B=".into()])
        );
        assert!(env(&["=x".into()], lookup).is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(signal("SIGKILL").as_deref(), Ok("SIGKILL"));
        assert_eq!(signal("kill").as_deref(), Ok("SIGKILL"));
        assert_eq!(signal("sigterm").as_deref(), Ok("SIGTERM"));
        assert_eq!(signal("9").as_deref(), Ok("9"));
        assert_eq!(signal("31").as_deref(), Ok("31"));
        assert!(signal("0").is_err());
        // Real-time signals and aliases berthd refuses are refused here too.
        assert!(signal("32").is_err());
        assert!(signal("64").is_err());
        assert!(signal("SIGRTMIN").is_err());
        assert!(signal("IOT").is_err());
        assert!(signal("POLL").is_err());
        assert!(signal("SIGFOO").is_err());
        assert!(signal("").is_err());
    }

    /// berthd parses signals with nix's `Signal` (agent/src/signal.rs): the
    /// same names and numbers must be accepted here, and no others.
    #[test]
    fn signals_match_the_agents() {
        use nix::sys::signal::Signal;
        use std::str::FromStr;
        for n in -1..=70 {
            let agent = Signal::try_from(n).is_ok();
            assert_eq!(signal(&n.to_string()).is_ok(), agent, "signal {n}");
        }
        for (name, number) in SIGNALS {
            let full = format!("SIG{name}");
            assert_eq!(
                Signal::from_str(&full).map(|s| s as i32),
                Ok(*number),
                "{full}"
            );
        }
        for s in Signal::iterator() {
            let name = s.as_str();
            assert_eq!(signal(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "10", "s", "10x", "1h 30m", "-5s"] {
            assert!(duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(
            rfc3339("1970-01-01T00:00:00Z"),
            Some(Timestamp {
                seconds: 0,
                nanos: 0
            })
        );
        assert_eq!(
            rfc3339("2024-05-01T10:00:00.5Z"),
            Some(Timestamp {
                seconds: 1_714_557_600,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            rfc3339("2024-05-01T12:00:00+02:00"),
            Some(Timestamp {
                seconds: 1_714_557_600,
                nanos: 0
            })
        );
        assert_eq!(
            rfc3339("2024-02-29T00:00:00Z").map(|t| t.seconds),
            Some(1_709_164_800)
        );
        assert_eq!(rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339("2024-05-01"), None);
        assert_eq!(rfc3339("2024-05-01T10:00:00"), None);
        assert_eq!(rfc3339("2024-13-01T10:00:00Z"), None);
        for days in [-800_000, -1, 0, 1, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn since_values() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            since("10m", now),
            Ok(Timestamp {
                seconds: 999_400,
                nanos: 0
            })
        );
        assert_eq!(
            since("1714557600", now),
            Ok(Timestamp {
                seconds: 1_714_557_600,
                nanos: 0
            })
        );
        assert_eq!(
            since("1714557600.25", now),
            Ok(Timestamp {
                seconds: 1_714_557_600,
                nanos: 250_000_000
            })
        );
        assert_eq!(
            since("2024-05-01T10:00:00Z", now).map(|t| t.seconds),
            Ok(1_714_557_600)
        );
        assert!(since("yesterday", now).is_err());
    }
}
