//! Walking a tree by descriptor for the layer writers: every entry opened
//! from its parent's descriptor with `O_NOFOLLOW` and checked against the
//! `lstat` it was chosen by, so an entry that changes during the walk fails
//! the layer rather than leading out; and what an overlayfs upper directory's
//! entries mean (whiteouts, opaque directories, the runtime's placeholders).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use super::layer::{fail, At, LayerCause, Result, MAX_DEPTH, MAX_ENTRIES, MAX_PATH, MAX_XATTR};

/// The kinds of file a walk meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    pub(super) fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFCHR => Kind::Char,
            SFlag::S_IFBLK => Kind::Block,
            SFlag::S_IFIFO => Kind::Fifo,
            SFlag::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        }
    }
}

/// One entry as the walk hands it over: the descriptor is there for
/// directories and regular files, the target for symlinks.
pub(super) struct Node<'a> {
    pub(super) rel: &'a [u8],
    pub(super) st: &'a FileStat,
    pub(super) kind: Kind,
    pub(super) fd: Option<&'a OwnedFd>,
    pub(super) target: Option<&'a OsStr>,
}

/// What a walk feeds; `entry` says whether to go into a directory.
pub(super) trait Sink {
    fn entry(&mut self, node: &Node<'_>) -> Result<bool>;
}

/// Walks trees by descriptor, counting entries against [`MAX_ENTRIES`].
pub(super) struct Walker<S> {
    pub(super) sink: S,
    pub(super) seen: u64,
}

impl<S: Sink> Walker<S> {
    pub(super) fn new(sink: S) -> Self {
        Walker { sink, seen: 0 }
    }

    /// Hands the entry `name` of `parent`, at `rel`, and its tree to the sink.
    pub(super) fn child(
        &mut self,
        parent: BorrowedFd,
        name: &CStr,
        rel: &mut Vec<u8>,
        depth: usize,
    ) -> Result<()> {
        self.seen += 1;
        let limit = if self.seen > MAX_ENTRIES {
            "entries"
        } else if rel.len() > MAX_PATH {
            "path length"
        } else if depth >= MAX_DEPTH {
            "directory depth"
        } else {
            ""
        };
        if !limit.is_empty() {
            return fail(rel, LayerCause::Limit(limit));
        }
        let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).at(rel)?;
        let kind = Kind::of(&st);
        let (fd, target) = match kind {
            Kind::Dir => (
                Some(open_checked(parent, name, &st, OFlag::O_DIRECTORY, rel)?),
                None,
            ),
            // O_NONBLOCK: a fifo swapped in before the open must not hang us.
            Kind::File => (
                Some(open_checked(parent, name, &st, OFlag::O_NONBLOCK, rel)?),
                None,
            ),
            Kind::Symlink => (None, Some(readlinkat(parent, name).at(rel)?)),
            _ => (None, None),
        };
        let fd = fd.as_ref();
        let target = target.as_deref();
        let node = Node {
            rel,
            st: &st,
            kind,
            fd,
            target,
        };
        match (self.sink.entry(&node)?, fd) {
            (true, Some(dir)) if kind == Kind::Dir => self.children(dir, rel, depth + 1),
            _ => Ok(()),
        }
    }

    /// Hands every entry of `dir` (at `rel`) to the sink, in name order.
    pub(super) fn children(
        &mut self,
        dir: &OwnedFd,
        rel: &mut Vec<u8>,
        depth: usize,
    ) -> Result<()> {
        for name in list_names(dir, rel)? {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            self.child(dir.as_fd(), &name, rel, depth)?;
            rel.truncate(len);
        }
        Ok(())
    }
}

/// What marks runtime placeholders (see [`diff_upper`]).
pub(super) struct Marks<'a> {
    pub(super) skip: &'a [&'a str],
    pub(super) written: &'a [&'a str],
    pub(super) lower_has: &'a dyn Fn(&str) -> bool,
}

