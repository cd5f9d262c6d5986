//! Small filesystem helpers.

use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` atomically and durably: a reader sees the old
/// content or the new, never a torn file, even across a power loss (write,
/// fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_rename(path, data, true)
}

/// Writes `data` to `path` atomically but not durably (no fsync): a crash
/// of the process never leaves a torn file, a power loss may lose the
/// update. For files that describe processes, which a power loss ends anyway.
pub fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_rename(path, data, false)
}

fn write_via_rename(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
