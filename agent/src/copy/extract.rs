//! CopyTo: a tar archive extracted beneath a directory of the container,
//! as it streams in.
//!
//! Nothing an archive says can lead out of the directory: names are
//! relative without `..` (`path::entry_components`); parents are opened
//! with `RESOLVE_BENEATH` from the directory's descriptor (a symlink,
//! from the archive or already there, that leads above it fails with
//! `EXDEV`; missing ones are made one below the other without following
//! any symlink); each entry is created new in its parent's descriptor
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat`: whatever of
//! the name was there is unlinked first, never followed); a hard link's
//! target is resolved beneath the directory too. A symlink's target is
//! stored as is: this code never follows one except beneath the directory,
//! and the container resolves it in its own root. Device nodes are
//! refused. Owners are set with `fchown`/`fchownat(AT_SYMLINK_NOFOLLOW)`
//! on what was created, then modes (after the owner: a chown clears
//! set-id bits), then times; directories' times once their entries are in.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::path::{entry_components, join};
use super::{CopyError, IdMap, PATH_MAX};
use crate::sys::resolve::{open_beneath, open_child};

/// How CopyTo extracts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Owners from the archive (in the container's ids); else its root.
    pub copy_uid_gid: bool,
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// The container's ids.
    pub ids: IdMap,
}

/// What an extraction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries extracted.
    pub entries: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
}

/// Directories whose times are set at the end (more are set at once:
/// their times may then move if entries are added to them later).
const DEFERRED_DIRS_MAX: usize = 65536;

/// Extracts the tar read from `reader` beneath `dir` (a directory of the
/// container, an `O_PATH` descriptor).
pub fn extract(
    dir: OwnedFd,
    reader: impl Read,
    opts: ExtractOptions,
) -> Result<Extracted, CopyError> {
    let mut x = Extractor {
        dir,
        opts,
        done: Extracted::default(),
        parents: HashMap::new(),
        dir_times: Vec::new(),
    };
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(|e| x.archive_err(b"", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| x.archive_err(b"", e))?;
        x.entry(entry)?;
    }
    x.finish_dirs();
    Ok(x.done)
}

struct Extractor {
    dir: OwnedFd,
    opts: ExtractOptions,
    done: Extracted,
    /// Parents opened so far, by relative path (cleared when large).
    parents: HashMap<PathBuf, OwnedFd>,
    /// Directories made or entered, with their archive times.
    dir_times: Vec<(PathBuf, u64)>,
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn invalid(name: &[u8], reason: impl Into<String>) -> CopyError {
    CopyError::InvalidArchive {
        entry: lossy(name),
        reason: reason.into(),
    }
}

impl Extractor {
    /// An error of the tar reader: the upload's end, or not a tar.
    fn archive_err(&self, name: &[u8], e: io::Error) -> CopyError {
        if e.kind() == io::ErrorKind::ConnectionAborted {
            return CopyError::Aborted(e.to_string());
        }
        invalid(name, format!("not a readable tar archive: {e}"))
    }

    fn owner(&self, name: &[u8], h: &tar::Header) -> Result<(Uid, Gid), CopyError> {
        let (uid, gid) = if self.opts.copy_uid_gid {
            let uid = h.uid().map_err(|e| invalid(name, e.to_string()))?;
            let gid = h.gid().map_err(|e| invalid(name, e.to_string()))?;
            (uid, gid)
        } else {
            (0, 0)
        };
        let (u, g) = self.opts.ids.to_host(uid, gid).ok_or_else(|| {
            invalid(
                name,
                format!("owner {uid}:{gid} is not an id of the container's user namespace"),
            )
        })?;
        Ok((Uid::from_raw(u), Gid::from_raw(g)))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), CopyError> {
        let raw = entry.path_bytes().into_owned();
        let comps = entry_components(&raw).map_err(|r| invalid(&raw, r))?;
        let Some((name, parents)) = comps.split_last() else {
            // `.`: the directory itself, whose mode and owner stay.
            return Ok(());
        };
        let name = PathBuf::from(name);
        let parent_path = join(parents);
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            return Err(invalid(&raw, "a device node (refused)"));
        }
        let supported = matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse
                | tar::EntryType::Directory
                | tar::EntryType::Symlink
                | tar::EntryType::Link
                | tar::EntryType::Fifo
        );
        if !supported {
            // PAX and GNU extension records are read by the tar crate;
            // anything else (volume labels, ...) is left out.
            tracing::debug!(entry = %lossy(&raw), "cp: skipping an entry of an unknown type");
            return Ok(());
        }
        let (uid, gid) = self.owner(&raw, entry.header())?;
        let mode = entry
            .header()
            .mode()
            .map_err(|e| invalid(&raw, e.to_string()))?
            & 0o7777;
        let mtime = entry
            .header()
            .mtime()
            .map_err(|e| invalid(&raw, e.to_string()))?;
        let parent = self.parent(&raw, &parent_path)?;
        let is_dir = kind == tar::EntryType::Directory;
        self.clear(&raw, &parent, &name, is_dir)?;
        let ctx = |what: &str| format!("{what} entry");
        let fs_err = |what: &str, e: io::Error| CopyError::io(ctx(what), &lossy(&raw), e);
        match kind {
            tar::EntryType::Directory => {
                match mkdirat(&parent, name.as_path(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(fs_err("making the directory of", e.into())),
                }
                let fd = open_child(
                    parent.as_fd(),
                    &name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    0,
                )
                .map_err(|e| self.child_err(&raw, e))?;
                fchown(&fd, Some(uid), Some(gid)).map_err(|e| fs_err("owning", e.into()))?;
                fchmod(&fd, Mode::from_bits_truncate(mode))
                    .map_err(|e| fs_err("chmod of", e.into()))?;
                let rel = parent_path.join(&name);
                if self.dir_times.len() < DEFERRED_DIRS_MAX {
                    self.dir_times.push((rel, mtime));
                } else {
                    let _ = futimens(&fd, &times(mtime), &times(mtime));
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "a symlink without a target"))?;
                if target.len() > PATH_MAX {
                    return Err(invalid(&raw, "a symlink target longer than 4096 bytes"));
                }
                let target = PathBuf::from(OsStr::from_bytes(&target));
                symlinkat(target.as_path(), &parent, name.as_path())
                    .map_err(|e| fs_err("making the symlink of", e.into()))?;
                fchownat(
                    &parent,
                    name.as_path(),
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fs_err("owning", e.into()))?;
                let _ = utimensat(
                    &parent,
                    name.as_path(),
                    &times(mtime),
                    &times(mtime),
                    UtimensatFlags::NoFollowSymlink,
                );
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "a hard link without a target"))?;
                let tcomps = entry_components(&target)
                    .map_err(|r| invalid(&raw, format!("hard link target: {r}")))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(invalid(&raw, "a hard link to the directory itself"));
                };
                let tparent = open_beneath(
                    self.dir.as_fd(),
                    &join(tparents),
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                )
                .map_err(|e| self.parent_err(&raw, e))?;
                linkat(&tparent, *tname, &parent, name.as_path(), AtFlags::empty()).map_err(
                    |e| match e {
                        nix::errno::Errno::ENOENT => {
                            invalid(&raw, "a hard link to an entry that does not exist")
                        }
                        nix::errno::Errno::EXDEV => {
                            invalid(&raw, "a hard link across file systems")
                        }
                        e => fs_err("linking", e.into()),
                    },
                )?;
            }
            tar::EntryType::Fifo => {
                mknodat(
                    &parent,
                    name.as_path(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|e| fs_err("making the fifo of", e.into()))?;
                fchownat(
                    &parent,
                    name.as_path(),
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fs_err("owning", e.into()))?;
                nix::sys::stat::fchmodat(
                    &parent,
                    name.as_path(),
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| fs_err("chmod of", e.into()))?;
                let _ = utimensat(
                    &parent,
                    name.as_path(),
                    &times(mtime),
                    &times(mtime),
                    UtimensatFlags::NoFollowSymlink,
                );
            }
            _ => {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOCTTY;
                let fd = open_child(parent.as_fd(), &name, flags, 0o600)
                    .map_err(|e| self.child_err(&raw, e))?;
                let mut file = std::fs::File::from(fd);
                let written = copy(&mut entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::ConnectionAborted {
                        CopyError::Aborted(e.to_string())
                    } else {
                        fs_err("writing", e)
                    }
                })?;
                self.done.bytes += written;
                fchown(&file, Some(uid), Some(gid)).map_err(|e| fs_err("owning", e.into()))?;
                fchmod(&file, Mode::from_bits_truncate(mode))
                    .map_err(|e| fs_err("chmod of", e.into()))?;
                let _ = futimens(&file, &times(mtime), &times(mtime));
            }
        }
        self.done.entries += 1;
        Ok(())
    }

    /// The directory `rel` beneath the destination, opened (missing
    /// components made, 0755 and owned as the container's root).
    fn parent(&mut self, raw: &[u8], rel: &Path) -> Result<OwnedFd, CopyError> {
        if rel.as_os_str().is_empty() {
            return self
                .dir
                .try_clone()
                .map_err(|e| CopyError::io("duplicating", "the directory", e));
        }
        if let Some(fd) = self.parents.get(rel) {
            return fd
                .try_clone()
                .map_err(|e| CopyError::io("duplicating", "a directory", e));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let fd = match open_beneath(self.dir.as_fd(), rel, flags) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.make_parents(raw, rel)?,
            Err(e) => return Err(self.parent_err(raw, e)),
        };
        if self.parents.len() >= 256 {
            self.parents.clear();
        }
        let keep = fd
            .try_clone()
            .map_err(|e| CopyError::io("duplicating", "a directory", e))?;
        self.parents.insert(rel.to_path_buf(), keep);
        Ok(fd)
    }

    fn make_parents(&mut self, raw: &[u8], rel: &Path) -> Result<OwnedFd, CopyError> {
        let (uid, gid) = self.opts.ids.to_host(0, 0).unwrap_or((0, 0));
        let mut cur = self
            .dir
            .try_clone()
            .map_err(|e| CopyError::io("duplicating", "the directory", e))?;
        for comp in rel.components() {
            let comp = Path::new(comp.as_os_str());
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            cur = match open_beneath(cur.as_fd(), comp, flags) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match mkdirat(&cur, comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(CopyError::io("making a parent of", &lossy(raw), e.into()))
                        }
                    }
                    let fd = open_child(cur.as_fd(), comp, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
                        .map_err(|e| self.child_err(raw, e))?;
                    let _ = fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
                    fd
                }
                Err(e) => return Err(self.parent_err(raw, e)),
            };
        }
        Ok(cur)
    }

    fn parent_err(&self, raw: &[u8], e: io::Error) -> CopyError {
        match e.raw_os_error() {
            Some(libc::EXDEV) => invalid(
                raw,
                "its parent is a symlink that leads out of the destination",
            ),
            Some(libc::ENOTDIR) => invalid(raw, "its parent is not a directory"),
            Some(libc::ELOOP) => invalid(raw, "its parent is a loop of symlinks"),
            Some(libc::ENOENT) => invalid(raw, "its parent does not exist"),
            _ => CopyError::io("opening the parent of", &lossy(raw), e),
        }
    }

    fn child_err(&self, raw: &[u8], e: io::Error) -> CopyError {
        match e.raw_os_error() {
            // Something of the same name appeared meanwhile (a process of
            // the container made it): not followed, not replaced.
            Some(libc::ELOOP | libc::EEXIST | libc::ENOTDIR) => CopyError::Conflict {
                entry: lossy(raw),
                reason: "something else appeared under its name meanwhile",
            },
            _ => CopyError::io("creating", &lossy(raw), e),
        }
    }

    /// Makes room for the entry `name` of `parent`: an existing
    /// non-directory is unlinked (never followed); a directory stays for a
    /// directory, else is removed if empty.
    fn clear(
        &self,
        raw: &[u8],
        parent: &OwnedFd,
        name: &Path,
        is_dir: bool,
    ) -> Result<(), CopyError> {
        let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(CopyError::io("describing", &lossy(raw), e.into())),
        };
        let was_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let conflict = |reason| CopyError::Conflict {
            entry: lossy(raw),
            reason,
        };
        match (was_dir, is_dir) {
            (true, true) => Ok(()),
            (true, false) if self.opts.no_overwrite_dir_non_dir => {
                Err(conflict("a directory is in the way of a non-directory"))
            }
            (false, true) if self.opts.no_overwrite_dir_non_dir => {
                Err(conflict("a non-directory is in the way of a directory"))
            }
            (true, false) => match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
                Ok(()) => Ok(()),
                Err(nix::errno::Errno::ENOTEMPTY | nix::errno::Errno::EEXIST) => {
                    Err(conflict("a non-empty directory is in the way"))
                }
                Err(e) => Err(CopyError::io(
                    "removing the directory in the way of",
                    &lossy(raw),
                    e.into(),
                )),
            },
            (false, _) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| {
                CopyError::io("removing what is in the way of", &lossy(raw), e.into())
            }),
        }
    }

    /// Sets the directories' times, deepest first, once their entries are
    /// in (best effort: one removed meanwhile is skipped).
    fn finish_dirs(&mut self) {
        for (rel, mtime) in self.dir_times.drain(..).rev() {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
            if let Ok(fd) = open_beneath(self.dir.as_fd(), &rel, flags) {
                let _ = futimens(&fd, &times(mtime), &times(mtime));
            }
        }
    }
}

fn times(secs: u64) -> TimeSpec {
    TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0)
}

/// Copies with a 64 KiB buffer (an entry's reader is not a file: no
/// `copy_file_range`).
fn copy(from: &mut impl Read, to: &mut std::fs::File) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}
