//! File system steps of the store: staging directories, no-replace
//! renames, durable writes, disk usage.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use crate::image::error::IoContext;
use crate::image::ImageError;

/// A private directory under `staging/`, deleted (with its contents) on drop,
/// so any failed import leaves nothing behind.
pub(super) struct StagingDir {
    pub(super) path: PathBuf,
}

impl StagingDir {
    /// Creates a uniquely named directory under `parent`.
    pub(super) fn create(parent: &Path, prefix: &str) -> Result<Self, ImageError> {
        loop {
            let path = parent.join(format!("{prefix}{:016x}", rand::random::<u64>()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ImageError::io(
                        format!("creating staging dir {}", path.display()),
                        e,
                    ))
                }
            }
        }
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        // Best effort; `open` sweeps staging/ anyway after a crash.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The hex part of a `sha256:<hex>` string we produced or validated earlier.
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Creates `dir` (and parents) if missing.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), ImageError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ctx(|| format!("creating {}", dir.display()))
}

/// fsyncs a directory so renames into it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing {}", dir.display()))
}

/// Renames without replacing an existing target. Returns false if the target
/// exists (another import got there first).
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> Result<bool, ImageError> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) | Err(Errno::ENOTEMPTY) => Ok(false),
        // Filesystems without RENAME_NOREPLACE: we hold the store lock, so
        // check-then-rename is not racy against other imports.
        Err(Errno::EINVAL) if fs::symlink_metadata(to).is_ok() => Ok(false),
        Err(Errno::EINVAL) => fs::rename(from, to)
            .map(|()| true)
            .ctx(|| format!("moving {} to {}", from.display(), to.display())),
        Err(e) => Err(ImageError::io(
            format!("moving {} to {}", from.display(), to.display()),
            e.into(),
        )),
    }
}

/// Removes a file or directory tree, ignoring "already gone".
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes of regular files under `dir` (hard links counted once), without
/// following symlinks. Used for layers an earlier import already unpacked.
pub(super) fn disk_usage(dir: &Path) -> Result<u64, ImageError> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ctx(|| format!("reading {}", d.display()))? {
            let entry = entry.ctx(|| format!("reading {}", d.display()))?;
            let m = entry
                .metadata()
                .ctx(|| format!("inspecting {}", entry.path().display()))?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads until `buf` is full or EOF; returns how much was read.
pub(super) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
