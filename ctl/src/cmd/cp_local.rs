//! `cp`'s local side: the tar of a local path (to copy in) and the
//! extraction of a container's tar under a local directory (to copy out),
//! with the `tar` crate. Both run on blocking threads and stream through
//! bounded channels.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::cp_rules::{self, Info};

/// Chunks that wait in a channel, either way.
pub const CHUNKS_AHEAD: usize = 4;
/// Size of the chunks sent.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// What is known of a local source (moby's `CopyInfoSourcePath`), and the
/// path to archive.
pub fn source_info(path: &str, follow: bool) -> io::Result<Info> {
    let (resolved, rebase) = if follow {
        let real = std::fs::canonicalize(path)?;
        cp_rules::rebase_name(path, &real.to_string_lossy())
    } else {
        (path.to_string(), None)
    };
    // Symlinks before the last component are followed by the kernel; the
    // last one only with -L (or a trailing `/` or `/.`).
    let meta = if cp_rules::asserts_directory(&resolved) {
        std::fs::metadata(&resolved)?
    } else {
        std::fs::symlink_metadata(&resolved)?
    };
    Ok(Info {
        path: resolved,
        exists: true,
        is_dir: meta.is_dir(),
        rebase_name: rebase,
    })
}

/// What is known of a local destination (moby's `CopyInfoDestinationPath`):
/// symlinks followed (up to 10); a missing one needs its parent.
pub fn dest_info(path: &str) -> io::Result<Info> {
    let mut path = path.to_string();
    for _ in 0..=10 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                path = cp_rules::link_target_path(&path, &target.to_string_lossy());
            }
            Ok(m) => {
                return Ok(Info {
                    path,
                    exists: true,
                    is_dir: m.is_dir(),
                    rebase_name: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (parent, _) = cp_rules::split_dir_entry(&path);
                let m = std::fs::metadata(&parent)?;
                if !m.is_dir() {
                    return Err(io::Error::other(format!("{parent} is not a directory")));
                }
                return Ok(Info {
                    path,
                    ..Info::default()
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("too many symlinks in {path}")))
}

/// A `Write` that sends chunks down a channel.
pub struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// Writes to `tx`.
    pub fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A `Read` over chunks from a channel (closed: end of file).
pub struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the tar of the local `src` (its last component archived under
/// `top`; `.`: a directory's entries) to `out`. Symlinks are archived as
/// symlinks; owners, modes and times as they are.
pub fn write_tar(src: &Info, top: &str, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let walk = PathBuf::from(&src.path);
    if src.is_dir {
        b.append_dir_all(top, &walk)?;
    } else {
        b.append_path_with_name(&walk, top)?;
    }
    b.into_inner()?.flush()
}

/// Extracts the container's tar read from `input` under the local `dir`,
/// the top entry renamed as `rebase` says. Device nodes and fifos are left
/// out; owners only with `keep_owners` (`-a`); modes and times kept. The
/// `tar` crate's `unpack` keeps every entry inside `dir` (no `..`, no
/// absolute names, no writing through a symlink that leads out).
pub fn extract(
    input: impl Read + Send + 'static,
    dir: &Path,
    rebase: Option<(String, String)>,
    keep_owners: bool,
) -> io::Result<()> {
    let (reader, writer) = io::pipe()?;
    let renamer = std::thread::spawn(move || rename_entries(input, writer, rebase));
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(keep_owners);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    let unpacked = ar.unpack(dir);
    drop(ar);
    let renamed = renamer
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the archive reader panicked")));
    // The reading side's error (the stream) explains the other's.
    renamed.and(unpacked)
}

fn rename_entries(
    input: impl Read,
    out: io::PipeWriter,
    rebase: Option<(String, String)>,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(input);
    let mut b = tar::Builder::new(out);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = match &rebase {
            Some((from, to)) => cp_rules::rebase_entry(&name, from, to),
            None => name,
        };
        let mut header = entry.header().clone();
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                let target = match (&rebase, kind) {
                    (Some((from, to)), tar::EntryType::Link) => {
                        PathBuf::from(cp_rules::rebase_entry(&target.to_string_lossy(), from, to))
                    }
                    _ => target,
                };
                b.append_link(&mut header, &name, target)?;
            }
            _ => b.append_data(&mut header, &name, &mut entry)?,
        }
    }
    b.into_inner()?.flush()
}
