//! CopyFrom: a tar archive of a path of the container, written on the
//! blocking pool as the client reads it.
//!
//! The walk goes by file descriptors: each entry is looked at with
//! `fstatat(AT_SYMLINK_NOFOLLOW)` in its directory's descriptor, opened
//! with `open_child` (one component, no symlink followed: one swapped in
//! meanwhile fails the open instead of leading elsewhere) and described by
//! `fstat` of what was opened. Symlinks are archived as symlinks, never
//! followed; hard links become copies; device nodes, fifos and sockets are
//! left out.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat};
use tokio::sync::mpsc;

use super::chunks::{writer, ChunkWriter, CHUNKS_AHEAD};
use super::stat::{Resolved, Source};
use super::{CopyError, IdMap};
use crate::chunk_writer::Completion;
use crate::sys::resolve::open_child;

/// Deepest directory nesting archived (deeper is an error: a path of
/// the container is at most 4096 bytes, so 2048 levels).
const DEPTH_MAX: usize = 2048;

/// Starts writing the archive of `resolved` and returns its chunks, at
/// most [`CHUNKS_AHEAD`] ahead of the reader. An error ends the channel
/// with it; a reader that goes away stops the walk. The [`Completion`] is
/// set once the stream is whole (see [`crate::chunk_writer`]).
pub fn stream_archive(
    resolved: Resolved,
    ids: IdMap,
) -> (mpsc::Receiver<Result<Vec<u8>, CopyError>>, Completion) {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let done = Completion::new();
    let whole = done.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = writer(tx);
        // A panic must end the stream with an error too: the channel just
        // closing would end the call with OK and a truncated archive.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_archive(resolved, ids, &mut out)
        }))
        .unwrap_or_else(|_| Err(CopyError::Aborted("the archive writer panicked".into())));
        match result {
            Ok(()) => whole.set(),
            Err(CopyError::Io { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut
                ) =>
            {
                tracing::debug!("cp archive ended early: {source}");
            }
            Err(e) => {
                if out.send_error(e) {
                    whole.set();
                }
            }
        }
    });
    (rx, done)
}

fn write_archive(resolved: Resolved, ids: IdMap, out: &mut ChunkWriter) -> Result<(), CopyError> {
    let mut w = Walk {
        tar: tar::Builder::new(out),
        ids,
        depth: 0,
    };
    let top = resolved.top;
    match resolved.source {
        Source::Dir(fd) => {
            let st = fstat(&fd).map_err(|e| io_err("describing", &top, e.into()))?;
            w.dir(fd, &st, &top)?;
        }
        Source::Entry { parent, name } => w.child(&parent, &name, &top)?,
    }
    let out = w
        .tar
        .into_inner()
        .map_err(|e| io_err("ending the archive", b"", e))?;
    out.flush_chunk()
        .map_err(|e| io_err("sending the archive", b"", e))
}

fn io_err(context: &str, name: &[u8], e: io::Error) -> CopyError {
    CopyError::Io {
        context: format!(
            "{context} {}",
            crate::error::capped(&String::from_utf8_lossy(name))
        ),
        source: e,
    }
}

struct Walk<'a> {
    tar: tar::Builder<&'a mut ChunkWriter>,
    ids: IdMap,
    depth: usize,
}

impl Walk<'_> {
    fn header(&self, st: &FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = self.ids.from_host(st.st_uid, st.st_gid);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(size);
        h
    }

    /// The entry `name` of `parent`, archived as `tar_name`.
    fn child(&mut self, parent: &OwnedFd, name: &OsStr, tar_name: &[u8]) -> Result<(), CopyError> {
        let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed since the directory was read: left out.
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(io_err("describing", tar_name, e.into())),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
                let fd = match open_child(parent.as_fd(), Path::new(name), flags, 0) {
                    Ok(fd) => fd,
                    // Removed, or swapped for a symlink, since.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => {
                        return Ok(())
                    }
                    Err(e) => return Err(io_err("opening", tar_name, e)),
                };
                let st = fstat(&fd).map_err(|e| io_err("describing", tar_name, e.into()))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(());
                }
                self.file(fd, &st, tar_name)
            }
            libc::S_IFDIR => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
                let fd = match open_child(parent.as_fd(), Path::new(name), flags, 0) {
                    Ok(fd) => fd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => {
                        return Ok(())
                    }
                    Err(e) => return Err(io_err("opening", tar_name, e)),
                };
                let st = fstat(&fd).map_err(|e| io_err("describing", tar_name, e.into()))?;
                self.dir(fd, &st, tar_name)
            }
            libc::S_IFLNK => {
                let target = match nix::fcntl::readlinkat(parent, name) {
                    Ok(t) => t,
                    Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => return Ok(()),
                    Err(e) => return Err(io_err("reading the symlink", tar_name, e.into())),
                };
                let mut h = self.header(&st, tar::EntryType::Symlink, 0);
                self.tar
                    .append_link(&mut h, OsStr::from_bytes(tar_name), &target)
                    .map_err(|e| io_err("archiving", tar_name, e))
            }
            // Device nodes, fifos, sockets.
            _ => Ok(()),
        }
    }

    fn file(&mut self, fd: OwnedFd, st: &FileStat, tar_name: &[u8]) -> Result<(), CopyError> {
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut h = self.header(st, tar::EntryType::Regular, size);
        let file = std::fs::File::from(fd);
        let data = Exact {
            inner: (&file).take(size),
            left: size,
        };
        self.tar
            .append_data(&mut h, OsStr::from_bytes(tar_name), data)
            .map_err(|e| io_err("archiving", tar_name, e))
    }

    fn dir(&mut self, fd: OwnedFd, st: &FileStat, tar_name: &[u8]) -> Result<(), CopyError> {
        if self.depth >= DEPTH_MAX {
            return Err(io_err(
                "archiving",
                tar_name,
                io::Error::other("directories nested more than 2048 deep"),
            ));
        }
        let mut h = self.header(st, tar::EntryType::Directory, 0);
        let mut dir_name = tar_name.to_vec();
        if !dir_name.ends_with(b"/") {
            dir_name.push(b'/');
        }
        self.tar
            .append_data(&mut h, OsStr::from_bytes(&dir_name), io::empty())
            .map_err(|e| io_err("archiving", tar_name, e))?;
        let listing = fd
            .try_clone()
            .and_then(|d| nix::dir::Dir::from_fd(d).map_err(io::Error::from))
            .map_err(|e| io_err("reading the directory", tar_name, e))?;
        self.depth += 1;
        for ent in listing {
            let ent = ent.map_err(|e| io_err("reading the directory", tar_name, e.into()))?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let mut child = if tar_name == b"." {
                b"./".to_vec()
            } else {
                dir_name.clone()
            };
            child.extend_from_slice(name.as_bytes());
            self.child(&fd, name, &child)?;
        }
        self.depth -= 1;
        Ok(())
    }
}

/// Reads exactly `left` bytes: a file that shrank since it was described
/// is padded with zeros (the header said its size), one that grew is cut.
struct Exact<'a> {
    inner: io::Take<&'a std::fs::File>,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let mut n = self.inner.read(buf)?;
        if n == 0 {
            n = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            buf[..n].fill(0);
        }
        self.left -= n as u64;
        Ok(n)
    }
}
