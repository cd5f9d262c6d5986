//! Why a launch spec has no plan.

use alloc::string::String;
use core::fmt;

/// Why a launch spec has no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// An image without layers has no root filesystem.
    NoLayers,
    /// The root is not an absolute path.
    RelativeRoot(String),
    /// A cgroup v1 controller name that is not one path component.
    BadController(String),
    /// Both a namespace to enter and the host's network were asked for.
    TwoNetworks,
    /// A user namespace of its own cannot be combined with this.
    Userns(&'static str),
    /// A sysctl that is refused (see [`crate::sysctl`]).
    Sysctl(String),
    /// Both an IPC namespace to enter and the host's were asked for.
    TwoIpc,
    /// A masked or read-only path that is not absolute, is `/`, or has
    /// `.` or `..` components.
    BadPath(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoLayers => f.write_str("the image has no layers"),
            PlanError::RelativeRoot(r) => write!(f, "the root {r:?} is not an absolute path"),
            PlanError::BadController(c) => write!(f, "bad cgroup controller name {c:?}"),
            PlanError::TwoNetworks => {
                f.write_str("both a network namespace and the host's network were asked for")
            }
            PlanError::Userns(what) => {
                write!(
                    f,
                    "a user namespace of its own cannot be combined with {what}"
                )
            }
            PlanError::Sysctl(why) => write!(f, "sysctls: {why}"),
            PlanError::TwoIpc => {
                f.write_str("both an IPC namespace to join and the host's were asked for")
            }
            PlanError::BadPath(p) => write!(
                f,
                "{p:?}: a masked or read-only path must be absolute, not /, without . or .."
            ),
        }
    }
}
