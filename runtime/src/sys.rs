//! The narrow boundary where the monitor and the container init talk to the
//! kernel directly.
//!
//! Everything `unsafe` in this crate lives here, each function a thin,
//! checked wrapper over one system call, so the rest stays safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`fork`] and [`clone_into_cgroup`].
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// `fork(2)`. Only called by the monitor, which is single-threaded (a fresh
/// exec that never starts a thread), so the child may allocate and run
/// ordinary code.
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: the only caller is the single-threaded monitor process.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// The kernel's `struct clone_args` (clone3(2)), up to `cgroup` (v2 of the
/// struct, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks like [`fork`], with the child created directly inside the cgroup v2
/// directory `cgroup` (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7): no
/// migration afterwards, so none of the locking a write to `cgroup.procs`
/// costs. Fails with `ENOSYS`/`E2BIG`/`EINVAL` on kernels without it.
///
/// Same contract as [`fork`]: only for the single-threaded monitor.
pub fn clone_into_cgroup(cgroup: BorrowedFd<'_>) -> nix::Result<Forked> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: without CLONE_VM the child gets a copy of the address space,
    // exactly like fork(2); the caller is single-threaded, so no lock can be
    // held by a thread that does not exist in the child. `args` outlives
    // the call and its size is passed with it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// `pivot_root(new_root, put_old)`.
pub fn pivot_root(new_root: &str, put_old: &str) -> nix::Result<()> {
    nix::unistd::pivot_root(new_root, put_old)
}

/// Marks every fd >= `from` close-on-exec, so an exec'd container process
/// inherits nothing of the monitor but its stdio.
pub fn cloexec_from(from: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `PR_SET_NO_NEW_PRIVS`: exec can never grant more privileges (setuid
/// binaries, file capabilities) than the process has.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the default disposition of `signal`. Rust ignores SIGPIPE at
/// start-up and ignored signals survive exec, so a container would otherwise
/// inherit an ignored SIGPIPE.
pub fn reset_signal(signal: nix::sys::signal::Signal) -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL has no handler code to be unsafe about.
    unsafe { sigaction(signal, &dfl) }.map(|_| ())
}

/// Brings the loopback interface of the current network namespace up.
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

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CString, args: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(path, args, env) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Immediately ends the process without running destructors or atexit
/// handlers (used in forked children, where those belong to the parent).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}
