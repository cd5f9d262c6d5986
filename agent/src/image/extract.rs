//! Safe unpacking of one layer tar into a directory, in overlayfs form.
//!
//! The destination is a private staging directory, so the only thing that can
//! plant symlinks in it is the layer itself; every parent component is checked
//! with `symlink_metadata` (never following links) before anything is created
//! below it, and files are opened with `O_NOFOLLOW | O_EXCL`. That is what keeps
//! `foo -> /etc` followed by `foo/passwd` from writing to the host.
//!
//! Whiteouts become what overlayfs understands: `.wh.NAME` turns into a 0/0
//! character device `NAME`; `.wh..wh..opq` marks its directory with the
//! `trusted.overlay.opaque=y` xattr.

use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::archive::{clean_relative, copy_classified};
use super::error::IoContext;
use super::ImageError;

/// Prefix of whiteout entries in OCI/Docker layers.
const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of whiteout "meta" entries (`.wh..wh.*`), of which only the opaque marker matters.
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// Marker that makes its directory opaque (hides the lower layers' contents).
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The overlayfs xattr for opaque directories.
const OVERLAY_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Ownership, permissions, time and xattrs of one tar entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Unpacks the tar stream `reader` into the existing empty directory `dest`.
///
/// `layer` names the layer in error messages. Returns the number of bytes of
/// regular files written. Errors reading or validating the stream are
/// [`ImageError::InvalidArchive`]; errors writing are [`ImageError::Io`]. On
/// error `dest` is left half-filled: the caller discards the staging dir.
pub(crate) fn unpack(reader: &mut dyn Read, dest: &Path, layer: &str) -> Result<u64, ImageError> {
    unpack_checked(reader, dest, layer, Takes::Layer)
}

/// [`unpack`] for a tar of plain files (a build context): only
/// directories, regular files and links; a device, a fifo or a whiteout
/// (`.wh.*`) is refused rather than made, since the agent reads what it
/// unpacks (opening a fifo blocks, a device reaches the host's hardware).
pub(crate) fn unpack_plain(
    reader: &mut dyn Read,
    dest: &Path,
    what: &str,
) -> Result<u64, ImageError> {
    unpack_checked(reader, dest, what, Takes::Context)
}

/// [`unpack`] for an archive a build's ADD unpacks: devices and fifos are
/// left out (as BuildKit does: a root file system tarball has
/// `dev/console`), a whiteout is refused, and at most `max` bytes of
/// files are written (else NoSpace).
pub(crate) fn unpack_files(
    reader: &mut dyn Read,
    dest: &Path,
    what: &str,
    max: u64,
) -> Result<u64, ImageError> {
    unpack_checked(reader, dest, what, Takes::Files { max })
}

/// What an unpack takes.
#[derive(Clone, Copy)]
enum Takes {
    /// An image layer: everything, whiteouts made overlay whiteouts.
    Layer,
    /// A build context: plain files only, anything else refused.
    Context,
    /// An ADD archive: devices and fifos skipped, whiteouts refused.
    Files { max: u64 },
}

fn unpack_checked(
    reader: &mut dyn Read,
    dest: &Path,
    layer: &str,
    takes: Takes,
) -> Result<u64, ImageError> {
    unpack_entries(reader, dest, layer, takes).map_err(|e| match e {
        // A path longer than the kernel takes (PATH_MAX) is the archive's
        // fault; names too long are refused before anything is created.
        ImageError::Io { context, source } if source.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            ImageError::archive(format!("layer {layer}: {context}: the path is too long"))
        }
        e => e,
    })
}

