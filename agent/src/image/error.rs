//! The error type of the image store.
//!
//! Variants are chosen so that the caller (the gRPC layer) can map them to
//! status codes by matching alone: `NotFound` -> NotFound, `Ambiguous`,
//! `InvalidReference` and `InvalidArchive` -> InvalidArgument, `Io` -> Internal;
//! the registry variants (`Unauthorized`, `Unavailable`, `Registry`,
//! `Corrupt`, `Unsupported`) map to Unauthenticated, Unavailable, Unknown,
//! DataLoss and Unimplemented; `NoSpace` -> ResourceExhausted.

use std::io;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the given name or id.
    #[error("image not found: {0}")]
    NotFound(String),
    /// An id prefix matches more than one image.
    #[error("ambiguous image id prefix: {0}")]
    Ambiguous(String),
    /// A reference (image name) is malformed, missing where one is needed,
    /// or cannot be applied (e.g. one name for an archive holding several images).
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The archive is malformed, unsupported or malicious: bad JSON, a digest
    /// mismatch, a path escaping the layer, an unsupported compression, ...
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    /// The registry refused the credentials, or wants some and none were given.
    #[error("registry authentication failed: {0}")]
    Unauthorized(String),
    /// The registry could not be reached, or the transfer broke off. Pulling
    /// again resumes what was downloaded.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The registry answered something unusable (an unexpected error, a
    /// malformed manifest or config).
    #[error("registry error: {0}")]
    Registry(String),
    /// Content does not match its digest (or a layer its diff_id): it is
    /// discarded, nothing of it is kept.
    #[error("content verification failed: {0}")]
    Corrupt(String),
    /// A valid image in a format berth does not support (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Unpacking would take more than the state file system has free
    /// beyond its reserve (see `archive::space_budget`); nothing is kept.
    #[error("not enough disk space: {0}")]
    NoSpace(String),
    /// A local I/O failure (disk full, permissions, ...), not the client's fault.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, including the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// Shorthand for [`ImageError::InvalidArchive`].
    pub(crate) fn archive(msg: impl Into<String>) -> Self {
        ImageError::InvalidArchive(msg.into())
    }

    /// Shorthand for [`ImageError::Io`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attaches a context message to `io::Result`s, turning them into [`ImageError::Io`].
pub(crate) trait IoContext<T> {
    /// Wraps the error with a lazily built context message.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(f(), e))
    }
}
