//! Image layers for `berthctl build` (berth issue 25): the tar of a RUN
//! step's overlayfs upper directory ([`diff_upper`]), the tar of a COPY
//! ([`copy_layer`]), and the content hash of a COPY's sources for the
//! build cache ([`content_digest`]).
//!
//! Layers are stored uncompressed, so a layer's diff_id is its blob digest.
//! Every tar is reproducible from the same tree and clamp:
//!
//! - entries come in path order, component by component (the names of a
//!   directory in byte order, each directory right before its contents);
//!   a whiteout `.wh.<name>` sits where `<name>` would, and a directory's
//!   `.wh..wh..opq` right after the directory;
//! - mtime is `min(mtime, clamp)`; no atime/ctime is written at all;
//! - owners are numeric (no user or group names); the mode keeps
//!   setuid/setgid/sticky;
//! - long names and link targets use GNU long-name entries;
//! - files linked more than once become tar hard links to the first path;
//! - only xattrs an unpacker applies are kept (`security.capability`,
//!   `user.*` but `user.overlay.*`, POSIX ACLs), as PAX `SCHILY.xattr.`
//!   records; `trusted.*` (overlayfs metadata) never leaves the host;
//! - sockets are left out: tar cannot hold them (Docker does the same).
//!
//! Nothing is ever reached through a symlink: the walk goes from directory
//! descriptor to directory descriptor with `O_NOFOLLOW`, and every opened
//! entry is checked against the `lstat` it was chosen by, so an entry
//! that changes during the walk fails the layer rather than leading out.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor, FileStat};
use sha2::{Digest, Sha256};
use tar::{Builder, EntryType, Header};

use super::walk::{
    is_opaque, is_placeholder, keep_xattr, open_dir_path, open_parent, overlay_name, split_last,
    Kind, Marks, Node, Sink, Walker,
};

/// Most entries one layer (or one digest) may walk.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Longest path, in bytes, inside a layer.
pub const MAX_PATH: usize = 4096;
/// Deepest directory nesting: one descriptor stays open per level.
pub(super) const MAX_DEPTH: usize = 512;
/// The kernel's limit for an xattr value and for the list of names.
pub(super) const MAX_XATTR: usize = 65536;

/// A layer tar written to the file the caller named, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Where the tar was written.
    pub path: PathBuf,
    /// `sha256:<hex>` of the tar's bytes (also its diff_id: uncompressed).
    pub digest: String,
    /// Size of the tar in bytes.
    pub size: u64,
    /// True when the tar holds no entry (the layer changes nothing).
    pub empty: bool,
}

/// One source of a COPY layer and where it goes in the image.
#[derive(Debug, Clone)]
pub struct CopyItem {
    /// A file, directory or symlink in the unpacked build context; a
    /// directory is copied as itself with its whole tree.
    pub src: PathBuf,
    /// Absolute, normalised path in the image (no `.`, `..` or `//`).
    pub dest: String,
    /// An archive ADD unpacked: the tree keeps its own modes, and its own
    /// owners unless [`CopyOpts::chowned`].
    pub unpacked: bool,
}

/// Ownership, mode and time of everything a COPY layer writes.
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    /// Owner of every entry (`--chown`, else 0).
    pub uid: u32,
    /// Group of every entry (`--chown`, else 0).
    pub gid: u32,
    /// Permission bits of every file and directory (`--chmod`); symlinks keep theirs.
    pub chmod: Option<u32>,
    /// Latest mtime written (SOURCE_DATE_EPOCH-like), in seconds.
    pub clamp_secs: u64,
    /// `--chown` was given (unpacked archives keep their owners otherwise).
    pub chowned: bool,
    /// Directories written first, as `(path, mode, uid, gid)`: the parents
    /// of the destinations (and directories copied into); an item's
    /// directory listed here keeps this header, its contents are copied.
    pub parents: Vec<(String, u32, u32, u32)>,
}

