//! A stopped container's root as an overlay mount that is attached
//! nowhere: `cp` of a created or exited container works on it as on a
//! running one's `/proc/<pid>/root`.
//!
//! The overlay is mounted by a thread of its own in a mount namespace of
//! its own (`unshare(CLONE_NEWNS)` unshares only the calling thread's
//! filesystem context), at the container's own mount point there, and a
//! descriptor of its root is opened. When the thread ends its namespace
//! goes, detaching the mount: it stays reachable only through that
//! descriptor and what is opened beneath it, and is gone once they are
//! closed. The host's mount table never sees it. (The new mount API would
//! make such a mount directly, but overlay takes more than one layer
//! through it only from Linux 6.8, `lowerdir+`.)

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

/// What the overlay is made of.
pub enum Layers {
    /// Read-only: the container's upper dir on top of the image's layers,
    /// all as lower layers. No work dir is taken, so a start of the
    /// container meanwhile is not in its way.
    ReadOnly {
        /// The upper dir.
        upper: PathBuf,
        /// The image's layers, top first.
        layers: Vec<PathBuf>,
    },
    /// Writable: the image's layers under the container's upper and work
    /// dirs, as its own root while it runs (the caller keeps it from
    /// starting meanwhile).
    Writable {
        /// The upper dir.
        upper: PathBuf,
        /// The work dir.
        work: PathBuf,
        /// The image's layers, top first.
        layers: Vec<PathBuf>,
        /// Mounted read-only even so (a `--read-only` container).
        read_only: bool,
    },
}

/// Overlay's mount options for `layers`; `:` in a path escaped, as the
/// container's own start does.
fn options(layers: &Layers) -> io::Result<(String, bool)> {
    let path = |p: &Path| {
        p.to_str()
            .map(|s| s.replace(':', "\\:"))
            .ok_or_else(|| io::Error::other(format!("not UTF-8: {}", p.display())))
    };
    let lower = |dirs: &mut dyn Iterator<Item = &PathBuf>| -> io::Result<String> {
        Ok(dirs
            .map(|d| path(d))
            .collect::<io::Result<Vec<_>>>()?
            .join(":"))
    };
    Ok(match layers {
        Layers::ReadOnly { upper, layers } => (
            format!(
                "lowerdir={}",
                lower(&mut std::iter::once(upper).chain(layers))?
            ),
            true,
        ),
        Layers::Writable {
            upper,
            work,
            layers,
            read_only,
        } => (
            format!(
                "lowerdir={},upperdir={},workdir={}",
                lower(&mut layers.iter())?,
                path(upper)?,
                path(work)?
            ),
            *read_only,
        ),
    })
}

/// Mounts `layers` (at least two, top first) read-only on `at`, in the
/// caller's mount namespace (`nodev`, `nosuid`): a build's view of a stage
/// for `COPY --from`, unmounted by the caller (and at berthd's start, after
/// a crash: see [`unmount_under`]).
pub fn mount_read_only(layers: &[PathBuf], at: &Path) -> io::Result<()> {
    let Some((top, rest)) = layers.split_first() else {
        return Err(io::Error::other("no layers to mount"));
    };
    let (data, _) = options(&Layers::ReadOnly {
        upper: top.clone(),
        layers: rest.to_vec(),
    })?;
    mount(
        Some("overlay"),
        at,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Detaches every mount at or under `dir` (deepest first), as
/// /proc/self/mountinfo lists them. Best effort; says how many it
/// detached.
pub fn unmount_under(dir: &Path) -> usize {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
        .iter()
        .filter(|p| umount2(p.as_path(), MntFlags::MNT_DETACH).is_ok())
        .count()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts `layers` as an overlay attached nowhere (`nodev`, `nosuid`;
/// read-only for [`Layers::ReadOnly`]) and returns its root (`O_PATH`).
/// `at` is a directory the overlay is briefly mounted on, in a mount
/// namespace of its own. Blocks for the mount: call it off the async
/// workers.
pub fn detached_overlay(layers: Layers, at: &Path) -> io::Result<OwnedFd> {
    let (data, read_only) = options(&layers)?;
    let at = at.to_path_buf();
    // A thread of its own: it leaves the host's mount namespace for good,
    // so it must not be a pooled thread that runs other work later.
    std::thread::Builder::new()
        .name("cp-overlay".into())
        .spawn(move || -> io::Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNS)?;
            // Nothing done here propagates back to the host.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            let mut flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
            if read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(
                Some("overlay"),
                &at,
                Some("overlay"),
                flags,
                Some(data.as_str()),
            )?;
            let root = open(
                &at,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            // Detached now, not only when this namespace goes (which may
            // be a moment after the join below).
            umount2(&at, MntFlags::MNT_DETACH)?;
            Ok(root)
        })?
        .join()
        .map_err(|_| io::Error::other("the overlay thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stack_the_upper_dir_for_reading_and_escape_colons() {
        let ro = Layers::ReadOnly {
            upper: "/s/c/upper".into(),
            layers: vec!["/s/l/b:x".into(), "/s/l/a".into()],
        };
        assert_eq!(
            options(&ro).unwrap(),
            ("lowerdir=/s/c/upper:/s/l/b\\:x:/s/l/a".to_string(), true)
        );
        let rw = Layers::Writable {
            upper: "/s/c/upper".into(),
            work: "/s/c/work".into(),
            layers: vec!["/s/l/b".into(), "/s/l/a".into()],
            read_only: false,
        };
        assert_eq!(
            options(&rw).unwrap(),
            (
                "lowerdir=/s/l/b:/s/l/a,upperdir=/s/c/upper,workdir=/s/c/work".to_string(),
                false
            )
        );
    }
}
