//! Writing the monitor's small state files.

use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` atomically but not durably: a reader sees the old
/// content or the new, never a torn file, also after a crash of the process
/// (write a temporary file, rename it over). No fsync: these files describe
/// processes, which a power loss ends anyway.
pub fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        replace(&p, b"one").unwrap();
        replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
