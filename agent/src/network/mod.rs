//! Container networking: which network a container is in, and the network
//! namespace its init enters.
//!
//! `mode` is the container's choice (Docker's `--network`), parsed and
//! checked at Create; `namespace` is what a start hands to the init: a
//! spare namespace of its own, the host's, or another container's, held
//! open until the init has entered it. Bridge networking and user-defined
//! networks are refused as not supported yet.

pub mod mode;
pub mod namespace;
pub mod resolv;

pub use mode::{Mode, Requested};
pub use namespace::Netns;

/// What choosing or joining a network can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The mode is not one berthd knows.
    #[error("{0}")]
    Invalid(String),
    /// The mode is a known one that this version does not implement.
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    /// `container:<x>` names a container that is not running.
    #[error("cannot join the network of container {name}: it is not running")]
    PeerNotRunning {
        /// The other container's name.
        name: String,
    },
    /// Opening the other container's namespace failed.
    #[error("opening the network namespace of container {name}: {source}")]
    Join {
        /// The other container's name.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}
