//! One descriptor over a unix socket (`SCM_RIGHTS`, with one byte): the
//! overlay root from the monitor to the init (`--userns auto`), a
//! terminal's master from the init to the monitor or from the exec helper
//! to berthd.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

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
