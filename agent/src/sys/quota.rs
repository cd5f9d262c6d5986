//! Project quotas: the kernel calls behind a container's bounded writable
//! layer (`--storage-opt size=`).
//!
//! A project id is set on a directory with `FS_IOC_FSSETXATTR` and the
//! `PROJINHERIT` flag, so every file and directory made under it later
//! carries the same id; the id's block hard limit is set with `quotactl_fd`
//! (Linux 5.14+) on any file of that file system, so berthd never has to
//! find the block device. Works on ext4 (`-O quota,project`, mounted
//! `prjquota`) and xfs (`prjquota`).

use std::io;
use std::os::fd::AsRawFd;

/// `struct fsxattr` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `struct if_dqinfo` of `<linux/quota.h>`.
#[repr(C)]
#[derive(Default)]
struct DqInfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

/// `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
/// New files and directories inherit the directory's project id.
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `PRJQUOTA` of `<linux/quota.h>`.
const PRJQUOTA: libc::c_int = 2;
const Q_GETINFO: libc::c_int = 0x80_0005;
const Q_SETQUOTA: libc::c_int = 0x80_0008;
/// `dqb_valid`: the block limits are set.
const QIF_BLIMITS: u32 = 1;

fn qcmd(cmd: libc::c_int) -> libc::c_int {
    (cmd << 8) | (PRJQUOTA & 0xff)
}

fn get_xattr(dir: &impl AsRawFd) -> io::Result<FsXattr> {
    let mut x = FsXattr::default();
    // SAFETY: `x` is a valid, writable struct fsxattr for the whole call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(x)
}

/// The project id of the file or directory `dir` (0: none).
pub fn project_of(dir: &impl AsRawFd) -> io::Result<u32> {
    Ok(get_xattr(dir)?.projid)
}

/// Gives directory `dir` project id `id`, inherited by everything made
/// under it from now on.
pub fn set_project(dir: &impl AsRawFd, id: u32) -> io::Result<()> {
    let mut x = get_xattr(dir)?;
    x.projid = id;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: `x` is a valid struct fsxattr the kernel only reads.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSSETXATTR, &x as *const FsXattr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Fails unless project quotas are enforced on the file system holding
/// `file` (ESRCH: quotas off, that is no `prjquota`; ENOSYS, EOPNOTSUPP,
/// ENOTTY and the like: a file system or kernel without them).
pub fn check_project_quotas(file: &impl AsRawFd) -> io::Result<()> {
    let mut info = DqInfo::default();
    // SAFETY: plain syscall; the pointer is valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            file.as_raw_fd(),
            qcmd(Q_GETINFO),
            0,
            &mut info as *mut DqInfo,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets project `id`'s block hard (and soft) limit to `bytes`, rounded up
/// to the kernel's 1 KiB quota blocks, on the file system holding `file`;
/// 0 removes the limit.
pub fn set_project_limit(file: &impl AsRawFd, id: u32, bytes: u64) -> io::Result<()> {
    // SAFETY: a zeroed dqblk is a valid value (no limits, nothing valid).
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    let blocks = bytes.div_ceil(1024);
    q.dqb_bhardlimit = blocks;
    q.dqb_bsoftlimit = blocks;
    q.dqb_valid = QIF_BLIMITS;
    // SAFETY: plain syscall; the pointer is valid for the call and only
    // read by the kernel.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            file.as_raw_fd(),
            qcmd(Q_SETQUOTA),
            id,
            &q as *const libc::dqblk,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
