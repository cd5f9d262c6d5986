//! `cp`: which root of a container a copy works in (the file work is
//! `crate::copy`'s).
//!
//! A running (or paused) container's root is its init's `/proc/<pid>/root`:
//! the container's `/` with everything mounted in its mount namespace
//! (volumes, tmpfs, binds), as its processes see it. The pid is checked
//! against the init's pidfd, opened while it was its monitor's unreaped
//! child: `/proc/<pid>` is opened first, then the init is checked alive
//! with that pid and its monitor as parent, so the directory is the init's
//! and never a process that reused its pid; `root` is then read from that
//! directory (a process that ended meanwhile has none: ESRCH/ENOENT).
//!
//! A created or exited container has no mount namespace: its root is an
//! overlay that exists only while it runs (berth never mounts it on the
//! host). Mounting it for a copy, concurrently with a start that mounts it
//! too (one upper and work dir cannot serve two overlays), is not done
//! yet: such a copy is FAILED_PRECONDITION "not supported yet".

use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::state::State;
use super::{Entry, Manager};
use crate::copy::{ContainerRoot, CopyError, IdMap};
use crate::error::Result;

impl Manager {
    /// The root of the container `key` (id, prefix or name) for a copy.
    pub fn copy_root(&self, key: &str) -> Result<ContainerRoot> {
        let entry = self.get(key)?;
        Ok(root_of(&entry)?)
    }
}

fn root_of(entry: &Arc<Entry>) -> Result<ContainerRoot, CopyError> {
    let (state, pid, monitor_pid, userns) = {
        let rec = entry.lock_record();
        (rec.state, rec.pid, rec.monitor_pid, rec.userns)
    };
    let not_running = |state: State| CopyError::NotRunning {
        id: entry.id.clone(),
        state: state.as_str(),
    };
    if !matches!(state, State::Running | State::Paused) || pid <= 0 {
        return Err(not_running(state));
    }
    let process = entry
        .process
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let pidfd = match process.and_then(|p| p.pidfd()) {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => return Err(CopyError::io("duplicating the pidfd of", &entry.id, e)),
        None => return Err(not_running(State::Exited)),
    };
    let proc_dir = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| not_running(State::Exited))?;
    if !super::exec::is_init(&pidfd, pid, monitor_pid) {
        return Err(not_running(State::Exited));
    }
    // The one magic link followed on purpose: the init's root.
    let root = nix::fcntl::openat(
        &proc_dir,
        "root",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| not_running(State::Exited))?;
    Ok(ContainerRoot {
        id: entry.id.clone(),
        root,
        ids: IdMap::new(userns),
    })
}
