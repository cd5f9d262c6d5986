//! The system calls rustix does not offer (process creation and exec, which
//! it keeps for C runtimes; signal dispositions; a few prctl/ioctl
//! requests), made directly.
//!
//! Everything `unsafe` about system calls in the monitor is in this file
//! (and the instruction that makes them, per architecture, in
//! [`crate::arch`]), each function a thin, checked wrapper over one call, so
//! the rest stays safe Rust. Numbers and constants are linux-raw-sys',
//! generated from the kernel's headers for the target architecture.

use core::ffi::{c_char, CStr};
use core::ptr;

use core::sync::atomic::{AtomicI32, Ordering};

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;

use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_close_range, __NR_execve, __NR_ioctl, __NR_keyctl,
    __NR_mount_setattr, __NR_pidfd_send_signal, __NR_prctl, __NR_rt_sigaction, __NR_rt_sigprocmask,
    __NR_seccomp, __NR_socket, mount_attr, AT_EMPTY_PATH, AT_RECURSIVE, CLONE_INTO_CGROUP,
    CLONE_NEWPID, CLONE_NEWUSER, MOUNT_ATTR_IDMAP, SIGCHLD, SIG_SETMASK,
};
use linux_raw_sys::ptrace::{sock_filter, sock_fprog, SECCOMP_SET_MODE_FILTER};

