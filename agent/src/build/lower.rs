//! Looking into the image a step starts from without mounting it: its
//! unpacked layers (overlay form, base first) read from the top down.
//!
//! An approximation of the overlay, good for what the build asks (does the
//! image have this path, what is it, what is in /etc/passwd): the topmost
//! layer holding a path decides and a whiteout there means it is gone. An
//! opaque directory hiding lower content is not followed; the build only
//! asks about a few paths, and getting one of those wrong makes it create a
//! directory that already exists, not lose data.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

/// What the image made of `layers` has at `rel` (relative, clean): the
/// entry's metadata, without following a link; None when absent or deleted.
pub fn stat(layers: &[PathBuf], rel: &str) -> Option<(PathBuf, Metadata)> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return layers
            .last()
            .and_then(|l| std::fs::symlink_metadata(l).ok().map(|m| (l.clone(), m)));
    }
    for dir in layers.iter().rev() {
        let path = dir.join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None;
            }
            return Some((path, m));
        }
    }
    None
}

/// Whether the image has `rel`.
pub fn has(layers: &[PathBuf], rel: &str) -> bool {
    stat(layers, rel).is_some()
}

/// The text of the image's regular file `rel` (at most `max` bytes; empty
/// when absent, not a regular file, or unreadable): for /etc/passwd and
/// /etc/group. Never follows a link (the layers are the image author's).
pub fn read_small(layers: &[PathBuf], rel: &str, max: u64) -> String {
    let Some((path, m)) = stat(layers, rel) else {
        return String::new();
    };
    if !m.is_file() {
        return String::new();
    }
    let mut text = String::new();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    if let Ok(f) = opened {
        let _ = f.take(max).read_to_string(&mut text);
    }
    text
}