/// Why a layer failed.
#[derive(Debug)]
pub enum LayerCause {
    /// A system call or the tar writer failed.
    Io(io::Error),
    /// The entry changed type or identity while it was being walked.
    Changed,
    /// A bound was passed: entries, path length or directory depth.
    Limit(&'static str),
    /// Something a layer cannot hold, or an invalid argument.
    Invalid(&'static str),
    /// A feature this module does not handle yet.
    Unsupported(&'static str),
}

/// A layer could not be written: the path (capped) and why.
#[derive(Debug)]
pub struct LayerError {
    path: String,
    cause: LayerCause,
}

impl LayerError {
    fn new(path: &[u8], cause: LayerCause) -> Self {
        const CAP: usize = 100;
        let mut path_shown = String::from_utf8_lossy(&path[..path.len().min(CAP)]).into_owned();
        if path.len() > CAP {
            path_shown.push_str("...");
        }
        LayerError {
            path: path_shown,
            cause,
        }
    }

    /// The path concerned, cut to about 100 bytes.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why the layer failed.
    pub fn cause(&self) -> &LayerCause {
        &self.cause
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.path)?;
        match &self.cause {
            LayerCause::Io(e) => write!(f, "{e}"),
            LayerCause::Changed => f.write_str("changed while the layer was being written"),
            LayerCause::Limit(what) => write!(f, "over the limit on {what}"),
            LayerCause::Invalid(why) => f.write_str(why),
            LayerCause::Unsupported(what) => write!(f, "not supported yet: {what}"),
        }
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            LayerCause::Io(e) => Some(e),
            _ => None,
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, LayerError>;

pub(super) fn fail<T>(path: &[u8], cause: LayerCause) -> Result<T> {
    Err(LayerError::new(path, cause))
}

/// Names the path an I/O failure was about.
pub(super) trait At<T> {
    fn at(self, path: &[u8]) -> Result<T>;
}

impl<T, E: Into<io::Error>> At<T> for std::result::Result<T, E> {
    fn at(self, path: &[u8]) -> Result<T> {
        self.map_err(|e| LayerError::new(path, LayerCause::Io(e.into())))
    }
}

/// The OCI layer for the overlayfs upper directory `upper` of a finished
/// RUN step (mounted without redirect_dir, metacopy or index), written to `dest`.
///
/// Whiteouts (a 0/0 character device, or an empty file with an
/// `overlay.whiteout` xattr) become `.wh.<name>`; an opaque directory
/// (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`) is followed
/// by `<dir>/.wh..wh..opq`. A redirect or metacopy xattr is refused.
/// Changes to the upper directory's own metadata are not recorded.
///
/// Placeholders the runtime made as mount points are left out:
/// - an empty regular file or empty directory named in `skip` that
///   `lower_has` says the image does not have;
/// - a regular file named in `written`, whatever its content and whether
///   or not the image has it: the runtime writes those (`etc/hostname`,
///   `etc/hosts`) for each container, so they describe the step's
///   container, not the image (as Docker, which binds them in);
/// - a directory leading to names in `skip` (`etc` for `etc/hosts`),
///   not opaque, whose entries are all placeholders: overlayfs copied it
///   up (or the runtime made it) only to hold them. A change to such a
///   directory's own mode or owner alone is therefore not recorded.
///
/// Whatever the RUN wrote there (content, other entries, deletions) is kept.
pub fn diff_upper(
    upper: &Path,
    skip: &[&str],
    written: &[&str],
    lower_has: &dyn Fn(&str) -> bool,
    clamp_secs: u64,
    dest: &Path,
) -> Result<LayerBlob> {
    let root = open_dir_path(upper)?;
    let from = Source::Upper {
        skip,
        written,
        lower_has,
    };
    let mut walker = Walker::new(TarSink::create(dest, from, clamp_secs)?);
    walker.children(&root, &mut Vec::new(), 0)?;
    walker.sink.finish()
}

/// Writes to `dest` a layer holding every item (a directory with its whole
/// tree), owned and moded per `opts`, after `opts.parents`. Symlinks are
/// copied as links. Items go in order of `dest`; a directory written twice
/// (by two items, or as a parent) keeps its first header.
pub fn copy_layer(items: &[CopyItem], opts: &CopyOpts, dest: &Path) -> Result<LayerBlob> {
    let mut sink = TarSink::create(dest, Source::Context(opts), opts.clamp_secs)?;
    let mut parents: Vec<_> = opts.parents.iter().collect();
    parents.sort_by(|a, b| a.0.cmp(&b.0));
    // The directories this layer makes have no time of their own: now, or
    // the clamp when it is earlier. Never the clamp's "none" (u64::MAX),
    // which tar readers other than berth's refuse.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir_time = now.min(sink.clamp);
    for (path, mode, uid, gid) in parents {
        let rel = image_rel(path)?;
        if !rel.is_empty() && sink.dirs.insert(rel.clone()) {
            let mut h = header(EntryType::Directory, mode & 0o7777, *uid, *gid, dir_time, 0);
            sink.count(&rel)?;
            let name = [rel.as_slice(), b"/"].concat();
            let name = OsStr::from_bytes(&name);
            sink.out.append_data(&mut h, name, io::empty()).at(&rel)?;
        }
    }
    let mut ordered: Vec<&CopyItem> = items.iter().collect();
    ordered.sort_by(|a, b| a.dest.cmp(&b.dest));
    let mut walker = Walker::new(sink);
    for item in ordered {
        walker.sink.from = if item.unpacked {
            Source::Unpacked(opts.chowned.then_some((opts.uid, opts.gid)))
        } else {
            Source::Context(opts)
        };
        let mut rel = image_rel(&item.dest)?;
        let (parent, name) = open_parent(&item.src)?;
        walker.child(parent.as_fd(), &name, &mut rel, 0)?;
    }
    walker.sink.finish()
}

/// Where a tar's entries come from, which decides owners, modes and
/// what whiteouts mean.
enum Source<'a> {
    Upper {
        skip: &'a [&'a str],
        written: &'a [&'a str],
        lower_has: &'a dyn Fn(&str) -> bool,
    },
    Context(&'a CopyOpts),
    /// An archive ADD unpacked: modes as the archive has them, owners too
    /// unless `--chown` gives them (BuildKit never applies `--chmod` there).
    Unpacked(Option<(u32, u32)>),
}

/// Writes walked entries as a layer tar.
struct TarSink<'a> {
    out: Builder<HashWriter>,
    path: PathBuf,
    from: Source<'a>,
    clamp: u64,
    /// First path of each multiply linked inode, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Directories written so far (COPY items and parents may share them).
    dirs: HashSet<Vec<u8>>,
    written: u64,
}

impl<'a> TarSink<'a> {
    fn create(dest: &Path, from: Source<'a>, clamp: u64) -> Result<Self> {
        let mut opts = File::options();
        opts.write(true).create(true).truncate(true).mode(0o644);
        let file = opts.custom_flags(libc::O_NOFOLLOW).open(dest);
        let file = file.at(dest.as_os_str().as_bytes())?;
        let hash = Sha256::new();
        let out = Builder::new(HashWriter {
            out: BufWriter::new(file),
            hash,
            size: 0,
        });
        let (links, dirs, path) = (HashMap::new(), HashSet::new(), dest.to_path_buf());
        Ok(TarSink {
            out,
            path,
            from,
            clamp,
            links,
            dirs,
            written: 0,
        })
    }

