//! What a volume operation can fail with; `server::status` maps each
//! variant to a gRPC status.

use crate::error::capped;

/// A volume operation's error.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A name that does not follow the rules.
    #[error(
        "invalid volume name {:?}: 2 to 64 characters of [a-zA-Z0-9_.-], beginning with a \
         letter or digit",
        capped(name)
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// A request field that is not accepted.
    #[error("{reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Something this version cannot do yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// No volume has that name.
    #[error("no such volume: {}", capped(name))]
    NotFound {
        /// The name as given.
        name: String,
    },
    /// A volume of that name exists.
    #[error("a volume named {} already exists", capped(name))]
    Exists {
        /// The name.
        name: String,
    },
    /// Containers use the volume.
    #[error(
        "volume {} is in use by container(s) {}; remove them first",
        capped(name),
        users.join(", ")
    )]
    InUse {
        /// The volume.
        name: String,
        /// Short ids of the containers using it (at most 8).
        users: Vec<String>,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    /// Shorthand for [`VolumeError::Io`].
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        VolumeError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Result of a volume operation.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