/// [`unpack`], with errors as they come.
fn unpack_entries(
    reader: &mut dyn Read,
    dest: &Path,
    layer: &str,
    takes: Takes,
) -> Result<u64, ImageError> {
    let bad =
        |e: io::Error| ImageError::archive_caused(format!("layer {layer}: bad tar stream"), e);
    let mut ar = tar::Archive::new(reader);
    // Directory mtimes are set last: creating children would bump them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let mut size = 0u64;
    let mut budget = super::archive::space_budget(dest)?;
    if let Takes::Files { max } = takes {
        budget = budget.min(max);
    }
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path().map_err(bad)?.into_owned();
        let reject = |why: &str| {
            ImageError::archive(format!("layer {layer}: entry {:?} {why}", raw.display()))
        };
        let parts: Vec<PathBuf> = clean_relative(&raw)
            .map_err(|why| reject(&why))?
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let meta = read_meta(&mut entry).map_err(|e| reject(&e))?;

        let Some((name, parents)) = parts.split_last() else {
            // "./": the layer root itself. Only a directory makes sense there.
            if kind.is_dir() {
                apply_meta(dest, &meta, false)?;
                dir_times.push((dest.to_path_buf(), meta.mtime));
                continue;
            }
            return Err(reject("is not a directory but names the layer root"));
        };
        let parent = ensure_parents(dest, parents).map_err(|e| match e {
            ParentError::Invalid(why) => reject(&why),
            ParentError::Io(e) => e,
        })?;
        let name = name.as_os_str();
        let name_bytes = name.as_bytes();

        let special = kind.is_character_special() || kind.is_block_special() || kind.is_fifo();
        let whiteout = name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes());
        match takes {
            Takes::Context if special || whiteout => {
                return Err(reject(
                    "is a device, a fifo or a whiteout, which a build context cannot hold",
                ))
            }
            Takes::Files { .. } if whiteout => {
                return Err(reject(
                    "is a whiteout name, which a layer would read as a deletion",
                ))
            }
            Takes::Files { .. } if special => continue,
            _ => {}
        }
        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            if name_bytes == WHITEOUT_OPAQUE.as_bytes() {
                set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y")
                    .ctx(|| format!("marking {} opaque", parent.display()))?;
            } else if name_bytes.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
                // Other AUFS meta entries (.wh..wh.plnk, ...) have no overlay meaning.
            } else {
                let victim = OsStr::from_bytes(&name_bytes[WHITEOUT_PREFIX.len()..]);
                if victim.is_empty() || victim == "." || victim == ".." {
                    return Err(reject("is a whiteout for an invalid name"));
                }
                let path = parent.join(victim);
                remove_existing(&path, false)?;
                // Mode 0: overlayfs only looks at the type and the 0/0 device number.
                mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(io::Error::from)
                    .ctx(|| format!("creating whiteout {}", path.display()))?;
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .ctx(|| format!("chown {}", path.display()))?;
            }
            continue;
        }

        let path = parent.join(name);
        if kind.is_dir() {
            if !remove_existing(&path, true)? {
                DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .ctx(|| format!("creating directory {}", path.display()))?;
            }
            apply_meta(&path, &meta, false)?;
            dir_times.push((path, meta.mtime));
        } else if kind.is_file() || kind.is_gnu_sparse() {
            remove_existing(&path, false)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .ctx(|| format!("creating {}", path.display()))?;
            let what = format!("layer {layer}: reading {:?}", raw.display());
            size += copy_classified(&mut entry, &mut f, &what, &path, budget - size)?;
            apply_file_meta(&f, &path, &meta)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .filter(|t| !t.as_os_str().is_empty())
                .ok_or_else(|| reject("is a symlink without a target"))?
                .into_owned();
            remove_existing(&path, false)?;
            // Any target is fine: it is resolved inside the container's root, and
            // we never follow links while unpacking.
            std::os::unix::fs::symlink(&target, &path)
                .ctx(|| format!("creating symlink {}", path.display()))?;
            apply_meta(&path, &meta, true)?;
            set_times(&path, meta.mtime)?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| reject("is a hard link without a target"))?
                .into_owned();
            let src = hardlink_source(dest, &target).map_err(|why| {
                reject(&format!(
                    "is a hard link to {:?}, which {why}",
                    target.display()
                ))
            })?;
            if src == path {
                continue;
            }
            remove_existing(&path, false)?;
            fs::hard_link(&src, &path).ctx(|| format!("linking {}", path.display()))?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let sflag = if kind.is_character_special() {
                SFlag::S_IFCHR
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let hdr = entry.header();
            // Some writers leave the fields empty (NULs) for fifos; read that as 0.
            let major = hdr.device_major().ok().flatten().unwrap_or(0);
            let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
            remove_existing(&path, false)?;
            mknod(
                &path,
                sflag,
                Mode::from_bits_truncate(0o600),
                makedev(u64::from(major), u64::from(minor)),
            )
            .map_err(io::Error::from)
            .ctx(|| format!("creating device/fifo {}", path.display()))?;
            apply_meta(&path, &meta, false)?;
            set_times(&path, meta.mtime)?;
        } else {
            return Err(reject(&format!("has unsupported type {kind:?}")));
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        // A later entry may have replaced the directory, or a parent of it
        // by a symlink that `utimensat` would follow (into the host).
        if still_a_dir_below(dest, dir) {
            set_times(dir, *mtime)?;
        }
    }
    Ok(size)
}

/// Whether `path` is (still) a directory that is reached from `dest`
/// without symlinks.
fn still_a_dir_below(dest: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(dest) else {
        return false;
    };
    let mut p = dest.to_path_buf();
    rel.components().all(|c| {
        p.push(c);
        fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
    })
}

/// Why a parent path could not be used.
enum ParentError {
    /// The layer is malicious or broken (symlink or non-directory in the path).
    Invalid(String),
    /// A local failure.
    Io(ImageError),
}