    fn finish(self) -> Result<LayerBlob> {
        let dest = self.path.as_os_str().as_bytes();
        let w = self.out.into_inner().at(dest)?;
        let file = w.out.into_inner().map_err(|e| e.into_error()).at(dest)?;
        file.sync_all().at(dest)?;
        let digest = format!("sha256:{}", hex::encode(w.hash.finalize()));
        let empty = self.written == 0;
        Ok(LayerBlob {
            path: self.path,
            digest,
            size: w.size,
            empty,
        })
    }

    fn mtime(&self, st: &FileStat) -> u64 {
        u64::try_from(st.st_mtime).unwrap_or(0).min(self.clamp)
    }

    fn count(&mut self, rel: &[u8]) -> Result<()> {
        self.written += 1;
        if self.written > MAX_ENTRIES {
            return fail(rel, LayerCause::Limit("entries"));
        }
        Ok(())
    }

    /// An empty, mode-0 regular file: how a layer says "deleted" or "opaque".
    fn append_marker(&mut self, rel: &[u8], mtime: u64) -> Result<()> {
        self.count(rel)?;
        let mut h = header(EntryType::Regular, 0, 0, 0, mtime, 0);
        self.out
            .append_data(&mut h, OsStr::from_bytes(rel), io::empty())
            .at(rel)
    }

