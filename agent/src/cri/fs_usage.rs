//! ImageFsInfo's numbers: the disk space and inodes the image store uses.
//!
//! Measured by walking the store (as `du` does: allocated blocks, each
//! inode once however many hard links it has, symlinks not followed), so
//! the numbers are the store's own, not its file system's, which may hold
//! other things too.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What the image store takes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub used_bytes: u64,
    /// Inodes (files, directories, links), the root included.
    pub inodes_used: u64,
}

/// Walks `root`. Entries that vanish during the walk (a removal, a pull
/// finishing) are skipped: the numbers are a snapshot of a moving store.
///
/// # Errors
/// `root` itself cannot be read.
pub fn measure(root: &Path) -> io::Result<Usage> {
    let meta = std::fs::symlink_metadata(root)?;
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    add(&mut usage, &mut seen, &meta);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(m) = entry.path().symlink_metadata() else {
                continue;
            };
            if add(&mut usage, &mut seen, &m) && m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

/// Counts an inode once; returns whether it was new.
fn add(usage: &mut Usage, seen: &mut HashSet<(u64, u64)>, m: &std::fs::Metadata) -> bool {
    if !seen.insert((m.dev(), m.ino())) {
        return false;
    }
    usage.used_bytes = usage
        .used_bytes
        .saturating_add(m.blocks().saturating_mul(512));
    usage.inodes_used += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(root.join("sub/a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink("/", root.join("l")).unwrap();
        let u = measure(root).unwrap();
        // root, sub, a (= b), l
        assert_eq!(u.inodes_used, 4);
        assert!(u.used_bytes >= 64 * 1024, "{u:?}");
        assert!(
            u.used_bytes < 1 << 20,
            "the symlink to / must not be followed: {u:?}"
        );
        assert!(measure(&root.join("missing")).is_err());
    }
}
