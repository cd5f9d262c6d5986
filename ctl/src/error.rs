//! berthctl's errors and the exit statuses they map to.

use std::fmt;

use tonic::Code;

/// Exit status when berthctl itself fails before a container could run:
/// the agent cannot be reached, or `run` could not create or start it.
pub const EXIT_BERTHCTL: i32 = 125;
/// Exit status of a command that exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status of a command that cannot be found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why a command failed.
#[derive(Debug)]
pub enum Error {
    /// The agent could not be reached (exit 125).
    Connect {
        /// The address tried, as `unix:///path` or `http://host:port`.
        addr: String,
        /// What went wrong, from the transport's error chain.
        reason: String,
    },
    /// The agent answered with an error (exit 1; 125 for UNAVAILABLE, which
    /// means the agent went away).
    Status(tonic::Status),
    /// Anything else berthctl reports: bad input, a local file (exit 1).
    Message(String),
    /// An error with an exit status of its own (`run`'s 125/126/127).
    WithCode(i32, Box<Error>),
    /// Exit with this status and print nothing more: the container's exit
    /// code, or 1 after errors that were already printed one by one.
    Exit(i32),
    /// The inventory or the targets are unusable (exit 1).
    Inventory(crate::inventory::InventoryError),
    /// A message could not be rendered as JSON (exit 1).
    Json(berth::json::JsonError),
}

/// berthctl's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an error from connecting to `addr`.
    pub fn connect(
        addr: &berth::client::Address,
        err: &(dyn std::error::Error + 'static),
    ) -> Error {
        Error::Connect {
            addr: addr.to_string(),
            reason: error_chain(err),
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Connect { .. } => EXIT_BERTHCTL,
            Error::Status(s) if s.code() == Code::Unavailable => EXIT_BERTHCTL,
            Error::Status(_) | Error::Message(_) | Error::Inventory(_) | Error::Json(_) => 1,
            Error::WithCode(code, _) | Error::Exit(code) => *code,
        }
    }

    /// Whether `main` should print this error (not for a plain exit status).
    pub fn is_silent(&self) -> bool {
        match self {
            Error::Exit(_) => true,
            Error::WithCode(_, inner) => inner.is_silent(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, reason } => {
                write!(
                    f,
                    "cannot connect to berthd at {addr}: {reason} (is berthd running?)"
                )
            }
            Error::Status(s) => f.write_str(&status_message(s)),
            Error::Message(m) => f.write_str(m),
            Error::WithCode(_, inner) => inner.fmt(f),
            Error::Exit(code) => write!(f, "exit status {code}"),
            Error::Inventory(e) => e.fmt(f),
            Error::Json(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Status(s)
    }
}

impl From<crate::inventory::InventoryError> for Error {
    fn from(e: crate::inventory::InventoryError) -> Self {
        Error::Inventory(e)
    }
}

impl From<berth::json::JsonError> for Error {
    fn from(e: berth::json::JsonError) -> Self {
        Error::Json(e)
    }
}

impl From<String> for Error {
    fn from(m: String) -> Self {
        Error::Message(m)
    }
}

/// Joins an error and its sources into one line, dropping the generic
/// "transport error" wrapper and repeated messages (hyper and tonic often
/// repeat the inner error in the outer one).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !msg.is_empty() && msg != "transport error" && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        "transport error".into()
    } else {
        parts.join(": ")
    }
}

/// The code of a gRPC status in lower-case words ("not found").
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Words that, found in a status message, already say what its code says,
/// so "no such container: web" need not become "not found: no such ...".
fn code_hints(code: Code) -> &'static [&'static str] {
    match code {
        Code::NotFound => &[
            "not found",
            "no such",
            "unknown",
            "does not exist",
            "doesn't exist",
        ],
        Code::AlreadyExists => &["already", "exists", "in use", "conflict"],
        Code::InvalidArgument => &[
            "invalid",
            "must",
            "bad",
            "ambiguous",
            "expected",
            "unknown",
            "not allowed",
            "too ",
        ],
        Code::FailedPrecondition => &[
            "is running",
            "is not running",
            "not running",
            "already",
            "cannot",
            "can't",
            "in use",
            "state",
            "must",
        ],
        Code::PermissionDenied => &["permission", "denied", "not allowed"],
        Code::Unimplemented => &["not implemented", "unimplemented", "not supported"],
        Code::OutOfRange => &["out of range", "oldest"],
        Code::ResourceExhausted => &["exhausted", "too many", "limit", "behind", "keep up"],
        _ => &[],
    }
}

/// A one-line description of a gRPC error: the agent's message, prefixed by
/// the code in words when the message alone does not make the kind of
/// failure clear (or is empty).
pub fn status_message(s: &tonic::Status) -> String {
    let msg = s.message().trim();
    let words = code_words(s.code());
    if msg.is_empty() {
        return words.to_string();
    }
    let lower = msg.to_lowercase();
    let clear = lower.contains(words)
        || lower.contains(&words.replace(' ', "_"))
        || code_hints(s.code()).iter().any(|h| lower.contains(h));
    // Transport failures (agent gone mid-call) carry only tonic's terse
    // message; the source chain says what actually happened.
    let msg = match std::error::Error::source(s) {
        Some(src) if s.code() == Code::Unavailable || s.code() == Code::Unknown => {
            let chain = error_chain(src);
            if chain.is_empty() || msg.contains(&chain) {
                msg.to_string()
            } else {
                format!("{msg}: {chain}")
            }
        }
        _ => msg.to_string(),
    };
    let msg = msg.replace('\n', " ");
    if clear {
        msg
    } else {
        format!("{words}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn status_messages() {
        assert_eq!(
            status_message(&Status::not_found("no such container: web")),
            "no such container: web"
        );
        assert_eq!(status_message(&Status::not_found("web")), "not found: web");
        assert_eq!(status_message(&Status::not_found("")), "not found");
        assert_eq!(
            status_message(&Status::failed_precondition(
                "container abc is running; stop it or use force"
            )),
            "container abc is running; stop it or use force"
        );
        assert_eq!(
            status_message(&Status::internal("mount: EPERM")),
            "internal error: mount: EPERM"
        );
        assert_eq!(
            status_message(&Status::already_exists("name \"web\" is already in use")),
            "name \"web\" is already in use"
        );
        assert_eq!(
            status_message(&Status::invalid_argument("invalid name\n\"x y\"")),
            "invalid name \"x y\""
        );
    }

    #[test]
    fn exit_codes() {
        let connect = Error::Connect {
            addr: "unix:///x".into(),
            reason: "No such file or directory (os error 2)".into(),
        };
        assert_eq!(connect.exit_code(), 125);
        assert_eq!(
            connect.to_string(),
            "cannot connect to berthd at unix:///x: No such file or directory (os error 2) (is berthd running?)"
        );
        assert_eq!(Error::Status(Status::not_found("x")).exit_code(), 1);
        assert_eq!(Error::Status(Status::unavailable("gone")).exit_code(), 125);
        assert_eq!(Error::Message("bad".into()).exit_code(), 1);
        assert_eq!(Error::Exit(137).exit_code(), 137);
        assert!(Error::Exit(3).is_silent());
        let e = Error::WithCode(
            127,
            Box::new(Error::Status(Status::failed_precondition(
                "exec: \"nope\": not found",
            ))),
        );
        assert_eq!((e.exit_code(), e.is_silent()), (127, false));
    }

    #[test]
    fn error_chains() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        assert_eq!(
            error_chain(&inner),
            "No such file or directory (os error 2)"
        );
    }
}
