//! Terminals of the container's own devpts, and handing one over a
//! socket (`SCM_RIGHTS`): the exec helper hands the master to berthd, the
//! container's init to its monitor.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::io::{Context, Error, Result};

/// A new pty of the container's devpts (opened inside its mount
/// namespace, as runc does: the host's devpts is never used), unlocked and
/// sized: (master, slave).
pub fn open((rows, cols): (u16, u16)) -> Result<(OwnedFd, OwnedFd)> {
    // The container's root may have put anything there: no symlink is
    // followed at the end, and only devpts' own ptmx (5:2) is used.
    let master = rustix::fs::open(
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ctx("opening the container's /dev/pts/ptmx")?;
    let st = rustix::fs::fstat(&master).ctx("the container's /dev/pts/ptmx")?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        || st.st_rdev != rustix::fs::makedev(5, 2)
    {
        return Err(Error(
            "the container's /dev/pts/ptmx is not a pseudo-terminal multiplexer".into(),
        ));
    }
    // Back to blocking: berthd sets its own end's mode.
    rustix::fs::fcntl_setfl(&master, OFlags::RDWR).ctx("the terminal's flags")?;
    rustix::pty::unlockpt(&master).ctx("unlockpt")?;
    // By the master, never by a path the container could replace.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .ctx("opening the terminal")?;
    let size = rustix::termios::Winsize {
        ws_row: if rows == 0 { 24 } else { rows },
        ws_col: if cols == 0 { 80 } else { cols },
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).ctx("sizing the terminal")?;
    Ok((master, slave))
}

/// Sends `fd` over `sock` with one byte.
pub fn send_fd(sock: BorrowedFd<'_>, fd: &OwnedFd) -> core::result::Result<(), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(sock, &[IoSlice::new(b"t")], &mut cmsg, SendFlags::empty()).map(drop)
}

/// Receives the one descriptor [`send_fd`] sent; `None` when the peer
/// closed without sending one.
pub fn recv_fd(sock: BorrowedFd<'_>) -> core::result::Result<Option<OwnedFd>, Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut byte)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    Ok(fds.pop())
}
