//! Signal names and numbers as users write them.

use nix::sys::signal::Signal;
use std::str::FromStr;

use crate::error::capped;

/// A signal that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// A number that names no signal.
    #[error("{0} is not a valid signal number")]
    Number(i32),
    /// A name that names no signal.
    #[error("unknown signal {:?}", capped(.0))]
    Name(String),
}

/// Parses "SIGTERM", "TERM", "term" or "15".
pub fn parse(s: &str) -> Result<Signal, SignalError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| SignalError::Number(n));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| SignalError::Name(t.to_string()))
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
