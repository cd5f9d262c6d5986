//! What berthd and its per-container monitor share.
//!
//! berthd never forks its multi-threaded runtime. For every container it
//! starts a small, single-threaded *monitor* process, `berth-monitor` (the
//! `monitor/` package beside this crate, built without `std` or libc and
//! embedded in berthd). The monitor creates the container's init in new
//! namespaces, keeps its log pipes, reaps it and records how it ended.
//!
//! Both sides link this crate for what they must agree on: the launch spec
//! and the reports ([`launch`]), the CRI log format ([`cri_log`], with its
//! timestamps in [`rfc3339`], its calendar in [`civil`]), how a user spec
//! resolves against an image's `/etc/passwd` ([`user`]), the container's
//! setup as a plan of mounts, masks and namespace steps ([`plan`]), which
//! the monitor's init executes, the limits and OOM score a container's
//! process starts with ([`process`]), and the file of seccomp programs
//! berthd writes for the init to install ([`seccomp`]). capabilities by name and the set a container keeps ([`caps`]), and how an exec into a running container is started ([`exec`]). It needs only `core` and `alloc`, so the
//! monitor can use it; its tests use `std`.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod attach;
pub mod caps;
pub mod civil;
pub mod cri_log;
pub mod exec;
pub mod launch;
pub mod plan;
pub mod process;
pub mod rfc3339;
pub mod seccomp;
pub mod sysctl;
pub mod user;
