//! What can go wrong in a build, typed so the API can map each to its status.

use crate::container::ContainerError;
use crate::image::ImageError;

/// A build's error.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Bad options or context (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// The Dockerfile does not parse; the message starts with its place.
    #[error("{0}")]
    Syntax(String),
    /// A Dockerfile feature berth does not build yet (UNIMPLEMENTED).
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A RUN step exited non-zero (ABORTED).
    #[error("step {number}/{total} {instruction}: exited with code {code}")]
    RunFailed {
        /// The step's number.
        number: u32,
        /// How many steps the build has.
        total: u32,
        /// The instruction (capped).
        instruction: String,
        /// Its exit code (128 + n for a signal).
        code: i32,
    },
    /// From the image store (pull, commit, lookups).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// From running a step's container.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A layer could not be made.
    #[error("making a layer: {0}")]
    Layer(#[from] super::layer::LayerError),
    /// Anything else the file system says.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The client went away: the build stops.
    #[error("the client went away")]
    Cancelled,
}

impl BuildError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }

    /// A bad-input error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        BuildError::Invalid(msg.into())
    }
}

/// The build's result type.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;
