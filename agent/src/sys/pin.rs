//! Namespaces that outlive every process in them: a CRI pod's network, IPC
//! and UTS namespaces, held by bind mounts of their nsfs files (as CRI-O's
//! `pinns` does), so a pod needs no pause process or image. Its containers
//! enter them by path at each start (`LaunchSpec::netns`, `ipcns`, `utsns`).

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// The namespaces a pod pins, by their file name in its `ns` directory and
/// in `/proc/<tid>/ns`.
pub const PINNED: [&str; 3] = ["net", "ipc", "uts"];

/// Creates new network, IPC and UTS namespaces (`lo` up, `hostname` set)
/// and pins each at `dir/<net|ipc|uts>`. `dir` must exist; on error
/// nothing stays pinned.
///
/// The namespaces are made by a thread of their own, which unshares and
/// then ends: no other thread of berthd ever changes namespace.
pub fn pin_new(dir: &Path, hostname: &str) -> io::Result<()> {
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    std::thread::Builder::new()
        .name("pin-ns".into())
        .spawn(move || pin_in_new_namespaces(&dir, &hostname))?
        .join()
        .map_err(|_| io::Error::other("the namespace pinning thread panicked"))?
}

fn pin_in_new_namespaces(dir: &Path, hostname: &str) -> io::Result<()> {
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS,
    )?;
    nix::unistd::sethostname(hostname)?;
    super::loopback_up()?;
    let mut pinned: Vec<PathBuf> = Vec::new();
    for kind in PINNED {
        let target = dir.join(kind);
        let source = format!("/proc/thread-self/ns/{kind}");
        let bound = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|_| {
                mount(
                    Some(source.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            });
        match bound {
            Ok(()) => pinned.push(target),
            Err(e) => {
                let _ = std::fs::remove_file(&target);
                for p in &pinned {
                    let _ = unpin_one(p);
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("pinning the {kind} namespace: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Sets `sysctls` (checked by `berth_runtime::sysctl`: each of a network,
/// IPC or UTS namespace) in the namespaces pinned in `dir`. A thread of its
/// own enters them and writes `/proc/sys`, whose files act on the
/// namespaces of the thread that opens them, and then ends.
pub fn write_sysctls(dir: &Path, sysctls: &[(String, String)]) -> io::Result<()> {
    let dir = dir.to_path_buf();
    let sysctls = sysctls.to_vec();
    std::thread::Builder::new()
        .name("pod-sysctls".into())
        .spawn(move || -> io::Result<()> {
            for (kind, flag) in [
                ("net", CloneFlags::CLONE_NEWNET),
                ("ipc", CloneFlags::CLONE_NEWIPC),
                ("uts", CloneFlags::CLONE_NEWUTS),
            ] {
                // Berthd's own pins: failing here is never the request's.
                let ns = std::fs::File::open(dir.join(kind))
                    .map_err(|e| io::Error::other(format!("opening the {kind} namespace: {e}")))?;
                nix::sched::setns(ns, flag)
                    .map_err(|e| io::Error::other(format!("entering the {kind} namespace: {e}")))?;
            }
            for (key, value) in &sysctls {
                let path = berth_runtime::sysctl::proc_path(key);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
                    .map_err(|e| {
                        // What the request asked for is wrong (no such
                        // sysctl, a bad value, a read-only one): the
                        // caller's error, not berthd's.
                        let kind = match e.raw_os_error() {
                            Some(libc::ENOENT | libc::EINVAL | libc::EACCES | libc::EPERM) => {
                                io::ErrorKind::InvalidInput
                            }
                            _ => e.kind(),
                        };
                        io::Error::new(kind, format!("setting {path}: {e}"))
                    })?;
            }
            Ok(())
        })?
        .join()
        .map_err(|_| io::Error::other("the sysctl thread panicked"))?
}

/// The pod's `/dev/shm` in its `ns` directory (see [`mount_shm`]).
pub const SHM: &str = "shm";

/// Mounts the pod's `/dev/shm` at `dir/shm`: a tmpfs as a container's own
/// (mode 1777, 64 MiB, nosuid, nodev, noexec), which each of the pod's
/// containers binds at its `/dev/shm`, so that POSIX shared memory is
/// shared across the pod as its SysV IPC is (containerd's sandbox shm).
/// [`unpin`] unmounts it.
pub fn mount_shm(dir: &Path) -> io::Result<()> {
    let target = dir.join(SHM);
    std::fs::create_dir(&target)?;
    mount(
        Some("shm"),
        &target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| {
        let _ = std::fs::remove_dir(&target);
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mounting the pod's /dev/shm: {e}"),
        )
    })
}

/// Unmounts and removes the pod's `/dev/shm` ([`mount_shm`]) in `dir`: at
/// the pod's stop, as containerd unmounts a sandbox's shm then (its
/// containers have stopped, and none starts again in a stopped pod). Gone
/// already is fine.
///
/// # Errors
/// It cannot be unmounted or removed.
pub fn release_shm(dir: &Path) -> io::Result<()> {
    unpin_one(&dir.join(SHM))
}

/// Releases what [`pin_new`] pinned in `dir` (the namespaces end with their
/// last process), and the pod's `/dev/shm` ([`mount_shm`]); files already
/// gone are fine, so a half-made or half-removed pod can be removed again.
///
/// # Errors
/// A pin that cannot be unmounted (its file is then kept, to try again).
pub fn unpin(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for kind in PINNED.into_iter().chain(["pid", SHM]) {
        if let Err(e) = unpin_one(&dir.join(kind)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn unpin_one(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (never bound, or unmounted before).
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io::Error::from(e)),
    }
    let removed = match std::fs::remove_file(path) {
        // The shm mount point.
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => std::fs::remove_dir(path),
        r => r,
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The first argument that makes berthd a pod's PID holder
/// ([`pod_pause_main`]).
pub const POD_PAUSE_ARG: &str = "__pod-pause";

/// `berthd __pod-pause <pod dir>`: creates a PID namespace and, in it, its
/// first process (PID 1 there), whose host pid it prints before it exits.
/// That process holds the namespace for the pod's containers and reaps
/// what is orphaned in it, doing nothing else, until it is killed: the
/// pause container of other runtimes, without an image. Run first thing in
/// `main`, while berthd is single-threaded.
pub fn pod_pause_main() -> std::process::ExitCode {
    use nix::unistd::ForkResult;
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        eprintln!("berthd {POD_PAUSE_ARG}: creating the PID namespace: {e}");
        return std::process::ExitCode::from(1);
    }
    // SAFETY: only the main thread exists (this runs before berthd starts
    // any), so the child may run ordinary code after the fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => {
            println!("{child}");
            std::process::ExitCode::SUCCESS
        }
        Ok(ForkResult::Child) => hold(std::env::args_os().nth(2).map(std::path::PathBuf::from)),
        Err(e) => {
            eprintln!("berthd {POD_PAUSE_ARG}: fork: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The holder's life: no descriptor of berthd's (its stdout would keep
/// berthd waiting for the answer's end), a session of its own, no
/// privilege, and reaping until killed.
///
/// It is PID 1 of the pod's containers, so what `/proc/1/root` shows them
/// must be nothing of the host's: it moves into a mount namespace of its
/// own, chrooted into an empty read-only tmpfs (mounted over `dir` there
/// only), before it drops every capability. Not dumpable either, so even a
/// container given CAP_SYS_PTRACE finds nothing through it; signals from
/// the pod do nothing (PID 1 ignores what it has no handler for).
fn hold(dir: Option<std::path::PathBuf>) -> ! {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this process,
            // which nothing else uses.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
    let _ = nix::unistd::setsid();
    if dir.as_deref().is_none_or(|d| empty_root(d).is_err()) {
        // A holder that could show the pod the host's root must not stay.
        std::process::exit(1);
    }
    drop_privileges();
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = chld.thread_block();
    loop {
        let _ = chld.wait();
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Makes an empty, read-only tmpfs mounted over `dir`, in a mount namespace
/// of this process's own, its root, and detaches the old tree: the holder
/// then keeps no copy of the host's mounts (other pods' namespace pins and
/// `/dev/shm` tmpfs would otherwise live as long as it, whatever the host
/// unmounts).
fn empty_root(dir: &Path) -> nix::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0555"),
    )?;
    // pivot_root(".", "."): the old root is stacked under the new one,
    // and unmounting "." then takes it off (no directory is needed for it
    // in the read-only tmpfs).
    nix::unistd::chdir(dir)?;
    nix::unistd::pivot_root(".", ".")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")
}

/// Makes the holder useless to take over: not dumpable, no new
/// privileges, and an empty capability set (permitted, effective,
/// inheritable; the bounding set only matters across an exec, which it
/// never does). Exits if the capabilities cannot be dropped: a holder with
/// root's capabilities must not stay in a pod.
fn drop_privileges() {
    // SAFETY: prctl with integer arguments; results checked below where
    // they matter.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset(2) with a v3 header and its two data words, both
    // living across the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        std::process::exit(1);
    }
}

/// Pins the PID namespace of holder `pid` at `dir/pid`.
pub fn pin_pid(dir: &Path, pid: i32) -> io::Result<()> {
    let target = dir.join("pid");
    let source = format!("/proc/{pid}/ns/pid");
    let ours = std::fs::read_link("/proc/self/ns/pid")?;
    if std::fs::read_link(&source)? == ours {
        return Err(io::Error::other(
            "the pod's holder is in berthd's PID namespace",
        ));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)?;
    mount(
        Some(source.as_str()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(&target);
        io::Error::from(e)
    })
}

/// Kills holder `pid` if it still is the holder of the namespace pinned at
/// `dir/pid` (a pid reused since is left alone); gone already is fine.
pub fn kill_holder(dir: &Path, pid: i32) -> io::Result<()> {
    if pid <= 0 {
        return Ok(());
    }
    let pidfd = match super::pidfd_open(nix::unistd::Pid::from_raw(pid)) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Checked after the pidfd was opened: the pidfd names this very
    // process.
    if holds(dir, pid) {
        super::pidfd_send_signal(&pidfd, libc::SIGKILL)
    } else {
        Ok(())
    }
}

/// Kills every process in the PID namespace pinned at `dir/pid` (its
/// holder first of all, which ends the namespace): for a pod whose holder's
/// pid was never recorded (a crash during RunPodSandbox). Nothing pinned
/// is fine.
pub fn kill_pid_namespace(dir: &Path) -> io::Result<()> {
    if !is_pinned(&dir.join("pid")) {
        return Ok(());
    }
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if holds(dir, pid) {
            if let Ok(fd) = super::pidfd_open(nix::unistd::Pid::from_raw(pid)) {
                // Checked again through the pidfd's process.
                if holds(dir, pid) {
                    let _ = super::pidfd_send_signal(&fd, libc::SIGKILL);
                }
            }
        }
    }
    Ok(())
}

/// Whether process `pid` is in the PID namespace pinned at `dir/pid`.
fn holds(dir: &Path, pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(pinned), Ok(its)) = (
        std::fs::metadata(dir.join("pid")),
        std::fs::metadata(format!("/proc/{pid}/ns/pid")),
    ) else {
        return false;
    };
    its.ino() == pinned.ino() && its.dev() == pinned.dev()
}

/// Whether the holder `pid` of the PID namespace pinned in `dir` still
/// runs (a namespace whose first process ended takes no new process).
pub fn holder_alive(dir: &Path, pid: i32) -> bool {
    pid > 0 && holds(dir, pid)
}

/// Whether `path` is a pinned namespace (an nsfs mount), not the empty file
/// under it: a pod whose pins were lost (a reboot) is not ready.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_namespaces_are_new_named_and_released() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test pins namespaces: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        pin_new(dir.path(), "pod-host").unwrap();
        for kind in PINNED {
            let p = dir.path().join(kind);
            assert!(is_pinned(&p), "{kind} not pinned");
            let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
            let f = std::fs::File::open(&p).unwrap();
            let theirs = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
            .unwrap();
            assert_ne!(ours, theirs, "{kind} is berthd's own namespace");
        }
        // This thread never left its own namespaces.
        assert_ne!(
            nix::unistd::gethostname().unwrap().to_string_lossy(),
            "pod-host"
        );
        unpin(dir.path()).unwrap();
        for kind in PINNED {
            assert!(!dir.path().join(kind).exists(), "{kind} left behind");
        }
        // Again, as a retried removal does.
        unpin(dir.path()).unwrap();
    }
}
