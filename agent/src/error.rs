//! The agent's error type and its mapping to gRPC status codes.

use tonic::{Code, Status};

use crate::image::ImageError;

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container or image.
    #[error("{0}")]
    NotFound(String),
    /// A name already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// Bad input.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Something that should work did not (I/O, kernel).
    #[error("{0}")]
    Internal(String),
    /// Not enough of a resource (disk space) for the request.
    #[error("{0}")]
    ResourceExhausted(String),
}

impl Error {
    /// An internal error with context.
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Internal(_) => Code::Internal,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
        };
        Status::new(code, e.to_string())
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Error {
        match e {
            ImageError::NotFound(_) => Error::NotFound(e.to_string()),
            ImageError::Ambiguous(_)
            | ImageError::InvalidReference(_)
            | ImageError::InvalidArchive(_) => Error::InvalidArgument(e.to_string()),
            ImageError::NoSpace(_) => Error::ResourceExhausted(e.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Result with the agent's error.
pub type Result<T> = std::result::Result<T, Error>;
