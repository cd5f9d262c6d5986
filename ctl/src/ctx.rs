//! One agent as the command line names it, and what every verb shares:
//! reporting errors, and the error for an incomplete response.

use std::time::Duration;

use crate::cli::OutputFormat;
use crate::error::Error;

/// How long to try to reach the agent before giving up; a TCP address that
/// drops packets would otherwise hang berthctl for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The global options, shared by all commands.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The agent's address as the user gave it.
    pub host: String,
    /// TLS settings for an https:// address.
    pub tls: Option<berth::client::ClientTls>,
    /// How to print results.
    pub output: OutputFormat,
}

/// The error for a response that lacks a field the API promises.
pub fn missing(what: &str) -> Error {
    Error::Message(format!("berthd sent an incomplete response (no {what})"))
}

/// Prints an error as berthctl's one-line message on stderr.
pub fn report(e: &Error) {
    if !e.is_silent() {
        eprintln!("berthctl: {e}");
    }
}
