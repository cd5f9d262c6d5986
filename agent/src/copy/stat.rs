//! Resolving a request path in the container's root, and describing it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat};

use super::path::{self, Wanted};
use super::CopyError;
use crate::sys::resolve::open_in_root;

/// A path as StatPath and CopyFrom describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component (`.` for a directory's contents).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix mode: type and permission bits.
    pub mode: u32,
    /// Last modification: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// A symlink's target as stored; empty otherwise.
    pub link_target: String,
}

impl PathStat {
    fn new(name: &[u8], st: &FileStat, link_target: String) -> Self {
        PathStat {
            name: String::from_utf8_lossy(name).into_owned(),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mode: st.st_mode,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            link_target,
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// What a request path resolved to.
pub enum Source {
    /// A directory, followed (the root, or a path ending in `/` or `/.`):
    /// opened for reading.
    Dir(OwnedFd),
    /// The entry `name` of the directory `parent` (an `O_PATH`
    /// descriptor), not followed: what it is is read from `parent`.
    Entry {
        /// Its directory.
        parent: OwnedFd,
        /// Its name there (one component).
        name: OsString,
    },
}

/// A resolved path, its description and the archive's top entry name.
pub struct Resolved {
    /// Where it is.
    pub source: Source,
    /// What it is.
    pub stat: PathStat,
    /// The name of the archive's top entry.
    pub top: Vec<u8>,
}

fn open_err(path: &str, e: io::Error, dir_wanted: bool) -> CopyError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => CopyError::PathNotFound { path: path.into() },
        Some(libc::ENOTDIR) if dir_wanted => CopyError::NotADirectory { path: path.into() },
        Some(libc::ENOTDIR) => CopyError::PathNotFound { path: path.into() },
        _ => CopyError::io("resolving", path, e),
    }
}

/// Resolves the request `path` in `root` for StatPath and CopyFrom: the
/// parent's symlinks are followed inside the root, the last component is
/// not (unless a directory is asked for with a trailing `/` or `/.`).
pub fn resolve_source(root: &OwnedFd, path: &str) -> Result<Resolved, CopyError> {
    path::check(path)?;
    let w: Wanted = path::wanted(path);
    let top = w.top_name();
    if w.dir {
        let fd = open_in_root(
            root.as_fd(),
            &w.full(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        )
        .map_err(|e| open_err(path, e, true))?;
        let st = fstat(&fd).map_err(|e| CopyError::io("describing", path, e.into()))?;
        return Ok(Resolved {
            stat: PathStat::new(&top, &st, String::new()),
            source: Source::Dir(fd),
            top,
        });
    }
    let name = OsStr::from_bytes(w.name.as_deref().unwrap_or(b".")).to_os_string();
    let parent = open_in_root(root.as_fd(), &w.parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| open_err(path, e, false))?;
    let st = fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| open_err(path, e.into(), false))?;
    let link_target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let t = nix::fcntl::readlinkat(&parent, name.as_os_str())
            .map_err(|e| CopyError::io("reading the symlink", path, e.into()))?;
        String::from_utf8_lossy(t.as_bytes()).into_owned()
    } else {
        String::new()
    };
    Ok(Resolved {
        stat: PathStat::new(&top, &st, link_target),
        source: Source::Entry { parent, name },
        top,
    })
}

/// Resolves CopyTo's `path`, which must be a directory (a symlink as its
/// last component is followed, inside the root): an `O_PATH` descriptor.
pub fn resolve_dir(root: &OwnedFd, path: &str) -> Result<OwnedFd, CopyError> {
    path::check(path)?;
    let w = path::wanted(path);
    open_in_root(root.as_fd(), &w.full(), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| open_err(path, e, true))
}
