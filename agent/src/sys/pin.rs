//! Namespaces that outlive every process in them: a CRI pod's network, IPC
//! and UTS namespaces, held by bind mounts of their nsfs files (as CRI-O's
//! `pinns` does), so a pod needs no pause process or image. Its containers
//! enter them by path at each start (`LaunchSpec::netns`, `ipcns`, `utsns`).

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// The namespaces a pod pins, by their file name in its `ns` directory and
/// in `/proc/<tid>/ns`.
pub const PINNED: [&str; 3] = ["net", "ipc", "uts"];

/// Creates new network, IPC and UTS namespaces (`lo` up, `hostname` set)
/// and pins each at `dir/<net|ipc|uts>`. `dir` must exist; on error
/// nothing stays pinned.
///
/// The namespaces are made by a thread of their own, which unshares and
/// then ends: no other thread of berthd ever changes namespace.
pub fn pin_new(dir: &Path, hostname: &str) -> io::Result<()> {
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    std::thread::Builder::new()
        .name("pin-ns".into())
        .spawn(move || pin_in_new_namespaces(&dir, &hostname))?
        .join()
        .map_err(|_| io::Error::other("the namespace pinning thread panicked"))?
}

fn pin_in_new_namespaces(dir: &Path, hostname: &str) -> io::Result<()> {
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS,
    )?;
    nix::unistd::sethostname(hostname)?;
    super::loopback_up()?;
    let mut pinned: Vec<PathBuf> = Vec::new();
    for kind in PINNED {
        let target = dir.join(kind);
        let source = format!("/proc/thread-self/ns/{kind}");
        let bound = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|_| {
                mount(
                    Some(source.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            });
        match bound {
            Ok(()) => pinned.push(target),
            Err(e) => {
                let _ = std::fs::remove_file(&target);
                for p in &pinned {
                    let _ = unpin_one(p);
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("pinning the {kind} namespace: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Releases what [`pin_new`] pinned in `dir` (the namespaces end with their
/// last process); files already gone are fine, so a half-made or
/// half-removed pod can be removed again.
///
/// # Errors
/// A pin that cannot be unmounted (its file is then kept, to try again).
pub fn unpin(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for kind in PINNED {
        if let Err(e) = unpin_one(&dir.join(kind)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn unpin_one(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (never bound, or unmounted before).
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io::Error::from(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (an nsfs mount), not the empty file
/// under it: a pod whose pins were lost (a reboot) is not ready.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_namespaces_are_new_named_and_released() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test pins namespaces: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        pin_new(dir.path(), "pod-host").unwrap();
        for kind in PINNED {
            let p = dir.path().join(kind);
            assert!(is_pinned(&p), "{kind} not pinned");
            let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
            let f = std::fs::File::open(&p).unwrap();
            let theirs = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
            .unwrap();
            assert_ne!(ours, theirs, "{kind} is berthd's own namespace");
        }
        // This thread never left its own namespaces.
        assert_ne!(
            nix::unistd::gethostname().unwrap().to_string_lossy(),
            "pod-host"
        );
        unpin(dir.path()).unwrap();
        for kind in PINNED {
            assert!(!dir.path().join(kind).exists(), "{kind} left behind");
        }
        // Again, as a retried removal does.
        unpin(dir.path()).unwrap();
    }
}
