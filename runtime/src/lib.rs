//! berth's container runtime: what runs between berthd and a container.
//!
//! berthd never forks its multi-threaded runtime. For every container it
//! starts a small, single-threaded *monitor* process, `berth-monitor` (this
//! crate's binary, linked statically and embedded in berthd). The monitor
//! detaches from berthd, creates the container's init in new namespaces
//! ([`monitor`], then `init` in the forked child), keeps its log pipes, reaps
//! it and records how it ended. The container is the monitor's child, not
//! berthd's, so it survives a restart of berthd.
//!
//! berthd links this crate too, for the formats the two share: the launch
//! spec and reports ([`launch`]) and the CRI log files ([`cri_log`]).

mod caps;
pub mod cri_log;
pub mod files;
mod init;
pub mod launch;
pub mod monitor;
pub mod netns;
mod sys;
mod user;
