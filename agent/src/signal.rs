//! Signal names and numbers as users write them.

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parses "SIGTERM", "TERM", "term" or "15".
pub fn parse(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a valid signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("unknown signal {t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse("kill"), Ok(Signal::SIGKILL));
        assert_eq!(parse("10"), Ok(Signal::SIGUSR1));
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("99").is_err());
    }
}
