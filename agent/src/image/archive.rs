//! Random access to the members of the uploaded (outer) archive.
//!
//! The outer tar is indexed once (headers only) and members are then read in
//! place with positional reads, so nothing but the blobs we need is ever read
//! and nothing is extracted to disk. A gzip-compressed outer archive
//! (`docker save | gzip`) is first decompressed into the import's staging
//! directory because a compressed stream cannot be read at random offsets.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path};

use super::digest::{sha256_hex, HashingReader};
use super::error::IoContext;
use super::ImageError;

/// Upper bound for JSON documents (index, manifests, configs), so a hostile
/// archive cannot make us buffer a huge "manifest" in memory.
pub(crate) const MAX_JSON_BYTES: u64 = 16 << 20;
/// Bound on symlink/hardlink hops when resolving a member name.
const MAX_LINK_HOPS: usize = 16;

/// Where a member's data lives, or what it links to.
#[derive(Debug, Clone)]
enum Member {
    /// A regular file: data offset and length in the archive file.
    File { offset: u64, size: u64 },
    /// A symlink, target already resolved to an archive-relative name.
    Link(String),
}

/// An indexed outer archive.
pub(crate) struct OuterArchive {
    file: File,
    members: HashMap<String, Member>,
}

/// The longest file name (one path component) Linux file systems take.
const NAME_MAX: usize = 255;

/// Normalises a tar entry path: drops `.` components (a leading `./` is
/// common), refuses absolute paths, `..` anywhere and names longer than
/// [`NAME_MAX`].
///
/// Returns the '/'-joined relative path (empty for the root itself).
pub(crate) fn clean_relative(path: &Path) -> Result<Vec<&std::ffi::OsStr>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            // The kernel refuses longer names (ENAMETOOLONG): the archive's fault.
            Component::Normal(n) if n.len() > NAME_MAX => {
                return Err(format!("has a name component longer than {NAME_MAX} bytes"))
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains a '..' component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    Ok(out)
}

/// [`clean_relative`] for names that must be UTF-8 (members we look up by name).
pub(crate) fn clean_name(name: &str) -> Result<String, String> {
    let parts = clean_relative(Path::new(name))?;
    let parts: Vec<&str> = parts.iter().filter_map(|p| p.to_str()).collect();
    Ok(parts.join("/"))
}

