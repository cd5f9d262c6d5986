//! What a container operation can fail with.
//!
//! Each variant says what went wrong in the runtime's terms (not as an API
//! status code); `server::status` maps them to gRPC codes and details. The
//! messages are the ones clients have always seen, and never echo more
//! than [`crate::error::capped`] of what a client sent.

use crate::cgroup::CgroupError;
use crate::error::capped;
use crate::image::ImageError;
use crate::monitor::SpawnError;

use super::state::{InvalidTransition, State};

/// A container operation's error.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No id or name was given.
    #[error("no container id or name given")]
    NoKey,
    /// Nothing matches the id, name or prefix.
    #[error("no such container: {}", capped(key))]
    NotFound {
        /// What the client asked for.
        key: String,
    },
    /// An id prefix matches more than one container.
    #[error("{} matches {count} containers: give more of the id", capped(key))]
    Ambiguous {
        /// The prefix.
        key: String,
        /// How many containers it matches.
        count: usize,
    },
    /// Another container has the name.
    #[error("the container name {:?} is already in use", capped(name))]
    NameInUse {
        /// The name.
        name: String,
    },
    /// A spec (or an update) that cannot be run.
    #[error("{reason}")]
    InvalidSpec {
        /// The spec field at fault (`name`, `limits.memory`, ...).
        field: &'static str,
        /// Why, for people.
        reason: String,
    },
    /// A privileged container on an agent that does not allow them.
    #[error(
        "privileged containers are not allowed on this agent: start berthd with \
         --allow-privileged to allow them"
    )]
    PrivilegedNotAllowed,
    /// The namespaces of the container's CRI pod are gone (the pod was
    /// removed, or the host rebooted since it was made).
    #[error(
        "the namespaces of pod {} are gone: the pod was removed or the host restarted",
        capped(pod)
    )]
    PodGone {
        /// The pod sandbox's id.
        pod: String,
    },
    /// The container belongs to a CRI pod: only the CRI front end (kubelet,
    /// crictl) removes it.
    #[error(
        "container {} belongs to Kubernetes pod {}: remove it through the CRI (crictl rm)",
        capped(name),
        capped(pod)
    )]
    OwnedByPod {
        /// The container's name.
        name: String,
        /// The pod sandbox's id.
        pod: String,
    },
    /// The image the spec names is not stored.
    #[error("no such image: {}", capped(image))]
    ImageNotFound {
        /// The reference as given.
        image: String,
    },
    /// Looking up the image failed otherwise.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The host cannot enforce a limit the spec asks for.
    #[error("{0}")]
    LimitUnsupported(#[source] CgroupError),
    /// The kernel refused new limits for a running container.
    #[error("applying the new limits: {0}")]
    LimitRejected(#[source] CgroupError),
    /// The container's state does not allow the operation.
    #[error("{source}")]
    InvalidTransition {
        /// The container.
        id: String,
        /// State and operation.
        #[source]
        source: InvalidTransition,
    },
    /// The container's process could not be set up or executed (bad
    /// command, unknown user, ...): it is recorded as exited.
    #[error("cannot start container {name}: {message}")]
    CannotExec {
        /// The container.
        id: String,
        /// Its name.
        name: String,
        /// Why, as the monitor reported it.
        message: String,
        /// The shell-style exit code it was given (127, 126).
        exit_code: i32,
    },
    /// The container exited while it was being frozen.
    #[error("the container ended while being paused")]
    EndedWhilePausing {
        /// The container.
        id: String,
        /// Its state now.
        state: State,
    },
    /// Wait on a container that was removed before it ever ran.
    #[error("container {id} was removed without having run")]
    RemovedWithoutRun {
        /// The container.
        id: String,
    },
    /// A SIGKILLed container did not exit (a process stuck in the kernel).
    #[error("container did not exit after SIGKILL")]
    NoExitAfterKill {
        /// The container.
        id: String,
    },
    /// The container's bookkeeping went away under a waiter.
    #[error("{what}")]
    Vanished {
        /// What was lost, for people.
        what: &'static str,
    },
    /// A cgroup operation failed.
    #[error("{context}: {source}")]
    Cgroup {
        /// What was being done.
        context: &'static str,
        /// Cause.
        #[source]
        source: CgroupError,
    },
    /// The container monitor could not be started or talked to.
    #[error("starting the container: {0}")]
    Launch(#[source] SpawnError),
    /// The container's network cannot be had.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// A file or system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (with the path, where there is one).
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A user namespace of its own cannot be had with this (yet).
    #[error("not supported yet: user namespaces ({0})")]
    UsernsUnsupported(String),
    /// This kernel cannot give a container a user namespace of its own the
    /// way berth does it (idmapped layers under overlay).
    #[error("not supported yet: --userns auto on this kernel: {0}")]
    UsernsKernel(String),
    /// Every id range for user namespaces is taken.
    #[error(
        "no id range left for a user namespace: all {slots} ranges of {origin} are in use; \
         remove containers with --userns auto, or give user berth more ids in /etc/subuid \
         and /etc/subgid"
    )]
    UsernsExhausted {
        /// How many ranges there are.
        slots: usize,
        /// Where they come from.
        origin: &'static str,
    },
    /// `--storage-opt size=` on a state file system without project quotas.
    #[error("not supported on this state file system: {0}")]
    StorageUnsupported(String),
    /// A mount this version cannot make yet.
    #[error("not supported yet: {0}")]
    MountUnsupported(String),
    /// A volume could not be had.
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// A background task of the operation panicked or was cancelled.
    #[error("{context}: {source}")]
    Task {
        /// Which task.
        context: &'static str,
        /// Cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ContainerError {
    /// Shorthand for [`ContainerError::Io`].
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        ContainerError::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Shorthand for [`ContainerError::InvalidSpec`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ContainerError::InvalidSpec {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ContainerError::InvalidTransition`].
    pub fn transition(id: &str, source: InvalidTransition) -> Self {
        ContainerError::InvalidTransition {
            id: id.to_string(),
            source,
        }
    }
}

/// Result of a container operation.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
