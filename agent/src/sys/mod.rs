//! The narrow boundary where berthd talks to the kernel directly.
//!
//! Everything `unsafe` in the agent lives here, each function a thin, checked
//! wrapper over one system call, so the rest of the code stays safe Rust.
//! (What the monitor and the container init call is in `monitor/src/sys.rs`.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

/// Opens a pidfd for `pid` (Linux 5.3+). A pidfd names one process for good:
/// signals sent through it can never hit a later process that reused the pid.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo means "as kill(2) would".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the process behind `pidfd` has exited (a pidfd becomes
/// readable then).
pub async fn pidfd_exited(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: the AsyncFd owns `pidfd`, so the fd stays open and is not
    // reused for as long as it is registered.
    let afd = unsafe { tokio::io::unix::AsyncFd::register(pidfd) }.map_err(|e| e.into_parts().1)?;
    let _guard = afd.readable().await?;
    Ok(())
}

/// Hands the allocator's free memory back to the kernel (glibc's
/// `malloc_trim`). After a burst of work, memory freed by many threads
/// otherwise stays in the allocator's per-thread arenas, resident.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free
    // lists; it is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at `n`. By default every thread that
/// allocates can get an arena of its own (up to 8 per CPU); each keeps its
/// free memory, so a burst of work on many blocking-pool threads leaves
/// megabytes resident. Call before any thread starts.
pub fn limit_malloc_arenas(n: i32) {
    // SAFETY: mallopt only sets an allocator parameter; called at start-up
    // while the process has one thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs only on CPU
/// time nothing else wants (background work that must never delay a
/// container start).
pub fn run_at_idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops this process's mapping of the pages that lie wholly inside
/// `data`, which must be read-only data of the executable (a `static` in
/// `.rodata`): they stay in the page cache and fault back in, unchanged,
/// if read again. Used for large embedded blobs that are read once, so
/// they do not stay in berthd's resident set for its whole life.
pub fn forget_resident_static(data: &'static [u8]) {
    let page = match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as usize,
        _ => return,
    };
    let start = (data.as_ptr() as usize).next_multiple_of(page);
    let end = (data.as_ptr() as usize + data.len()) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: [start, end) lies inside `data`, a 'static read-only,
    // file-backed mapping of the executable: MADV_DONTNEED only removes
    // the page-table entries, and any later read faults the same bytes
    // back in from the file. Nothing can have written to these pages.
    // A failure leaves the pages mapped, which is harmless.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// Brings the loopback interface of the calling thread's network namespace up.
pub fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

mod bpf;
pub use bpf::attach_cgroup_device_program;
pub mod overlay;
pub mod pin;
pub mod quota;
pub mod resolve;
pub mod xattr;

/// Allocates `len` bytes of `file` from `offset` without changing its size
/// (`fallocate` with `FALLOC_FL_KEEP_SIZE`): later writes there need no new
/// blocks, so they succeed on a file system that has filled up meanwhile.
pub fn preallocate(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    let to_off =
        |v: u64| i64::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    nix::fcntl::fallocate(
        file,
        nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        to_off(offset)?,
        to_off(len)?,
    )
    .map_err(io::Error::from)
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`) on the unix socket
/// `sock`, in one message.
pub fn send_with_fds(
    sock: &impl std::os::fd::AsFd,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let sent = sendmsg::<UnixAddr>(
        sock.as_fd().as_raw_fd(),
        &[io::IoSlice::new(data)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )?;
    if sent != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"));
    }
    Ok(())
}

/// Receives one message of up to `buf.len()` bytes on the unix socket
/// `sock` and the first descriptor that came with it (close-on-exec);
/// `(0, None)` at end of file. Others that came with it are closed.
pub fn recv_with_fd(
    sock: &impl std::os::fd::AsFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let bytes = msg.bytes;
    let mut owned: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed these descriptors in
                // this process for this message; nothing else owns them.
                owned.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let first = (!owned.is_empty()).then(|| owned.remove(0));
    Ok((bytes, first))
}

/// Sets the window size of the terminal `fd` (`TIOCSWINSZ`): the process
/// on the terminal gets SIGWINCH.
pub fn set_window_size(fd: &impl std::os::fd::AsFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which outlives the call, from
    // the pointer; the descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers `fd` with tokio's reactor for readiness (a pipe end or a
/// terminal's master side, already non-blocking).
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and is
    // not reused for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}
