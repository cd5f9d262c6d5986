//! The agent's error type: what a front end gets from the runtime.
//!
//! Each module has its own typed error ([`ContainerError`], [`ImageError`],
//! ...); [`Error`] gathers them, sources kept, for the front ends. The one
//! mapping to gRPC status codes and details is `server::status`.

use crate::container::ContainerError;
use crate::image::ImageError;

/// How much of a client's input an error message quotes, in characters.
pub const QUOTE_MAX: usize = 64;

/// `s`, cut to [`QUOTE_MAX`] characters (marked with "..."): messages must
/// not echo unbounded input back to clients and logs.
pub fn capped(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(QUOTE_MAX) {
        None => s.into(),
        Some((end, _)) => format!("{}...", &s[..end]).into(),
    }
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A container operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// An exec could not be started.
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    /// A copy into or out of a container failed.
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// An attach could not be made.
    #[error(transparent)]
    Attach(#[from] crate::server::attach::AttachError),
    /// A signal name or number that is not one.
    #[error(transparent)]
    InvalidSignal(#[from] crate::signal::SignalError),
    /// A request that is malformed as a whole.
    #[error("{reason}")]
    InvalidRequest {
        /// The request field at fault.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An image that containers use, without force.
    #[error(
        "image {} is in use by container(s) {}; remove them first or force",
        capped(image),
        users.join(", ")
    )]
    ImageInUse {
        /// The image as the client named it.
        image: String,
        /// Names of the containers using it.
        users: Vec<String>,
    },
    /// Something that should work did not (I/O, a task), with context.
    #[error("{context}: {source}")]
    Internal {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An internal error with context.
    pub fn internal(
        context: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Internal {
            context: context.to_string(),
            source: source.into(),
        }
    }
}

/// Result with the agent's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_capped_on_a_char_boundary() {
        assert_eq!(capped("short"), "short");
        let long = "é".repeat(100);
        let c = capped(&long);
        assert_eq!(c.chars().count(), QUOTE_MAX + 3);
        assert!(c.ends_with("..."));
        let e = ContainerError::NotFound {
            key: "x".repeat(10_000),
        };
        assert!(e.to_string().len() < 100, "{e}");
    }
}