impl OuterArchive {
    /// Indexes the archive at `path`; `scratch` is a private directory where a
    /// gzip-compressed archive may be decompressed.
    pub(crate) fn open(path: &Path, scratch: &Path) -> Result<Self, ImageError> {
        let mut file = File::open(path).ctx(|| format!("opening archive {}", path.display()))?;
        let mut magic = [0u8; 2];
        let n = file
            .read_at(&mut magic, 0)
            .ctx(|| format!("reading archive {}", path.display()))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let plain = scratch.join("archive.tar");
            let mut out = File::create(&plain).ctx(|| format!("creating {}", plain.display()))?;
            let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
            let limit = space_budget(scratch)?;
            copy_classified(
                &mut gz,
                &mut out,
                "decompressing the archive",
                &plain,
                limit,
            )?;
            drop(out);
            file = File::open(&plain).ctx(|| format!("opening {}", plain.display()))?;
        }
        let members = Self::index(&file)?;
        Ok(Self { file, members })
    }

    /// Reads every header once and records where regular files and links are.
    fn index(file: &File) -> Result<HashMap<String, Member>, ImageError> {
        let bad = |e: io::Error| ImageError::archive_caused("not a readable tar archive", e);
        let mut members = HashMap::new();
        let mut links = Vec::new();
        let mut ar = tar::Archive::new(file);
        for entry in ar.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let raw_path = entry.path().map_err(bad)?.into_owned();
            let name = match clean_name_path(&raw_path) {
                Ok(Some(n)) => n,
                // Non-UTF-8 names can never be asked for; ignore them.
                Ok(None) => continue,
                Err(why) => {
                    return Err(ImageError::archive(format!(
                        "archive member {:?} {why}",
                        raw_path.display()
                    )))
                }
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                members.insert(
                    name,
                    Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = match entry.link_name().map_err(bad)? {
                    Some(t) => t.into_owned(),
                    None => continue,
                };
                // Resolved after the pass: the target may come later in the tar.
                links.push((name, target, kind.is_symlink()));
            } else {
                // A later directory or device with the same name shadows a file.
                members.remove(&name);
            }
        }
        for (name, target, is_symlink) in links {
            let base = if is_symlink {
                // Relative symlinks resolve against the link's directory.
                name.rsplit_once('/').map_or("", |(dir, _)| dir).to_string()
            } else {
                // Hard link targets are archive-root relative.
                String::new()
            };
            let resolved = resolve_lexically(&base, &target).map_err(|why| {
                ImageError::archive(format!(
                    "archive member {name:?} links to {:?}, which {why}",
                    target.display()
                ))
            })?;
            members.insert(name, Member::Link(resolved));
        }
        Ok(members)
    }

    /// True if a member with this (cleaned) name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        clean_name(name).is_ok_and(|n| self.members.contains_key(&n))
    }

    /// True if `name` is a regular file (following links) that [`Self::reader`] opens.
    pub(crate) fn has_file(&self, name: &str) -> bool {
        self.locate(name).is_ok()
    }

    /// Returns (offset, size) of the regular file `name` refers to, following links.
    fn locate(&self, name: &str) -> Result<(u64, u64), ImageError> {
        let mut cur = clean_name(name)
            .map_err(|why| ImageError::archive(format!("archive path {name:?} {why}")))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&cur) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(t)) => cur = t.clone(),
                None => return Err(ImageError::archive(format!("archive has no file {name:?}"))),
            }
        }
        Err(ImageError::archive(format!(
            "archive member {name:?}: too many levels of links"
        )))
    }

    /// A streaming reader over member `name`, plus its size.
    pub(crate) fn reader(&self, name: &str) -> Result<(MemberReader<'_>, u64), ImageError> {
        let (offset, size) = self.locate(name)?;
        Ok((
            MemberReader {
                file: &self.file,
                pos: offset,
                end: offset + size,
            },
            size,
        ))
    }

    /// Reads a small member (JSON) fully, refusing ones above [`MAX_JSON_BYTES`].
    pub(crate) fn read_small(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (mut r, size) = self.reader(name)?;
        if size > MAX_JSON_BYTES {
            return Err(ImageError::archive(format!(
                "{name} is {size} bytes; metadata larger than {MAX_JSON_BYTES} bytes is refused"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf)
            .map_err(|e| ImageError::archive_caused(format!("reading {name}"), e))?;
        Ok(buf)
    }

    /// Reads blob `digest` (from `blobs/sha256/<hex>`) and verifies its digest
    /// and, if given, the size announced by the descriptor.
    pub(crate) fn read_blob(
        &self,
        digest: &str,
        size: Option<u64>,
        what: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let hex = sha256_hex(digest, what)?;
        let name = format!("blobs/sha256/{hex}");
        let data = self.read_small(&name)?;
        verify_bytes(&data, digest, size, what)?;
        Ok(data)
    }
}

/// Checks `data` against a digest and optional size.
pub(crate) fn verify_bytes(
    data: &[u8],
    digest: &str,
    size: Option<u64>,
    what: &str,
) -> Result<(), ImageError> {
    let mut h = HashingReader::new(data);
    h.drain()
        .map_err(|e| ImageError::archive_caused(what.to_string(), e))?;
    if h.digest() != digest {
        return Err(ImageError::archive(format!(
            "{what} {digest}: digest mismatch (content hashes to {})",
            h.digest()
        )));
    }
    if let Some(size) = size {
        if size != data.len() as u64 {
            return Err(ImageError::archive(format!(
                "{what} {digest}: size mismatch (descriptor says {size}, blob has {})",
                data.len()
            )));
        }
    }
    Ok(())
}

/// Cleans an entry path of the outer archive; `Ok(None)` if it is not UTF-8.
fn clean_name_path(p: &Path) -> Result<Option<String>, String> {
    let parts = clean_relative(p)?;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part.to_str() {
            Some(s) => out.push(s),
            None => return Ok(None),
        }
    }
    Ok(Some(out.join("/")))
}

/// Resolves `target` against directory `base` without touching the disk;
/// `..` may go up within the archive but never above its root, and absolute
/// targets are refused (they would point at the host).
fn resolve_lexically(base: &str, target: &Path) -> Result<String, String> {
    let mut parts: Vec<String> = base
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(
                n.to_str()
                    .ok_or_else(|| "is not valid UTF-8".to_string())?
                    .to_string(),
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err("is outside the archive".into());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    Ok(parts.join("/"))
}

/// Copies `r` to `w`, classifying read errors as archive errors and write
/// errors as local I/O errors (the two map to different gRPC codes).
pub(crate) fn copy_classified(
    r: &mut dyn Read,
    w: &mut dyn io::Write,
    what: &str,
    dest: &Path,
    limit: u64,
) -> Result<u64, ImageError> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::archive_caused(what.to_string(), e)),
        };
        if total + n as u64 > limit {
            return Err(ImageError::NoSpace(format!(
                "{what}: {} needs more than the {limit} bytes free",
                dest.display()
            )));
        }
        w.write_all(&buf[..n])
            .ctx(|| format!("{what}: writing {}", dest.display()))?;
        total += n as u64;
    }
}

