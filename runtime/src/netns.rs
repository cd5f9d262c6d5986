//! Network namespaces made ahead of time.
//!
//! Creating a network namespace is the most expensive step of a container
//! start (about half a millisecond: the kernel registers a loopback device,
//! its sysctl tables and the per-namespace state of every protocol). berthd
//! therefore keeps a few ready ones, each with `lo` up, and hands one to a
//! starting container, whose init enters it instead of creating its own.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;

/// Creates a new network namespace with `lo` up and returns a handle on it.
/// The calling thread is back in its own network namespace afterwards, so
/// call it from a thread that does nothing else meanwhile.
pub fn create() -> io::Result<OwnedFd> {
    let home = File::open("/proc/thread-self/ns/net")?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
    let made = File::open("/proc/thread-self/ns/net").and_then(|ns| {
        crate::sys::loopback_up()?;
        Ok(ns)
    });
    // Going home must not fail silently: this thread would create its
    // next namespaces nested in the wrong place and talk to the wrong
    // network.
    nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::other(format!(
            "cannot return to the original network namespace: {e}"
        ))
    })?;
    Ok(made?.into())
}

/// Moves the calling process into the network namespace at `path` (one of
/// [`create`]'s, reached through `/proc/<pid>/fd/<n>` of the process holding
/// it).
pub fn enter(path: &std::path::Path) -> io::Result<()> {
    let ns = File::open(path)?;
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
    Ok(())
}
