//! Path resolution confined to a directory: the one place where `cp` (see
//! `crate::copy`) turns a path into a file descriptor.
//!
//! Every path of a container is resolved with `openat2(2)` against a file
//! descriptor of a directory, never as a string from the host's `/`:
//!
//! - [`open_in_root`]: `RESOLVE_IN_ROOT`: the directory is `/` for the
//!   resolution, so `..` and absolute symlinks stop there, as they do for
//!   the container's own processes;
//! - [`open_beneath`]: `RESOLVE_BENEATH`: a component (or symlink) that
//!   would lead above the directory fails with `EXDEV`;
//! - [`open_child`]: one component, no symlink at all (`ELOOP`), beneath.
//!
//! All three refuse magic links (`/proc/<pid>/fd/N`, `/proc/<pid>/root`,
//! ...: `RESOLVE_NO_MAGICLINKS`), which would lead out of any root, and
//! open close-on-exec. The unsafe system call itself is nix's
//! (`nix::fcntl::openat2`); what this module adds is the choice of flags,
//! which is the whole of the safety argument.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

fn open(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: u32,
    resolve: ResolveFlag,
) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir.as_fd(), path, how).map_err(io::Error::from)
}

/// Opens `path` (absolute or relative) with `root` as `/`: nothing outside
/// `root` can be reached, whatever symlinks and `..` the path meets. With
/// `O_NOFOLLOW` a symlink as last component is opened itself (with
/// `O_PATH`) or refused (`ELOOP`).
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    open(root, path, flags, 0, ResolveFlag::RESOLVE_IN_ROOT)
}

/// Opens the relative `path` beneath `dir`: symlinks are followed only
/// while they stay beneath it (`EXDEV` otherwise: absolute ones always).
pub fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    open(dir, path, flags, 0, ResolveFlag::RESOLVE_BENEATH)
}

/// Opens (or with `O_CREAT`, creates with `mode`) the entry `name` of
/// `dir`, which must be one component: a symlink there is never followed
/// (`ELOOP`), also with `O_CREAT`.
pub fn open_child(
    dir: BorrowedFd<'_>,
    name: &Path,
    flags: OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    open(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW,
        mode,
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
}

/// Opens the relative `path` beneath `dir` only if no component of it is
/// a symlink (`ELOOP`); with `O_PATH | O_NOFOLLOW` a symlink as the last
/// component is opened itself. For looking into an image's unpacked layers,
/// whose links are the image's and mean nothing on the host.
pub fn open_exact(dir: BorrowedFd<'_>, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    open(
        dir,
        path,
        flags,
        0,
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
}