    /// Diff only: whiteouts and placeholders, handled here entirely (true).
    fn upper_special(&mut self, node: &Node, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<bool> {
        let Source::Upper {
            skip,
            written,
            lower_has,
        } = self.from
        else {
            return Ok(false);
        };
        let has = |n: &str| xattrs.iter().any(|(k, _)| overlay_name(k) == Some(n));
        if has("redirect") || has("metacopy") {
            return fail(
                node.rel,
                LayerCause::Unsupported("overlay redirect_dir/metacopy"),
            );
        }
        let xattr_whiteout = node.kind == Kind::File && node.st.st_size == 0 && has("whiteout");
        if (node.kind == Kind::Char && node.st.st_rdev == 0) || xattr_whiteout {
            let (dir, name) = split_last(node.rel);
            let slash: &[u8] = if dir.is_empty() { b"" } else { b"/" };
            let marker = [dir, slash, b".wh.", name].concat();
            self.append_marker(&marker, self.mtime(node.st))?;
            return Ok(true);
        }
        let marks = Marks {
            skip,
            written,
            lower_has,
        };
        is_placeholder(&marks, node.rel, node.st, node.fd)
    }

    /// Owner and permission bits of an entry.
    fn owner(&self, node: &Node) -> Result<(u32, u32, u32)> {
        let own_mode = node.st.st_mode & 0o7777;
        if let Source::Unpacked(Some((uid, gid))) = self.from {
            return Ok((uid, gid, own_mode));
        }
        let Source::Context(opts) = self.from else {
            return Ok((node.st.st_uid, node.st.st_gid, own_mode));
        };
        if node.kind == Kind::Char && node.st.st_rdev == 0 {
            return fail(
                node.rel,
                LayerCause::Invalid("a 0/0 device would be a whiteout"),
            );
        }
        let mode = match (node.kind, opts.chmod) {
            (Kind::Symlink, _) | (_, None) => own_mode,
            (_, Some(mode)) => mode & 0o7777,
        };
        Ok((opts.uid, opts.gid, mode))
    }

    /// The path this inode was first written at, if it was (else notes it).
    fn first_link(&mut self, node: &Node) -> Option<Vec<u8>> {
        if node.kind == Kind::Dir || node.st.st_nlink <= 1 {
            return None;
        }
        match self.links.entry((node.st.st_dev, node.st.st_ino)) {
            Entry::Occupied(first) => Some(first.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(node.rel.to_vec());
                None
            }
        }
    }

    /// The kept xattrs of the next entry as a PAX header before it.
    fn append_xattrs(&mut self, rel: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut records = Vec::new();
        for (name, value) in xattrs.iter().filter(|(n, _)| keep_xattr(n)) {
            let Ok(name) = std::str::from_utf8(name) else {
                return fail(rel, LayerCause::Invalid("an xattr name is not UTF-8"));
            };
            records.push((format!("SCHILY.xattr.{name}"), value.as_slice()));
        }
        let records = records.iter().map(|(k, v)| (k.as_str(), *v));
        self.out.append_pax_extensions(records).at(rel)
    }
}

impl Sink for TarSink<'_> {
    fn entry(&mut self, node: &Node) -> Result<bool> {
        let (rel, st, kind) = (node.rel, node.st, node.kind);
        if split_last(rel).1.starts_with(b".wh.") {
            return fail(
                rel,
                LayerCause::Invalid("a name starting with .wh. is a whiteout"),
            );
        }
        let xattrs = match node.fd {
            Some(fd) => crate::sys::xattr::read_all(fd.as_fd(), MAX_XATTR).at(rel)?,
            None => Vec::new(),
        };
        if kind == Kind::Socket || self.upper_special(node, &xattrs)? {
            return Ok(false);
        }
        let (uid, gid, mode) = self.owner(node)?;
        let is_dir = kind == Kind::Dir;
        if is_dir && (rel.is_empty() || !self.dirs.insert(rel.to_vec())) {
            return Ok(true);
        }
        if rel.is_empty() {
            return fail(
                rel,
                LayerCause::Invalid("only a directory can be copied to /"),
            );
        }
        let link = self.first_link(node);
        let ty = match (&link, kind) {
            (Some(_), _) => EntryType::Link,
            (None, Kind::Dir) => EntryType::Directory,
            (None, Kind::Symlink) => EntryType::Symlink,
            (None, Kind::Char) => EntryType::Char,
            (None, Kind::Block) => EntryType::Block,
            (None, Kind::Fifo) => EntryType::Fifo,
            (None, _) => EntryType::Regular,
        };
        let size = match ty {
            EntryType::Regular => {
                u64::try_from(st.st_size).map_err(|_| LayerError::new(rel, LayerCause::Changed))?
            }
            _ => 0,
        };
        let mtime = self.mtime(st);
        let mut h = header(ty, mode, uid, gid, mtime, size);
        if matches!(ty, EntryType::Char | EntryType::Block) {
            set_device(&mut h, st.st_rdev).at(rel)?;
        }
        if link.is_none() {
            self.append_xattrs(rel, &xattrs)?;
        }
        self.count(rel)?;
        let name = if is_dir {
            [rel, b"/"].concat()
        } else {
            rel.to_vec()
        };
        let name = OsStr::from_bytes(&name);
        match (link, node.target, node.fd) {
            (Some(first), _, _) => self
                .out
                .append_link(&mut h, name, OsStr::from_bytes(&first)),
            (None, Some(target), _) => self.out.append_link(&mut h, name, target),
            (None, None, Some(fd)) if !is_dir => {
                let data = ExactReader {
                    fd: fd.as_fd(),
                    left: size,
                };
                self.out.append_data(&mut h, name, data)
            }
            _ => self.out.append_data(&mut h, name, io::empty()),
        }
        .at(rel)?;
        if is_dir && is_opaque(&xattrs) && matches!(self.from, Source::Upper { .. }) {
            self.append_marker(&[rel, b"/.wh..wh..opq"].concat(), mtime)?;
        }
        Ok(is_dir)
    }
}

fn header(ty: EntryType, mode: u32, uid: u32, gid: u32, mtime: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

fn set_device(h: &mut Header, rdev: u64) -> io::Result<()> {
    let number = |n: u64| u32::try_from(n).map_err(|_| io::Error::other("device number too big"));
    h.set_device_major(number(major(rdev))?)?;
    h.set_device_minor(number(minor(rdev))?)
}

/// `dest` of a COPY as a path in the tar: relative, checked.
fn image_rel(dest: &str) -> Result<Vec<u8>> {
    let bad = |why| fail(dest.as_bytes(), LayerCause::Invalid(why));
    let Some(rel) = dest.strip_prefix('/') else {
        return bad("destination is not absolute");
    };
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel.len() > MAX_PATH {
        return fail(dest.as_bytes(), LayerCause::Limit("path length"));
    }
    let odd = |c: &str| c.is_empty() || c == "." || c == "..";
    if rel.contains('\0') || (!rel.is_empty() && rel.split('/').any(odd)) {
        return bad("destination is not normalised");
    }
    Ok(rel.as_bytes().to_vec())
}

/// Exactly `left` bytes of a file: one that shrank fails the entry
/// (a short entry would corrupt the rest of the tar).
pub(super) struct ExactReader<'a> {
    pub(super) fd: BorrowedFd<'a>,
    pub(super) left: u64,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = nix::unistd::read(self.fd, &mut buf[..want])?;
        if n == 0 {
            let shrank = "file shrank while being read";
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, shrank));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The tar file, hashed and counted as it is written.
struct HashWriter {
    out: BufWriter<File>,
    hash: Sha256,
    size: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
