//! Docker's copy-up: a volume that is still empty when it is mounted on a
//! directory of the image gets that directory's content first.
//!
//! Runs in the init before `pivot_root`, so every path is opened relative
//! to a directory file descriptor, with `O_NOFOLLOW`: the image's symlinks
//! are copied as symlinks, never followed (they would lead into the host).
//! Regular files, directories and symlinks are copied with their mode and
//! owner; other kinds (device nodes, fifos, sockets) are left out, and hard
//! links become separate files.

use alloc::vec;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The deepest directory tree copied (ELOOP past it).
const MAX_DEPTH: u32 = 128;

fn open_dir(at: BorrowedFd<'_>, name: &core::ffi::CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// How the image side is walked: one component at a time, no symlink
/// followed, and never across a mount point (EXDEV), so the walk stays on
/// the image's file system and can never read procfs, sysfs or any other
/// mount found under the target.
const SOURCE: ResolveFlags = ResolveFlags::NO_XDEV
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn open_source(
    at: BorrowedFd<'_>,
    name: &core::ffi::CStr,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        at,
        name,
        flags | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        SOURCE,
    )
}

/// Whether the directory `dir` has no entry.
pub fn is_empty(dir: &OwnedFd) -> Result<bool, Errno> {
    let fd = open_dir(dir.as_fd(), c".")?;
    let mut entries = Dir::read_from(&fd)?;
    while let Some(entry) = entries.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the content of directory `from` into the (empty) directory
/// `into`, and `from`'s mode and owner onto `into`, as Docker does.
pub fn copy(from: &OwnedFd, into: &OwnedFd) -> Result<(), Errno> {
    let src = open_source(from.as_fd(), c".", OFlags::DIRECTORY)?;
    let dst = open_dir(into.as_fd(), c".")?;
    let st = rustix::fs::fstat(&src)?;
    copy_dir(&src, &dst, 0)?;
    own(&dst, &st)
}

/// Gives `fd` the owner and permission bits of `st`.
fn own(fd: &OwnedFd, st: &rustix::fs::Stat) -> Result<(), Errno> {
    rustix::fs::fchown(
        fd,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: u32) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    let mut entries = Dir::read_from(src)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                // A mount point (EXDEV) is not the image's: left out.
                let from = match open_source(src.as_fd(), name, OFlags::DIRECTORY) {
                    Ok(fd) => fd,
                    Err(Errno::XDEV) => continue,
                    Err(e) => return Err(e),
                };
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let into = open_dir(dst.as_fd(), name)?;
                copy_dir(&from, &into, depth + 1)?;
                own(&into, &st)?;
            }
            FileType::RegularFile => {
                // Non-blocking: a fifo swapped in since the statat must not
                // block the start; what is opened must be a regular file.
                let from = match open_source(src.as_fd(), name, OFlags::NONBLOCK) {
                    Ok(fd) => fd,
                    Err(Errno::XDEV) => continue,
                    Err(e) => return Err(e),
                };
                let st = rustix::fs::fstat(&from)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    continue;
                }
                rustix::fs::fcntl_setfl(&from, OFlags::RDONLY)?;
                let into = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                copy_file(&from, &into)?;
                own(&into, &st)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, vec![])?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::process::Uid::from_raw(st.st_uid)),
                    Some(rustix::process::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            // Devices, fifos, sockets: not copied.
            _ => {}
        }
    }
    Ok(())
}

fn copy_file(from: &OwnedFd, into: &OwnedFd) -> Result<(), Errno> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rustix::io::read(from, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        };
        crate::io::write_all(into, &buf[..n])?;
    }
}
