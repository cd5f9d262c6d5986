//! The build context: the uploaded tar unpacked into a private directory,
//! and COPY's sources found in it without ever leaving it.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;

use super::error::{BuildError, Result};
use crate::error::capped;

/// The most bytes a context may unpack to.
pub const MAX_CONTEXT_BYTES: u64 = 4 << 30;
/// The most files one COPY source pattern may match.
const MAX_MATCHES: usize = 100_000;

/// An unpacked build context.
pub struct Context {
    /// Its root directory (private to the build).
    pub root: PathBuf,
}

impl Context {
    /// The context (or view) rooted at `root`, by its canonical path: paths
    /// resolved in it are compared with it, and the kernel names them
    /// canonically (a state directory reached through a link).
    pub fn at(root: &Path) -> Result<Context> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| BuildError::io(format!("resolving {}", root.display()), e))?;
        Ok(Context { root })
    }

    /// Unpacks the context tar at `archive` (uncompressed or gzip) into
    /// `root`, refusing entries that leave it (the image layer extractor's
    /// rules: no absolute paths, no `..`, nothing written through a link).
    pub fn unpack(archive: &Path, root: &Path) -> Result<Context> {
        crate::state_dir::create_private_dir(root)
            .map_err(|e| BuildError::io("creating the context directory", e))?;
        let mut file =
            File::open(archive).map_err(|e| BuildError::io("opening the uploaded context", e))?;
        let mut head = [0u8; 2];
        let n = file
            .read(&mut head)
            .map_err(|e| BuildError::io("reading the uploaded context", e))?;
        let file =
            File::open(archive).map_err(|e| BuildError::io("opening the uploaded context", e))?;
        let reader: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
            Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut limited = reader.take(MAX_CONTEXT_BYTES + 1);
        let size = crate::image::extract::unpack_plain(&mut limited, root, "the build context")
            .map_err(|e| match e.kind() {
                crate::image::ErrorKind::InvalidArchive => {
                    BuildError::invalid(format!("the build context: {e}"))
                }
                _ => BuildError::Image(e),
            })?;
        if size > MAX_CONTEXT_BYTES {
            return Err(BuildError::invalid(format!(
                "the build context is larger than {} GiB unpacked",
                MAX_CONTEXT_BYTES >> 30
            )));
        }
        Context::at(root)
    }

    /// Reads the Dockerfile at `rel` (at most `max` bytes).
    pub fn read_dockerfile(&self, rel: &str, max: u64) -> Result<String> {
        let path = self.find(rel)?;
        let missing = || {
            BuildError::invalid(format!(
                "the context has no Dockerfile at {:?} (a regular file, not a link)",
                capped(rel)
            ))
        };
        // Never through a link (a Dockerfile linked to a host file would
        // show its lines in syntax errors), and only a regular file: the
        // unpacker makes no fifo or device, and this open would not wait
        // on one anyway.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|_| missing())?;
        if !file.metadata().map_err(|_| missing())?.is_file() {
            return Err(missing());
        }
        let mut text = String::new();
        file.take(max + 1)
            .read_to_string(&mut text)
            .map_err(|e| BuildError::invalid(format!("reading the Dockerfile: {e}")))?;
        if text.len() as u64 > max {
            return Err(BuildError::invalid(format!(
                "the Dockerfile is larger than {} KiB",
                max >> 10
            )));
        }
        Ok(text)
    }

    /// The real path, inside the context, of the context-relative `rel`:
    /// its parent resolved with the context as `/` (symlinks and `..` stay
    /// inside), its last component taken as it is (a symlink stays a link).
    pub fn find(&self, rel: &str) -> Result<PathBuf> {
        let clean = clean(rel)?;
        let Some(name) = clean.file_name() else {
            return Ok(self.root.clone());
        };
        let parent = clean.parent().unwrap_or(Path::new(""));
        Ok(self.resolve_dir(parent, rel)?.join(name))
    }

    /// The real path, inside the context, of the context-relative `rel`,
    /// resolved with the context as `/` (a link at its end followed there).
    pub fn source_path(&self, rel: &str) -> Result<PathBuf> {
        self.resolve(&clean(rel)?, rel)
    }

    /// The real path of the context directory `dir` (relative, clean),
    /// resolved with the context as `/`.
    fn resolve_dir(&self, dir: &Path, rel: &str) -> Result<PathBuf> {
        self.resolve_as(dir, rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
    }

    /// The real path of `path` (relative, clean), resolved with the context
    /// as `/`, a link at its end followed there too.
    fn resolve(&self, path: &Path, rel: &str) -> Result<PathBuf> {
        self.resolve_as(path, rel, OFlag::O_PATH)
    }

    fn resolve_as(&self, path: &Path, rel: &str, flags: OFlag) -> Result<PathBuf> {
        if path.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        let root = File::open(&self.root).map_err(|e| BuildError::io("opening the context", e))?;
        let fd = crate::sys::resolve::open_in_root(root.as_fd(), path, flags)
            .map_err(|e| not_in_context(rel, e))?;
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let real =
            std::fs::read_link(link).map_err(|e| BuildError::io("resolving a COPY source", e))?;
        if !real.starts_with(&self.root) {
            // RESOLVE_IN_ROOT makes this impossible; refuse rather than trust.
            return Err(BuildError::invalid(format!(
                "COPY source {:?} is outside the build context",
                capped(rel)
            )));
        }
        Ok(real)
    }

    /// The paths a COPY source names: one path, or every entry its last
    /// component's glob (`*`, `?`, `[..]`) matches, sorted. None matching is
    /// an error, as in Docker.
    pub fn sources(&self, rel: &str) -> Result<Vec<PathBuf>> {
        Ok(self
            .named_sources(rel)?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// [`Context::sources`], each with the name it has where it was named
    /// (a link's own name, not its target's): what a COPY into a directory
    /// names the copy, as Docker.
    pub fn named_sources(&self, rel: &str) -> Result<Vec<(String, PathBuf)>> {
        let clean = clean(rel)?;
        let name = clean
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent_text = clean.parent().unwrap_or(Path::new("")).to_string_lossy();
        if parent_text.contains(['*', '?', '[']) {
            return Err(BuildError::Unsupported(format!(
                "a COPY source with a wildcard before its last component ({:?})",
                capped(rel)
            )));
        }
        if !name.contains(['*', '?', '[']) {
            // A source naming a link is what the link names, inside the
            // context (as Docker); links inside a copied tree stay links.
            return Ok(vec![(name, self.resolve(&clean, rel)?)]);
        }
        let pattern = glob::Pattern::new(&name)
            .map_err(|e| BuildError::invalid(format!("COPY source {:?}: {e}", capped(rel))))?;
        let dir = self.resolve_dir(clean.parent().unwrap_or(Path::new("")), rel)?;
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| not_in_context(rel, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io("listing the context", e))?;
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            if pattern.matches(&entry_name) {
                let Ok(inside) = entry.path().strip_prefix(&self.root).map(Path::to_path_buf)
                else {
                    return Err(BuildError::invalid(format!(
                        "COPY source {:?} is outside the build context",
                        capped(rel)
                    )));
                };
                out.push((entry_name, self.resolve(&inside, rel)?));
                if out.len() > MAX_MATCHES {
                    return Err(BuildError::invalid(format!(
                        "COPY source {:?} matches more than {MAX_MATCHES} files",
                        capped(rel)
                    )));
                }
            }
        }
        if out.is_empty() {
            return Err(BuildError::invalid(format!(
                "COPY source {:?} matches no file in the build context",
                capped(rel)
            )));
        }
        out.sort();
        Ok(out)
    }
}

/// `rel` as a clean relative path: leading `/` and `./` dropped (context
/// paths are relative to its root whatever they look like), `..` refused.
fn clean(rel: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(BuildError::invalid(format!(
                    "COPY source {:?} leaves the build context ('..')",
                    capped(rel)
                )))
            }
            Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

fn not_in_context(rel: &str, e: io::Error) -> BuildError {
    BuildError::invalid(format!(
        "COPY source {:?} is not in the build context ({e})",
        capped(rel)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_the_context_through_links_and_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::fs::write(root.join("sub/c.md"), "c").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let ctx = Context::at(&root).unwrap();
        // A link to /etc resolves to the context's own (missing) /etc.
        assert!(ctx.sources("etc/passwd").is_err());
        assert!(ctx.sources("../x").is_err());
        assert_eq!(
            ctx.sources("sub/*.txt").unwrap(),
            vec![root.join("sub/a.txt"), root.join("sub/b.txt")]
        );
        assert_eq!(
            ctx.sources("/sub/c.md").unwrap(),
            vec![root.join("sub/c.md")]
        );
        // A named link is followed, inside the context: /etc is its own.
        assert!(ctx.sources("etc").is_err());
        std::os::unix::fs::symlink("sub/a.txt", root.join("alias")).unwrap();
        assert_eq!(ctx.sources("alias").unwrap(), vec![root.join("sub/a.txt")]);
        assert!(matches!(
            ctx.sources("*/a.txt"),
            Err(BuildError::Unsupported(_))
        ));
        assert!(ctx.sources("sub/*.rs").is_err());
    }

    #[test]
    fn a_context_holding_a_fifo_a_device_or_a_whiteout_is_refused() {
        for (name, kind) in [
            ("Dockerfile", tar::EntryType::Fifo),
            ("dev", tar::EntryType::Char),
            (".wh.x", tar::EntryType::Regular),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_data(&mut h, name, std::io::empty()).unwrap();
            let archive = dir.path().join("ctx.tar");
            std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
            let got = Context::unpack(&archive, &dir.path().join("ctx"));
            assert!(
                matches!(&got, Err(BuildError::Invalid(m)) if m.contains("cannot hold")),
                "{name}: {:?}",
                got.err()
            );
        }
    }
}