/// The most [`space_budget`] keeps back: 5% of a 250 GiB disk (12.5 GiB)
/// is far more than the event log, logs and records need, and refused
/// every import on a large disk with 10 GiB free.
const RESERVE_CAP: u64 = 1 << 30;

/// How many bytes may be written under `dir`: what its file system has
/// free, less a reserve of 5% of its size (at most [`RESERVE_CAP`]), so that
/// an image too large for the disk (or a small layer that expands hugely:
/// sparse files, a compression bomb) fails alone instead of filling the disk
/// that the event log, container logs and records need too.
pub(crate) fn space_budget(dir: &Path) -> Result<u64, ImageError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(io::Error::from)
        .ctx(|| format!("reading the free space of {}", dir.display()))?;
    let block = st.fragment_size();
    let free = st.blocks_available().saturating_mul(block);
    Ok(free.saturating_sub(reserve(st.blocks().saturating_mul(block))))
}

/// What [`space_budget`] keeps free on a file system of `size` bytes.
fn reserve(size: u64) -> u64 {
    (size / 20).min(RESERVE_CAP)
}

/// A bounded positional reader over one member of the archive file.
pub(crate) struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // The header promised more data than the file holds.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_twentieth_up_to_a_gib() {
        assert_eq!(reserve(64 << 20), (64 << 20) / 20);
        assert_eq!(reserve(20 << 30), 1 << 30);
        assert_eq!(reserve(252 << 30), 1 << 30);
    }

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_name("./a/b").unwrap(), "a/b");
        assert_eq!(clean_name("a//./b/").unwrap(), "a/b");
        assert!(clean_name("../a").is_err());
        assert!(clean_name("a/../b").is_err());
        assert!(clean_name("/etc/passwd").is_err());
    }

    #[test]
    fn resolves_links() {
        assert_eq!(
            resolve_lexically("abc", Path::new("../def/layer.tar")).unwrap(),
            "def/layer.tar"
        );
        assert!(resolve_lexically("abc", Path::new("../../x")).is_err());
        assert!(resolve_lexically("", Path::new("/etc/passwd")).is_err());
    }
}
