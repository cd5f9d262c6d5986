//! The content digest of a COPY's sources, for its build-cache key: names,
//! modes, link targets and bytes, never times or owners.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sys::stat::{major, minor};
use sha2::{Digest, Sha256};

use super::layer::MAX_XATTR;
use super::layer::{fail, At, ExactReader, LayerCause, Result};
use super::walk::{keep_xattr, open_parent, Kind, Node, Sink, Walker};

/// `sha256:<hex>` over the names, modes, symlink targets, file bytes, the
/// xattrs a layer keeps and which files are hard links of which, of `paths`
/// and their trees (not mtimes or owners): the build cache key of a COPY's
/// sources. Everything the COPY's layer holds that the context decides is
/// in it, so a change to any of it is a cache miss.
pub fn content_digest(paths: &[PathBuf]) -> Result<String> {
    let mut walker = Walker::new(DigestSink(Sha256::new(), HashMap::new()));
    for (i, path) in paths.iter().enumerate() {
        walker.sink.0.update(b"root");
        walker.sink.0.update((i as u64).to_le_bytes());
        let (parent, name) = open_parent(path)?;
        let mut rel = name.to_bytes().to_vec();
        walker.child(parent.as_fd(), &name, &mut rel, 0)?;
    }
    Ok(format!("sha256:{}", hex::encode(walker.sink.0.finalize())))
}

/// Hashes what a COPY's cache key depends on, each field length-framed;
/// remembers files seen by (dev, inode), to hash hard links as links.
struct DigestSink(Sha256, HashMap<(u64, u64), u64>);

impl DigestSink {
    fn framed(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

impl Sink for DigestSink {
    fn entry(&mut self, node: &Node) -> Result<bool> {
        self.0.update([node.kind as u8]);
        self.framed(node.rel);
        self.0.update((node.st.st_mode & 0o7777).to_le_bytes());
        if let Some(fd) = node.fd {
            let xattrs = crate::sys::xattr::read_all(fd.as_fd(), MAX_XATTR).at(node.rel)?;
            for (k, v) in xattrs.iter().filter(|(k, _)| keep_xattr(k)) {
                self.framed(k);
                self.framed(v);
            }
        }
        if node.kind == Kind::File && node.st.st_nlink > 1 {
            let id = (node.st.st_dev, node.st.st_ino);
            let next = self.1.len() as u64;
            let first = *self.1.entry(id).or_insert(next);
            self.0.update(b"link");
            self.0.update(first.to_le_bytes());
        }
        match (node.kind, node.fd, node.target) {
            (Kind::File, Some(fd), _) => {
                let Ok(size) = u64::try_from(node.st.st_size) else {
                    return fail(node.rel, LayerCause::Changed);
                };
                self.0.update(size.to_le_bytes());
                let mut data = ExactReader {
                    fd: fd.as_fd(),
                    left: size,
                };
                io::copy(&mut data, &mut self.0).at(node.rel)?;
            }
            (Kind::Symlink, _, Some(target)) => self.framed(target.as_bytes()),
            (Kind::Char | Kind::Block, _, _) => {
                self.0.update(major(node.st.st_rdev).to_le_bytes());
                self.0.update(minor(node.st.st_rdev).to_le_bytes());
            }
            _ => {}
        }
        Ok(node.kind == Kind::Dir)
    }
}
