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
//! overlay that exists only while it runs. For a copy, the same overlay is
//! made attached nowhere (`sys::overlay`), gone with the copy. Reading (StatPath, CopyFrom) stacks the upper dir on the
//! image's layers, all read-only, so it needs no lock; writing (CopyTo)
//! mounts the upper and work dirs as a start would, so it holds the
//! container's lifecycle lock until the copy ends: a start waits for it. Its
//! mounts are not there: a path at or under one is refused
//! (`CopyError::UnderMount`), as is a `--userns auto` container.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::record::Record;
use super::rootfs::Rootfs;
use super::state::State;
use super::{Entry, Manager};
use crate::copy::{ContainerRoot, CopyError, IdMap};
use crate::error::Result;
use crate::sys::overlay::{detached_overlay, Layers};

/// What a copy does with the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// StatPath, CopyFrom.
    Read,
    /// CopyTo.
    Write,
}

impl Manager {
    /// The root of the container `key` (id, prefix or name) for a copy of
    /// `path` (absolute, as checked by `copy::path::check`).
    pub async fn copy_root(&self, key: &str, path: &str, access: Access) -> Result<ContainerRoot> {
        let entry = self.get(key)?;
        let state = entry.lock_record().state;
        if matches!(state, State::Created | State::Exited) {
            return self.stopped_root(&entry, path, access).await;
        }
        match root_of(&entry) {
            // It exited meanwhile.
            Err(CopyError::NotRunning { .. })
                if matches!(entry.lock_record().state, State::Created | State::Exited) =>
            {
                self.stopped_root(&entry, path, access).await
            }
            r => Ok(r?),
        }
    }

    /// The root of a created or exited container, as a detached overlay.
    async fn stopped_root(
        &self,
        entry: &Arc<Entry>,
        path: &str,
        access: Access,
    ) -> Result<ContainerRoot> {
        let hold = match access {
            Access::Read => None,
            Access::Write => {
                let ops = entry.ops.clone().lock_owned().await;
                // Its last run's mounts are gone (the upper and work dirs
                // are free) once its teardown is.
                drop(entry.teardown.lock().await);
                if !self.exists(entry) {
                    return Err(super::error::ContainerError::NotFound {
                        key: entry.id.clone(),
                    }
                    .into());
                }
                Some(ops)
            }
        };
        let rec = entry.snapshot();
        if !matches!(rec.state, State::Created | State::Exited) {
            // Started while this waited for the lock.
            drop(hold);
            return Ok(root_of(entry)?);
        }
        let (owned, path) = (entry.clone(), path.to_string());
        // The mount blocks: off the async workers.
        let root = tokio::task::spawn_blocking(move || stopped(&owned, &rec, &path, access, hold))
            .await
            .map_err(|e| crate::error::Error::internal("mounting a stopped root", e))?;
        match root {
            // Removed meanwhile (a read takes no lock): its directory went.
            Err(CopyError::Io { .. }) if !self.exists(entry) => {
                Err(super::error::ContainerError::NotFound {
                    key: entry.id.clone(),
                }
                .into())
            }
            r => Ok(r?),
        }
    }
}

fn stopped(
    entry: &Entry,
    rec: &Record,
    path: &str,
    access: Access,
    hold: Option<tokio::sync::OwnedMutexGuard<()>>,
) -> Result<ContainerRoot, CopyError> {
    let refused = |why| CopyError::NotRunning {
        id: rec.id.clone(),
        state: rec.state.as_str(),
        why,
    };
    if rec.userns.is_some() {
        // Its layers are idmapped only inside its monitor's namespaces.
        return Err(refused("with --userns auto"));
    }
    let targets = rec.mounts.iter().map(|m| m.target.as_str());
    if let Some(target) = mount_over(path, targets) {
        return Err(CopyError::UnderMount {
            target: target.to_string(),
        });
    }
    let fs = Rootfs::under(&entry.dir);
    // Top first, as overlay stacks them.
    let layers: Vec<PathBuf> = rec.layer_dirs.iter().rev().cloned().collect();
    let layers = match access {
        Access::Read => Layers::ReadOnly {
            upper: fs.upper.clone(),
            layers,
        },
        Access::Write => Layers::Writable {
            upper: fs.upper.clone(),
            work: fs.work.clone(),
            layers,
            read_only: rec.spec.read_only_rootfs,
        },
    };
    let root = detached_overlay(layers, &fs.merged)
        .map_err(|e| CopyError::io("mounting the root of", &rec.id, e))?;
    Ok(ContainerRoot {
        id: rec.id.clone(),
        root,
        ids: IdMap::new(None),
        hold: hold.map(|h| Box::new(h) as Box<dyn std::any::Any + Send + Sync>),
    })
}

/// The first of `targets` that `path` is at or under (compared by
/// components, `.` and `..` taken lexically as the root's resolution
/// takes them: `..` stops at `/`).
fn mount_over<'a>(path: &str, targets: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let path = clean(path);
    targets.into_iter().find(|t| {
        let t = clean(t);
        path.len() >= t.len() && path[..t.len()] == t[..]
    })
}

fn clean(path: &str) -> Vec<&std::ffi::OsStr> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
}

fn root_of(entry: &Arc<Entry>) -> Result<ContainerRoot, CopyError> {
    let (state, pid, monitor_pid, userns) = {
        let rec = entry.lock_record();
        (rec.state, rec.pid, rec.monitor_pid, rec.userns)
    };
    let not_running = |state: State| CopyError::NotRunning {
        id: entry.id.clone(),
        state: state.as_str(),
        why: "in this state",
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
        hold: None,
    })
}

#[cfg(test)]
mod tests {
    use super::mount_over;

    #[test]
    fn a_path_at_or_under_a_mount_is_found_by_components() {
        let targets = ["/data", "/var/lib/db/"];
        let over = |p: &str| mount_over(p, targets.iter().copied());
        assert_eq!(over("/data"), Some("/data"));
        assert_eq!(over("/data/x/y"), Some("/data"));
        assert_eq!(over("/data/"), Some("/data"));
        assert_eq!(over("/./data/."), Some("/data"));
        assert_eq!(over("/var/lib/db"), Some("/var/lib/db/"));
        assert_eq!(over("/x/../data/f"), Some("/data"));
        assert_eq!(over("/../../data"), Some("/data"));
        assert_eq!(over("/database"), None);
        assert_eq!(over("/"), None);
        assert_eq!(over("/var/lib"), None);
        assert_eq!(over("/etc/passwd"), None);
    }
}