/// Makes sure every component of `parents` below `dest` is a real directory
/// (creating missing ones, as tar does), refusing symlinks. Returns the parent path.
fn ensure_parents(dest: &Path, parents: &[PathBuf]) -> Result<PathBuf, ParentError> {
    let mut cur = dest.to_path_buf();
    for (i, comp) in parents.iter().enumerate() {
        cur.push(comp);
        let shown = || {
            parents[..=i]
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ParentError::Invalid(format!(
                    "has a parent {:?} that is a symlink; refusing to write through it",
                    shown()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ParentError::Invalid(format!(
                    "has a parent {:?} that is not a directory",
                    shown()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                .mode(0o755)
                .create(&cur)
                .ctx(|| format!("creating directory {}", cur.display()))
                .map_err(ParentError::Io)?,
            Err(e) => {
                return Err(ParentError::Io(ImageError::io(
                    format!("inspecting {}", cur.display()),
                    e,
                )))
            }
        }
    }
    Ok(cur)
}

/// Validates a hard link target: relative, no `..`, no symlinks on the way,
/// and an existing regular file inside this layer. Returns its path.
fn hardlink_source(dest: &Path, target: &Path) -> Result<PathBuf, String> {
    let parts = clean_relative(target)?;
    if parts.is_empty() {
        return Err("is empty".into());
    }
    let mut cur = dest.to_path_buf();
    for (i, comp) in parts.iter().enumerate() {
        cur.push(comp);
        let m = fs::symlink_metadata(&cur)
            .map_err(|_| "does not exist in this layer (yet)".to_string())?;
        if m.file_type().is_symlink() {
            return Err("goes through or is a symlink".into());
        }
        let last = i + 1 == parts.len();
        if !last && !m.is_dir() {
            return Err("has a non-directory parent".into());
        }
        if last && !m.is_file() {
            return Err("is not a regular file".into());
        }
    }
    Ok(cur)
}

/// Clears the way for a new entry at `path`. If `keep_dir` and a directory is
/// already there, keeps it and returns true (tar merges directories);
/// otherwise removes whatever is there (without following symlinks).
fn remove_existing(path: &Path, keep_dir: bool) -> Result<bool, ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path).ctx(|| format!("replacing {}", path.display()))?;
        }
        Ok(_) => fs::remove_file(path).ctx(|| format!("replacing {}", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io(format!("inspecting {}", path.display()), e)),
    }
    Ok(false)
}

/// Collects metadata from the header and its PAX extensions (which carry large
/// ids, precise mtimes and `SCHILY.xattr.*`).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
    let hdr = entry.header();
    let mode = hdr.mode().map_err(|e| format!("has a bad mode: {e}"))? & 0o7777;
    let mut uid = hdr.uid().map_err(|e| format!("has a bad uid: {e}"))?;
    let mut gid = hdr.gid().map_err(|e| format!("has a bad gid: {e}"))?;
    let mut mtime = i64::try_from(hdr.mtime().unwrap_or(0)).unwrap_or(0);
    let mut xattrs = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| format!("has bad PAX headers: {e}"))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| format!("has bad PAX headers: {e}"))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let num = || std::str::from_utf8(value).ok().map(str::trim);
            match key {
                b"uid" => uid = num().and_then(|v| v.parse().ok()).unwrap_or(uid),
                b"gid" => gid = num().and_then(|v| v.parse().ok()).unwrap_or(gid),
                b"mtime" => {
                    // May be fractional ("1700000000.123"); whole seconds are enough.
                    mtime = num()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(mtime)
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        if keep_xattr(name) {
                            xattrs.push((name.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| format!("has uid {uid} out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| format!("has gid {gid} out of range"))?;
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// Which xattrs from an image are applied. `trusted.*` is refused because
/// `trusted.overlay.*` would let a layer forge overlayfs metadata (opaque,
/// redirect, metacopy); SELinux labels are host policy, not image content.
fn keep_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || name == b"security.capability"
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// Applies owner, mode (unless a symlink) and xattrs via the path, without following links.
fn apply_meta(path: &Path, meta: &Meta, is_symlink: bool) -> Result<(), ImageError> {
    // chown first: it clears setuid/setgid bits that chmod then restores.
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
        .ctx(|| format!("chown {}", path.display()))?;
    if !is_symlink {
        fs::set_permissions(path, Permissions::from_mode(meta.mode))
            .ctx(|| format!("chmod {}", path.display()))?;
    }
    for (name, value) in &meta.xattrs {
        // Best effort: the filesystem may not support the namespace.
        let _ = set_xattr(path, name, value);
    }
    Ok(())
}

/// Like [`apply_meta`] for a regular file we hold open; also sets its mtime.
fn apply_file_meta(f: &File, path: &Path, meta: &Meta) -> Result<(), ImageError> {
    std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))
        .ctx(|| format!("chown {}", path.display()))?;
    f.set_permissions(Permissions::from_mode(meta.mode))
        .ctx(|| format!("chmod {}", path.display()))?;
    for (name, value) in &meta.xattrs {
        let _ = set_xattr(path, name, value);
    }
    let t = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::futimens(f, &t, &t)
        .map_err(io::Error::from)
        .ctx(|| format!("setting times of {}", path.display()))
}

/// Sets atime and mtime of `path` (not following symlinks).
fn set_times(path: &Path, mtime: i64) -> Result<(), ImageError> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
    .ctx(|| format!("setting times of {}", path.display()))
}

/// `lsetxattr(2)`: std and nix have no xattr API.
fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name");
    let p = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    let n = CString::new(name).map_err(invalid)?;
    // SAFETY: both strings are valid NUL-terminated C strings and `value`
    // is a live buffer of `value.len()` bytes for the duration of the call.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
