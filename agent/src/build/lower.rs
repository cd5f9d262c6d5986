//! Looking into the image a step starts from without mounting it: its
//! unpacked layers (overlay form, base first) read from the top down.
//!
//! Nothing here follows a link on the host: each layer is looked into with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and the image's own
//! links are followed by [`resolve`] with the image as `/`, as the
//! container would see them. The overlay is approximated well enough for
//! what the build asks (does the image have this path, what is it, what is
//! in /etc/passwd): the topmost layer holding a path decides and a whiteout
//! there means it is gone; an opaque directory hiding lower content is not
//! followed (getting that wrong makes the build create a directory that
//! already exists, not lose data).

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;

use super::error::{BuildError, Result};
use crate::sys::resolve::open_exact;

/// Most links followed resolving one path (Linux's own limit).
const MAX_HOPS: usize = 40;

/// The entry `rel` (relative, no link in it) of the image made of
/// `layers`, opened `O_PATH` without following it, with its metadata; None
/// when absent or deleted.
fn find(layers: &[PathBuf], rel: &str) -> Option<(OwnedFd, PathBuf, Metadata)> {
    let rel = rel.trim_start_matches('/');
    for dir in layers.iter().rev() {
        let Ok(root) = File::open(dir) else { continue };
        let fd = if rel.is_empty() {
            OwnedFd::from(root)
        } else {
            match open_exact(
                root.as_fd(),
                Path::new(rel),
                OFlag::O_PATH | OFlag::O_NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // Absent here, or under a link in this layer (which a
                // higher layer's directory shadows, or `resolve` followed).
                Err(_) => continue,
            }
        };
        let meta = File::from(fd.try_clone().ok()?).metadata().ok()?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            return None;
        }
        return Some((fd, dir.clone(), meta));
    }
    None
}

/// What the image has at `rel` (relative or absolute, no link followed):
/// its metadata; None when absent or deleted.
pub fn stat(layers: &[PathBuf], rel: &str) -> Option<Metadata> {
    find(layers, rel).map(|(_, _, m)| m)
}

/// Whether the image has `rel` (no link followed).
pub fn has(layers: &[PathBuf], rel: &str) -> bool {
    find(layers, rel).is_some()
}

/// `path` (absolute in the image) with every link in the part of it the
/// image has followed, with the image as `/` (`..` stops there); the part
/// it does not have is appended as written. So `COPY x /bin/` into an
/// image whose `/bin` links to `usr/bin` writes `/usr/bin/x`, as Docker.
pub fn resolve(layers: &[PathBuf], path: &str) -> Result<String> {
    let mut todo: VecDeque<String> = parts(path).into();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            continue;
        }
        let candidate = format!("{}/{part}", done.join("/"));
        match find(layers, &candidate) {
            None => {
                done.push(part);
                // Nothing below a missing entry exists: the rest is as written.
                for rest in todo.drain(..) {
                    if rest == ".." {
                        done.pop();
                    } else {
                        done.push(rest);
                    }
                }
            }
            Some((fd, _, meta)) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(BuildError::invalid(format!(
                        "{:?} goes through more than {MAX_HOPS} links in the image",
                        crate::error::capped(path)
                    )));
                }
                let target = nix::fcntl::readlinkat(fd.as_fd(), "")
                    .map_err(|e| BuildError::io("reading a link in the image", e.into()))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for p in parts(&target).into_iter().rev() {
                    todo.push_front(p);
                }
            }
            Some(_) => done.push(part),
        }
    }
    Ok(format!("/{}", done.join("/")))
}

/// The normal and `..` components of `path`.
fn parts(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The text of the image's regular file at `path` (its links followed in
/// the image; at most `max` bytes; empty when absent, not a regular file
/// or unreadable): for /etc/passwd and /etc/group.
pub fn read_small(layers: &[PathBuf], path: &str, max: u64) -> String {
    let Ok(real) = resolve(layers, path) else {
        return String::new();
    };
    let Some((_, dir, meta)) = find(layers, &real) else {
        return String::new();
    };
    if !meta.is_file() {
        return String::new();
    }
    let mut text = String::new();
    let opened = File::open(&dir).and_then(|root| {
        open_exact(
            root.as_fd(),
            Path::new(real.trim_start_matches('/')),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        )
    });
    if let Ok(fd) = opened {
        let _ = File::from(fd).take(max).read_to_string(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_image_never_on_the_host() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let top = t.path().join("top");
        std::fs::create_dir_all(base.join("usr/bin")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("usr/bin/sh"), "sh").unwrap();
        symlink("usr/bin", base.join("bin")).unwrap();
        std::fs::create_dir_all(top.join("var")).unwrap();
        symlink("/run", top.join("var/run")).unwrap();
        // A hostile link to the host's /etc: followed inside the image.
        symlink("/etc", top.join("hostetc")).unwrap();
        std::fs::write(base.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        let layers = vec![base, top];
        assert_eq!(resolve(&layers, "/bin/x").unwrap(), "/usr/bin/x");
        assert_eq!(resolve(&layers, "/var/run/app").unwrap(), "/run/app");
        assert_eq!(resolve(&layers, "/hostetc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(resolve(&layers, "/../../x").unwrap(), "/x");
        assert!(stat(&layers, "bin").unwrap().file_type().is_symlink());
        assert!(!has(&layers, "bin/sh"), "no link is followed by has");
        assert!(has(&layers, "usr/bin/sh"));
        // The host's /etc/passwd is never read through the image's link.
        assert_eq!(
            read_small(&layers, "/hostetc/passwd", 1024),
            "root:x:0:0::/:/bin/sh\n"
        );
        assert_eq!(read_small(&layers, "/var/run/x", 1024), "");
    }

    #[test]
    fn link_loops_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("l");
        std::fs::create_dir_all(&l).unwrap();
        symlink("b", l.join("a")).unwrap();
        symlink("a", l.join("b")).unwrap();
        assert!(resolve(&[l], "/a/x").is_err());
    }
}
