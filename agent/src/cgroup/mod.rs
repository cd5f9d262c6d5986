//! Container cgroups through cgroups-rs, on cgroup v1 and v2 alike.
//!
//! berthd detects the host's layout once at start. Every container gets its
//! own cgroup `<parent>/<id>` (in each v1 hierarchy, or in the unified v2
//! tree). On v2, `<parent>` holds only container cgroups, never processes,
//! which keeps the "no internal processes" rule.

pub mod cpulist;
mod devices;
mod freezer;
mod hierarchies;
mod host;
mod others;
mod resources;
pub mod stats;

pub use devices::{DeviceAccess, DeviceKind, DeviceRule};
pub use host::CgroupHost;
pub use resources::{shares_to_weight, to_resources};

use berth_runtime::launch::CgroupPlacement;

/// What the container asks for, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; 0 = none.
    pub memory: i64,
    /// Memory + swap in bytes (Docker semantics); -1 unlimited swap, 0 no swap.
    pub memory_swap: i64,
    /// CPU quota in billionths of a CPU; 0 = none.
    pub nano_cpus: i64,
    /// Docker-style CPU shares; 0 = default.
    pub cpu_shares: u64,
    /// Max pids; <= 0 = none.
    pub pids: i64,
    /// cpuset CPUs.
    pub cpuset_cpus: String,
    /// cpuset memory nodes.
    pub cpuset_mems: String,
    /// The devices the container may use (fixed at create; [`Cgroups::update`]
    /// leaves them as they are).
    pub devices: DeviceAccess,
}

/// CFS period berth uses for `--cpus` (Docker's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Errors from cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// cgroups-rs failed.
    #[error("cgroup {path}: {source}")]
    Cgroups {
        /// The cgroup.
        path: String,
        /// Cause.
        source: cgroups_rs::fs::error::Error,
    },
    /// A limit the host cannot enforce.
    #[error("{0}")]
    Unsupported(String),
}

/// The cgroup operations the container runtime needs: berthd's are
/// [`CgroupHost`]'s; tests use fakes.
pub trait Cgroups: Send + Sync {
    /// 1 or 2.
    fn version(&self) -> u32;
    /// The controllers in use.
    fn controllers(&self) -> &[String];
    /// The parent cgroup of all container cgroups (relative to the root).
    fn parent(&self) -> &str;
    /// True when the container's cgroup namespace is a delegation boundary
    /// (cgroup v2 mounted with `nsdelegate`): then a container cannot write
    /// its own limits even with the means to mount cgroupfs (no seccomp
    /// filter, a nested user namespace). Elsewhere only the default seccomp
    /// profile and the missing CAP_SYS_ADMIN stand in the way.
    fn limits_hold_unconfined(&self) -> bool;
    /// Whether the host can enforce `limits`.
    fn check(&self, limits: &Limits) -> Result<(), CgroupError>;
    /// Makes the container's cgroup with `limits`.
    fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError>;
    /// Freezes the container.
    fn freeze(&self, id: &str) -> Result<(), CgroupError>;
    /// Thaws the container.
    fn thaw(&self, id: &str) -> Result<(), CgroupError>;
    /// Changes a running container's limits.
    fn update(&self, id: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// SIGKILLs every process of the container, whatever berth believes its
    /// state is: thaws the cgroup first (a container may have frozen itself
    /// through a cgroupfs it mounted, and frozen processes do not die), then
    /// kills the whole cgroup and its descendants. Used by stop, kill with
    /// SIGKILL and forced remove, so nothing of a container survives them.
    fn kill(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the cgroup of a container whose init has been reaped.
    fn release(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the container's cgroup, killing what is left in it.
    fn remove(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the empty container cgroups of none of `known`.
    fn remove_others(&self, known: &std::collections::HashSet<String>);
    /// One sample of the container's usage counters; None when it has no
    /// cgroup (not running). Fakes have none.
    fn stats(&self, _id: &str) -> Option<stats::CgroupStats> {
        None
    }
    /// The host pids of the container's processes (of its cgroup and those
    /// below), sorted; more than `max` only when there are more.
    fn procs(&self, _id: &str, _max: usize) -> Vec<i32> {
        Vec::new()
    }
    /// Where the processes of container `id` go (as its init went), for an
    /// exec to join; `None` where it is not known (fakes).
    fn placement(&self, _id: &str) -> Option<CgroupPlacement> {
        None
    }
}

impl Cgroups for CgroupHost {
    fn version(&self) -> u32 {
        CgroupHost::version(self)
    }
    fn controllers(&self) -> &[String] {
        CgroupHost::controllers(self)
    }
    fn parent(&self) -> &str {
        CgroupHost::parent(self)
    }
    fn limits_hold_unconfined(&self) -> bool {
        self.version() == 2 && self.nsdelegate()
    }
    fn check(&self, limits: &Limits) -> Result<(), CgroupError> {
        CgroupHost::check(self, limits)
    }
    fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError> {
        CgroupHost::create(self, id, limits)
    }
    fn freeze(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::freeze(self, id)
    }
    fn thaw(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::thaw(self, id)
    }
    fn update(&self, id: &str, limits: &Limits) -> Result<(), CgroupError> {
        CgroupHost::update(self, id, limits)
    }
    fn kill(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::kill(self, id)
    }
    fn release(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::release(self, id)
    }
    fn remove(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::remove(self, id)
    }
    fn remove_others(&self, known: &std::collections::HashSet<String>) {
        CgroupHost::remove_others(self, known)
    }
    fn stats(&self, id: &str) -> Option<stats::CgroupStats> {
        stats::sample(&self.stat_dirs(id), stats::TICK_NANOS)
    }
    fn procs(&self, id: &str, max: usize) -> Vec<i32> {
        self.procs_dir(id)
            .map(|d| stats::procs(&d, max))
            .unwrap_or_default()
    }
    fn placement(&self, id: &str) -> Option<CgroupPlacement> {
        CgroupHost::placement(self, id)
    }
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    /// Where the container's init goes.
    pub placement: CgroupPlacement,
    /// The file holding the oom_kill counter.
    pub oom_events: Option<String>,
}