/// Whether `rel` is a runtime placeholder (see [`diff_upper`]).
pub(super) fn is_placeholder(
    marks: &Marks<'_>,
    rel: &[u8],
    st: &FileStat,
    fd: Option<&OwnedFd>,
) -> Result<bool> {
    let Ok(path) = std::str::from_utf8(rel) else {
        return Ok(false);
    };
    let written = marks.written.contains(&path);
    if written && Kind::of(st) == Kind::File {
        return Ok(true);
    }
    let named = marks.skip.contains(&path);
    let leads = |s: &&str| {
        s.strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    let leads = !named && marks.skip.iter().chain(marks.written).any(leads);
    if !(named || leads) || (named && (marks.lower_has)(path)) {
        return Ok(false);
    }
    match (Kind::of(st), fd) {
        (Kind::File, _) => Ok(named && st.st_size == 0),
        (Kind::Dir, Some(dir)) => {
            if is_opaque(&crate::sys::xattr::read_all(dir.as_fd(), MAX_XATTR).at(rel)?) {
                return Ok(false);
            }
            for name in list_names(dir, rel)? {
                let Ok(name_str) = name.to_str() else {
                    return Ok(false);
                };
                let child = format!("{path}/{name_str}");
                let child = child.as_bytes();
                let cst = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).at(child)?;
                let cfd = match Kind::of(&cst) {
                    Kind::Dir => Some(open_checked(
                        dir.as_fd(),
                        &name,
                        &cst,
                        OFlag::O_DIRECTORY,
                        child,
                    )?),
                    _ => None,
                };
                if !is_placeholder(marks, child, &cst, cfd.as_ref())? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The directory holding `path` (trusted: the caller's own tree) and the
/// last component, which is then taken without following it.
pub(super) fn open_parent(path: &Path) -> Result<(OwnedFd, CString)> {
    let raw = path.as_os_str().as_bytes();
    let Some(name) = path.file_name() else {
        return fail(raw, LayerCause::Invalid("source has no final name"));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(name) = CString::new(name.as_bytes()) else {
        return fail(raw, LayerCause::Invalid("NUL in path"));
    };
    Ok((open_dir_path(parent)?, name))
}

pub(super) fn open_dir_path(path: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::empty()).at(path.as_os_str().as_bytes())
}

/// Opens `name` in `dir` without following it, and checks it is still the
/// inode `st` described.
pub(super) fn open_checked(
    dir: BorrowedFd,
    name: &CStr,
    st: &FileStat,
    flags: OFlag,
    rel: &[u8],
) -> Result<OwnedFd> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty()).at(rel)?;
    let now = fstat(&fd).at(rel)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) || Kind::of(&now) != Kind::of(st) {
        return fail(rel, LayerCause::Changed);
    }
    Ok(fd)
}

/// The names in `dir` (without `.` and `..`), in byte order.
pub(super) fn list_names(dir: &OwnedFd, rel: &[u8]) -> Result<Vec<CString>> {
    // A fresh open of "." has its own offset: listing a directory twice works.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut d = Dir::openat(dir.as_fd(), ".", flags, Mode::empty()).at(rel)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let name = entry.at(rel)?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            if names.len() as u64 >= MAX_ENTRIES {
                return fail(rel, LayerCause::Limit("entries"));
            }
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

pub(super) fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// `x` for `trusted.overlay.x` or `user.overlay.x`.
pub(super) fn overlay_name(name: &[u8]) -> Option<&str> {
    let rest = name.strip_prefix(b"trusted.overlay.");
    std::str::from_utf8(rest.or_else(|| name.strip_prefix(b"user.overlay."))?).ok()
}

/// Whether a directory's xattrs make it opaque (`x` only means it may
/// hold xattr whiteouts).
pub(super) fn is_opaque(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    xattrs
        .iter()
        .any(|(k, v)| overlay_name(k) == Some("opaque") && v == b"y")
}

/// The xattrs an unpacker applies (as `image::extract` does); overlayfs's
/// own (`trusted.overlay.*`, `user.overlay.*`) and host labels stay behind.
pub(super) fn keep_xattr(name: &[u8]) -> bool {
    (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
        || name == b"security.capability"
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}