/// # Safety
/// The caller upholds the contract of system call `nr` for these arguments.
unsafe fn syscall(nr: u32, a: [usize; 5]) -> Result<usize, Errno> {
    // SAFETY: the caller's contract.
    let ret = unsafe { crate::arch::syscall(nr, a) };
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw_os_error(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// Ends the process at once (`exit_group(2)`): no destructors, nothing
/// buffered to flush, which is also right in a forked child.
pub fn exit(code: i32) -> ! {
    crate::arch::exit_group(code)
}

/// Result of [`fork_into`] and [`clone_into_cgroup`].
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

fn forked(ret: usize) -> Forked {
    match Pid::from_raw(ret as i32) {
        Some(pid) => Forked::Parent(pid),
        None => Forked::Child,
    }
}

/// The namespaces a forked child starts in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Namespaces {
    /// The parent's (its PID namespace for children included).
    Inherited,
    /// A new user namespace, and a new PID namespace owned by it
    /// (`CLONE_NEWUSER | CLONE_NEWPID`): the child is PID 1 there, without
    /// id maps until the parent writes them.
    NewUserAndPid,
}

impl Namespaces {
    fn flags(self) -> u64 {
        match self {
            Namespaces::Inherited => 0,
            Namespaces::NewUserAndPid => u64::from(CLONE_NEWUSER | CLONE_NEWPID),
        }
    }
}

/// `fork(2)`, as `clone(SIGCHLD)`, the child in the namespaces `ns` says.
/// The monitor is single-threaded, so the child may allocate and run
/// ordinary code.
pub fn fork_into(ns: Namespaces) -> Result<Forked, Errno> {
    let flags = ns.flags() as usize | SIGCHLD as usize;
    // SAFETY: without CLONE_VM the child gets a copy of the address space,
    // like fork(2); no other thread exists whose locks could be copied held.
    // The namespace flags change nothing of this process.
    // (The other arguments, zero, are in a different order on aarch64.)
    unsafe { syscall(__NR_clone, [flags, 0, 0, 0, 0]) }.map(forked)
}

/// Makes the detached mount `mount` (from `open_tree(OPEN_TREE_CLONE)`)
/// idmapped with the user namespace `userns` (`mount_setattr(2)` with
/// `MOUNT_ATTR_IDMAP`): its files appear owned by the ids their owners map
/// to in that namespace.
pub fn idmap_mount(mount: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> Result<(), Errno> {
    let attr = mount_attr {
        attr_set: MOUNT_ATTR_IDMAP.into(),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the path is a NUL-terminated empty string (AT_EMPTY_PATH: the
    // fd itself); `attr` outlives the call and its size goes with it.
    unsafe {
        syscall(
            __NR_mount_setattr,
            [
                mount.as_raw_fd() as usize,
                c"".as_ptr() as usize,
                AT_EMPTY_PATH as usize,
                &attr as *const mount_attr as usize,
                core::mem::size_of::<mount_attr>(),
            ],
        )
    }
    .map(drop)
}

/// The propagation [`set_mount_attr`] gives a detached mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Receives nothing, gives nothing.
    Private,
    /// Stays a slave of its source's master: receives what is mounted
    /// under the source later.
    Slave,
    /// Stays in its source's peer group (a clone of a shared mount is a
    /// peer): mounts go both ways.
    Shared,
}

/// Sets the attributes `set` (`MOUNT_ATTR_*`: read-only, nosuid, ...) on
/// the detached mount `mount`, and on every mount under it when
/// `recursive` (`mount_setattr(2)` with `AT_RECURSIVE`), and its
/// `propagation`: a read-only bind is then read-only all the way down.
pub fn set_mount_attr(
    mount: BorrowedFd<'_>,
    set: u32,
    recursive: bool,
    propagation: Propagation,
) -> Result<(), Errno> {
    /// `MS_PRIVATE`.
    const MS_PRIVATE: u64 = 1 << 18;
    /// `MS_SLAVE`.
    const MS_SLAVE: u64 = 1 << 19;
    /// `MS_SHARED`.
    const MS_SHARED: u64 = 1 << 20;
    let attr = mount_attr {
        attr_set: set.into(),
        attr_clr: 0,
        propagation: match propagation {
            Propagation::Private => MS_PRIVATE,
            Propagation::Slave => MS_SLAVE,
            Propagation::Shared => MS_SHARED,
        },
        userns_fd: 0,
    };
    let flags = AT_EMPTY_PATH | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: the path is a NUL-terminated empty string (AT_EMPTY_PATH: the
    // fd itself); `attr` outlives the call and its size goes with it.
    unsafe {
        syscall(
            __NR_mount_setattr,
            [
                mount.as_raw_fd() as usize,
                c"".as_ptr() as usize,
                flags as usize,
                &attr as *const mount_attr as usize,
                core::mem::size_of::<mount_attr>(),
            ],
        )
    }
    .map(drop)
}

/// The kernel's `struct clone_args` (clone3(2)), up to `cgroup` (its second
/// version, Linux 5.7).
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

/// Forks like [`fork_into`], with the child created directly inside the cgroup v2
/// directory `cgroup` (`clone3` with `CLONE_INTO_CGROUP`): no migration
/// afterwards. Fails with `ENOSYS`/`E2BIG`/`EINVAL` on kernels before 5.7.
pub fn clone_into_cgroup(cgroup: BorrowedFd<'_>, ns: Namespaces) -> Result<Forked, Errno> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP | ns.flags(),
        exit_signal: SIGCHLD.into(),
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    let size = core::mem::size_of::<CloneArgs>();
    // SAFETY: as `fork_into` (no CLONE_VM, no stack given: the child runs on a
    // copy of this stack); `args` outlives the call and its size goes with it.
    unsafe {
        syscall(
            __NR_clone3,
            [&args as *const CloneArgs as usize, size, 0, 0, 0],
        )
    }
    .map(forked)
}

/// `execve(2)`; returns only on failure. `argv` and `envp` end with a null.
pub fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return Errno::INVAL;
    }
    // SAFETY: NUL-terminated strings in null-terminated arrays (checked
    // above), all alive for the call.
    match unsafe {
        syscall(
            __NR_execve,
            [
                path.as_ptr() as usize,
                argv.as_ptr() as usize,
                envp.as_ptr() as usize,
                0,
                0,
            ],
        )
    } {
        Ok(_) => Errno::INVAL, // execve does not return on success
        Err(e) => e,
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2) (the same on x86_64
/// and aarch64, which both have `sa_restorer`).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;

fn set_disposition(signal: i32, handler: usize) -> Result<(), Errno> {
    let act = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: SIG_DFL and SIG_IGN run no handler code, so no restorer is
    // needed; `act` outlives the call; 8 is the kernel's sigset size.
    unsafe {
        syscall(
            __NR_rt_sigaction,
            [signal as usize, &act as *const _ as usize, 0, 8, 0],
        )
    }
    .map(drop)
}

/// Ignores `signal` (SIGPIPE in the monitor, whose berthd end of a pipe may
/// be gone while berthd restarts).
pub fn ignore_signal(signal: i32) -> Result<(), Errno> {
    set_disposition(signal, SIG_IGN)
}

/// Restores the default action of `signal`: ignored signals survive exec,
/// so a container would otherwise inherit the monitor's.
pub fn default_signal(signal: i32) -> Result<(), Errno> {
    set_disposition(signal, SIG_DFL)
}

/// Unblocks every signal, for the container's process to start clean.
pub fn unblock_all_signals() -> Result<(), Errno> {
    let empty: u64 = 0;
    // SAFETY: `empty` outlives the call; no old mask is asked for.
    unsafe {
        syscall(
            __NR_rt_sigprocmask,
            [SIG_SETMASK as usize, &empty as *const u64 as usize, 0, 8, 0],
        )
    }
    .map(drop)
}

/// Closes every fd >= `from` but `keep` (`close_range(2)`), now, not at
/// exec: a host descriptor still open while the process resolves paths in
/// the container (its working directory, PATH) is a way out of the root
/// through /proc/self/fd/N (runc's CVE-2024-21626).
pub fn close_from_except(from: u32, keep: u32) -> Result<(), Errno> {
    let close = |first: u32, last: u32| {
        // SAFETY: integer arguments only; the caller owns no descriptor in
        // the range that it uses afterwards (see the callers).
        unsafe { syscall(__NR_close_range, [first as usize, last as usize, 0, 0, 0]) }.map(drop)
    };
    if keep < from {
        return close(from, u32::MAX);
    }
    if keep > from {
        close(from, keep - 1)?;
    }
    match keep.checked_add(1) {
        Some(next) => close(next, u32::MAX),
        None => Ok(()),
    }
}

/// Sends signal number `signal` to the process behind `pidfd`
/// (`pidfd_send_signal(2)`): any number, where rustix takes only the
/// signals it names. `EINVAL` for a number that is no signal.
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: integer arguments and a descriptor this process owns; a null
    // siginfo means "as kill(2) would".
    unsafe {
        syscall(
            __NR_pidfd_send_signal,
            [pidfd.as_raw_fd() as usize, signal as usize, 0, 0, 0],
        )
    }
    .map(drop)
}

/// Removes capability number `cap` from the bounding set
/// (`PR_CAPBSET_DROP`). `EINVAL` means the kernel knows no such capability.
pub fn drop_bounding_capability(cap: u32) -> Result<(), Errno> {
    use linux_raw_sys::prctl::PR_CAPBSET_DROP;
    // SAFETY: integer arguments only.
    unsafe {
        syscall(
            __NR_prctl,
            [PR_CAPBSET_DROP as usize, cap as usize, 0, 0, 0],
        )
    }
    .map(drop)
}

/// Gives this process a new, anonymous session keyring
/// (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`), in place of the one it
/// inherited. `ENOSYS`: a kernel without keyrings.
pub fn join_new_session_keyring() -> Result<(), Errno> {
    // include/uapi/linux/keyctl.h, which linux-raw-sys lacks; the same on
    // every architecture.
    const KEYCTL_JOIN_SESSION_KEYRING: usize = 1;
    // SAFETY: a null name asks for an anonymous keyring; integers otherwise.
    unsafe { syscall(__NR_keyctl, [KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0]) }.map(drop)
}

/// Installs the classic BPF program `program` as a seccomp filter of this
/// process (`seccomp(SECCOMP_SET_MODE_FILTER, 0, ...)`); it stays for the
/// process and everything it execs or forks. Needs `no_new_privs` (or
/// `CAP_SYS_ADMIN`). `EINVAL` is a program the kernel's checker refuses.
pub fn install_seccomp_filter(program: &[sock_filter]) -> Result<(), Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::INVAL)?;
    let prog = sock_fprog {
        len,
        // The kernel only reads the program (it copies it in).
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` instructions, alive for the call; the
    // kernel copies them and keeps no pointer.
    unsafe {
        syscall(
            __NR_seccomp,
            [
                SECCOMP_SET_MODE_FILTER as usize,
                0,
                &prog as *const sock_fprog as usize,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// The kernel's `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<(), Errno> {
    use linux_raw_sys::general::O_CLOEXEC;
    use linux_raw_sys::ioctl::{SIOCGIFFLAGS, SIOCSIFFLAGS};
    use linux_raw_sys::net::net_device_flags::{IFF_RUNNING, IFF_UP};
    use linux_raw_sys::net::{AF_INET, SOCK_DGRAM};
    // SOCK_CLOEXEC is O_CLOEXEC (include/linux/net.h).
    let kind = (SOCK_DGRAM | O_CLOEXEC) as usize;
    // SAFETY: integer arguments; the new fd is owned right away.
    let sock = unsafe {
        let fd = syscall(__NR_socket, [AF_INET as usize, kind, 0, 0, 0])?;
        OwnedFd::from_raw_fd(fd as i32)
    };
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let fd = sock.as_fd().as_raw_fd() as usize;
    // SAFETY: both requests read and write the 40-byte ifreq we own.
    unsafe {
        syscall(
            __NR_ioctl,
            [
                fd,
                SIOCGIFFLAGS as usize,
                ptr::addr_of_mut!(req) as usize,
                0,
                0,
            ],
        )
    }?;
    req.flags |= (IFF_UP as u32 | IFF_RUNNING as u32) as i16;
    // SAFETY: as above.
    unsafe {
        syscall(
            __NR_ioctl,
            [
                fd,
                SIOCSIFFLAGS as usize,
                ptr::addr_of_mut!(req) as usize,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// The standard streams. berthd starts the monitor with all three open
/// (the spec pipe, the report pipe, the monitor log), and nothing here ever
/// closes them, only replaces them with dup2, so they stay valid.
pub fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 is open for the life of the process (above).
    unsafe { rustix::stdio::stdin() }
}

/// See [`stdin`].
pub fn stdout() -> BorrowedFd<'static> {
    // SAFETY: fd 1 is open for the life of the process (see `stdin`).
    unsafe { rustix::stdio::stdout() }
}

/// See [`stdin`].
pub fn stderr() -> BorrowedFd<'static> {
    // SAFETY: fd 2 is open for the life of the process (see `stdin`).
    unsafe { rustix::stdio::stderr() }
}

/// The directory the monitor log goes in, held open from the launch spec on
/// (see [`crate::io::write_stderr`]); -1 until then.
static LOG_DIR: AtomicI32 = AtomicI32::new(-1);

/// Keeps `dir` open for the rest of the process as the monitor log's
/// directory. Called once, when the container directory is known.
pub fn set_log_dir(dir: OwnedFd) {
    LOG_DIR.store(dir.into_raw_fd(), Ordering::Release);
}

/// The monitor log's directory, once [`set_log_dir`] has named it.
pub fn log_dir() -> Option<BorrowedFd<'static>> {
    let fd = LOG_DIR.load(Ordering::Acquire);
    // SAFETY: `set_log_dir` gave up ownership of the descriptor, so nothing
    // closes it before the process exits.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Writes `bytes` to the raw descriptor `fd`, ignoring failure: for the
/// panic handler, which has no owned descriptor at hand.
pub fn write_raw(fd: i32, bytes: &[u8]) {
    // SAFETY: callers pass a descriptor that stays open until the process
    // exits (see `rt::report_panics_to`); the borrow ends with this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = crate::io::write_all(fd, bytes);
}
