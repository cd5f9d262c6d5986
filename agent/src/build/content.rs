//! The content digest of a COPY's sources, for its build-cache key: names,
//! modes, link targets and bytes, never times or owners.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sys::stat::{major, minor};
use sha2::{Digest, Sha256};

use super::layer::{fail, At, ExactReader, LayerCause, Result};
use super::walk::{open_parent, Kind, Node, Sink, Walker};

/// `sha256:<hex>` over the names, modes, symlink targets and file bytes
/// of `paths` and their trees (not mtimes, owners or xattrs): the build
/// cache key of a COPY's sources.
pub fn content_digest(paths: &[PathBuf]) -> Result<String> {
    let mut walker = Walker::new(DigestSink(Sha256::new()));
    for (i, path) in paths.iter().enumerate() {
        walker.sink.0.update(b"root");
        walker.sink.0.update((i as u64).to_le_bytes());
        let (parent, name) = open_parent(path)?;
        let mut rel = name.to_bytes().to_vec();
        walker.child(parent.as_fd(), &name, &mut rel, 0)?;
    }
    Ok(format!("sha256:{}", hex::encode(walker.sink.0.finalize())))
}

/// Hashes what a COPY's cache key depends on, each field length-framed.
struct DigestSink(Sha256);

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
