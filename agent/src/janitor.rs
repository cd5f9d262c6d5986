//! Deletes removed containers' files off the request path.
//!
//! `Remove` renames a container's directory into the trash, so the container
//! is gone by name at once; unlinking its files (a dozen inodes or more, each
//! freed block a discard request on some disks) is left to a thread at idle
//! CPU priority, which a burst of starts and removes does not wait for. The
//! trash is a directory of its own (`<state>/trash`): the idle thread then
//! never holds the lock of the directory every create and remove works in. When the thread falls
//! behind (a machine busy for long), removals delete inline again, so the
//! trash stays bounded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// Directories waiting for the thread beyond which removals delete inline.
const MAX_PENDING: usize = 64;

/// The trash directory and its deleting thread.
#[derive(Debug)]
pub struct Janitor {
    dir: PathBuf,
    queue: Sender<PathBuf>,
    pending: Arc<AtomicUsize>,
}

impl Janitor {
    /// Uses (and creates) the trash directory `dir`, and queues for deletion
    /// whatever a previous run left in it.
    pub fn start(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("janitor".into())
            .spawn(move || {
                if let Err(e) = crate::sys::run_at_idle_priority() {
                    tracing::debug!("trash deletion at normal priority: {e}");
                }
                for path in rx {
                    delete(&path);
                    left.fetch_sub(1, Ordering::Relaxed);
                }
            })?;
        let janitor = Janitor {
            dir,
            queue: tx,
            pending,
        };
        for e in std::fs::read_dir(&janitor.dir)?.flatten() {
            janitor.queue(e.path());
        }
        Ok(janitor)
    }

    /// Moves `dir` (on the same file system) into the trash under `name`;
    /// its files are deleted later. Returns once `dir` is gone by name.
    pub fn discard(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        let trash = self.dir.join(name);
        match std::fs::rename(dir, &trash) {
            Ok(()) => {
                self.queue(trash);
                Ok(())
            }
            // `dir` is on another file system (a mount under the state
            // directory): delete it here.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => std::fs::remove_dir_all(dir),
            Err(e) => Err(e),
        }
    }

    /// Directories in the trash not yet deleted.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    fn queue(&self, path: PathBuf) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            delete(&path);
            return;
        }
        if let Err(mpsc::SendError(path)) = self.queue.send(path) {
            // The thread is gone (it does not panic, but stay correct).
            self.pending.fetch_sub(1, Ordering::Relaxed);
            delete(&path);
        }
    }
}

fn delete(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("deleting {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_directories_vanish_by_name_at_once_and_from_disk_later() {
        let root = tempfile::tempdir().unwrap();
        let left = root.path().join("trash").join("old");
        std::fs::create_dir_all(left.join("sub")).unwrap();
        let janitor = Janitor::start(root.path().join("trash")).unwrap();
        let mut dirs = Vec::new();
        for i in 0..(MAX_PENDING * 2) {
            let d = root.path().join(format!("c{i}"));
            std::fs::create_dir_all(d.join("upper/etc")).unwrap();
            std::fs::write(d.join("upper/etc/hosts"), b"x").unwrap();
            janitor.discard(&d, &format!("c{i}")).unwrap();
            assert!(!d.exists(), "{} still there by name", d.display());
            dirs.push(d);
        }
        assert!(janitor.pending() <= MAX_PENDING);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // The thread counts a directory done just after deleting it: wait
        // for both.
        while std::fs::read_dir(root.path().join("trash"))
            .unwrap()
            .count()
            > 0
            || janitor.pending() > 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the trash was never emptied"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
