//! Writing state files, and making them durable in batches.
//!
//! A state file is always replaced atomically (a temporary file renamed over
//! it), so a crash of berthd never loses or tears one. Putting it on stable
//! storage is not on the request path: an fsync costs from a fraction of a
//! millisecond to tens of milliseconds on a busy disk, several per container
//! start. Instead, written files are queued on a [`Flusher`] that fsyncs them
//! and their directories in the background at most
//! [`crate::events::SYNC_INTERVAL`] (plus the time of flushing) after the
//! write, together with the event log. A power
//! loss can therefore lose the changes of the last such interval, as it can
//! lose the last events, and never more. (On a filesystem that may write a
//! rename before the renamed file's data, such as ext4 without a journal, a
//! record changed in that interval can even come back torn; berthd moves an
//! unreadable record aside at start and says so in its log.)

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How [`write_atomic`] writes a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits of the file; also set on a temporary file a crash
    /// left behind before anything is written to it, so a secret is never
    /// readable by others, not even briefly. `None`: the default mode of a
    /// new file (0666 less the umask), as `std::fs::write`.
    pub mode: Option<u32>,
    /// Fsync the file, and its directory after the rename, before
    /// returning: durable now, for files that are not queued on a
    /// [`Flusher`] (the image index, stored credentials).
    pub sync: bool,
}

impl WriteOptions {
    /// Durable before returning (see [`WriteOptions::sync`]).
    pub fn synced() -> Self {
        WriteOptions {
            mode: None,
            sync: true,
        }
    }

    /// With these permission bits (see [`WriteOptions::mode`]).
    pub fn with_mode(self, mode: u32) -> Self {
        WriteOptions {
            mode: Some(mode),
            ..self
        }
    }
}

/// Replaces `path` with `data` atomically: a reader sees the old content or
/// the new, never a torn file, also after a crash of the process (a
/// temporary `.<name>.tmp` beside it is written, then renamed over it).
/// Durable only with [`WriteOptions::sync`]; otherwise that is the
/// [`Flusher`]'s business. Callers serialise writes of one path.
pub fn write_atomic(path: &Path, data: &[u8], opts: WriteOptions) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    let tmp = temp_path(path)?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    if let Some(mode) = opts.mode {
        open.mode(mode);
    }
    let mut f = open.open(&tmp)?;
    if let Some(mode) = opts.mode {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    f.write_all(data)?;
    if opts.sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    if opts.sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The temporary file [`write_atomic`] writes `path` through; a caller may
/// remove a leftover one at start.
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    Ok(dir.join(format!(".{}.tmp", name.to_string_lossy())))
}

/// Writes `data` to `path` atomically but not durably (see
/// [`write_atomic`]); durability is the [`Flusher`]'s business.
pub fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(
        path,
        data,
        WriteOptions::default().with_mode(crate::state_dir::FILE_MODE),
    )
}

/// Creates an empty file (or empties one) that only root can read.
pub fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::state_dir::FILE_MODE)
        .open(path)
}

/// `path` as UTF-8, as the monitor's launch spec carries it; an error
/// names the path otherwise.
pub fn utf8_path(path: &Path) -> io::Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not valid UTF-8", path.display()),
        )
    })
}

/// How a state file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed to stable storage by the next background flush.
    Flushed,
    /// Never flushed explicitly: for files that lose their meaning at a
    /// reboot anyway (records of auto-removed containers).
    Volatile,
}

/// State files and directories written since the last flush.
#[derive(Debug, Default)]
pub struct Flusher {
    pending: Mutex<Pending>,
    /// Signalled when something is queued, so the background flush sleeps
    /// (and berthd does not wake up at all) while nothing changes.
    queued: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Flusher {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces `path` with `data` atomically (see the module docs) and,
    /// for [`Durability::Flushed`], queues it for the next flush.
    pub fn write(&self, path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
        replace(path, data)?;
        if durability == Durability::Flushed {
            self.lock().files.insert(path.to_path_buf());
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Queues `dir`, whose entries changed (something created, renamed or
    /// removed in it), for the next flush.
    pub fn queue(&self, dir: &Path) {
        self.lock().dirs.insert(dir.to_path_buf());
        self.queued.notify_one();
    }

    /// Makes the next [`Flusher::queued`] return at once, for a flush to be
    /// tried again.
    pub fn retry(&self) {
        self.queued.notify_one();
    }

    /// Waits until something has been queued since the last call (at once
    /// when it was queued before this call).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// Fsyncs every queued file, then every directory holding one and
    /// every queued directory. What is gone by now (a container removed
    /// meanwhile) needs nothing.
    pub fn flush(&self) -> io::Result<()> {
        let Pending { files, mut dirs } = std::mem::take(&mut *self.lock());
        let mut first_error = None;
        let mut note = |path: &Path, r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                first_error
                    .get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
            _ => {}
        };
        for file in files {
            note(
                &file,
                std::fs::File::open(&file).and_then(|f| f.sync_data()),
            );
            if let Some(dir) = file.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        for dir in dirs {
            note(&dir, std::fs::File::open(&dir).and_then(|d| d.sync_all()));
        }
        first_error.map_or(Ok(()), Err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Apparent size of the regular files under `dir` (symlinks not followed,
/// unreadable entries skipped): what deleting it frees, as `du
/// --apparent-size` counts.
pub fn apparent_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_leaves_new_content_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        replace(&p, b"one").unwrap();
        replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_mode_applies_also_to_a_leftover_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registry-auth.json");
        let tmp = temp_path(&p).unwrap();
        std::fs::write(&tmp, b"stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"secret", WriteOptions::synced().with_mode(0o600)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tmp.exists());
    }

    use super::*;

    #[test]
    fn flushed_writes_are_queued_once() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::new();
        let p = dir.path().join("container.json");
        flusher.write(&p, b"created", Durability::Flushed).unwrap();
        flusher.write(&p, b"running", Durability::Flushed).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"running");
        assert_eq!(flusher.lock().files.len(), 1);
        flusher.flush().unwrap();
        assert!(flusher.lock().files.is_empty() && flusher.lock().dirs.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn volatile_writes_queue_nothing_and_gone_dirs_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::new();
        flusher
            .write(&dir.path().join("x.json"), b"x", Durability::Volatile)
            .unwrap();
        assert!(flusher.lock().files.is_empty());
        flusher.queue(&dir.path().join("removed-meanwhile"));
        flusher.flush().unwrap();
    }
}
