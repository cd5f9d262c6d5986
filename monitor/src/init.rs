//! The container's init process, between fork and exec.
//!
//! Runs in the monitor's forked child (PID 1 of a fresh PID namespace). It
//! enters new namespaces, mounts the container's overlay root and the kernel
//! filesystems in its own mount namespace, waits until it is in its cgroup,
//! pivots into the root, drops privileges and execs the container's command. Any
//! failure is written to the fail pipe as "<exit code>:<message>" and ends the
//! process; a successful exec closes the pipe (it is close-on-exec).

use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, CStr};

use berth_runtime::launch::LaunchSpec;
use berth_runtime::user;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use crate::io::{self, Context};
use crate::sys;

/// A setup step failed: the shell-style exit code and what went wrong.
struct Failure(i32, String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure(125, e.0)
    }
}

type Step<T = ()> = Result<T, Failure>;

/// `MS_REC`, which rustix keeps among the propagation flags.
const MS_REC: MountFlags = MountFlags::from_bits_retain(0x4000);

/// Sets up and execs the container process; never returns.
///
/// `go` becomes readable once the monitor has moved this process into its
/// cgroup; the slow part of that move (the kernel waits for an RCU grace
/// period, milliseconds on cgroup v1) overlaps with the mount setup here.
pub fn run(spec: &LaunchSpec, out: OwnedFd, err: OwnedFd, fail: OwnedFd, go: OwnedFd) -> ! {
    // A panic from here on is a failed start too, not a silent exit.
    crate::rt::report_panics_to(&fail);
    let Err(Failure(code, message)) = setup_and_exec(spec, &out, &err, go);
    let _ = io::write_all(&fail, format!("{code}:{message}").as_bytes());
    sys::exit(code)
}

enum Never {}

fn setup_and_exec(spec: &LaunchSpec, out: &OwnedFd, err: &OwnedFd, go: OwnedFd) -> Step<Never> {
    sys::unblock_all_signals().ctx("unblocking signals")?;
    // Ignored signals stay ignored across exec: berthd run under nohup
    // (SIGHUP) or as a background job of a script (SIGINT, SIGQUIT) must not
    // hand that on, nor the monitor its ignored SIGPIPE.
    for signal in 1..=64 {
        match sys::default_signal(signal) {
            // SIGKILL and SIGSTOP, and numbers this kernel lacks.
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => {
                return Err(e)
                    .ctx(format!("resetting signal {signal}"))
                    .map_err(Failure::from)
            }
        }
    }

    // Before anything else: the path is in the host's /proc.
    let mut namespaces = UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
    match &spec.netns {
        Some(ns) => enter_netns(ns).ctx("entering the network namespace")?,
        None => namespaces |= UnshareFlags::NEWNET,
    }
    // SAFETY: none of these flags unshares the file table or the
    // filesystem context (CLONE_FILES, CLONE_FS), which could invalidate
    // what this process holds.
    unsafe { rustix::thread::unshare_unsafe(namespaces) }.ctx("creating namespaces")?;

    // Nothing we mount may propagate back to the host.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .ctx("making mounts private")?;
    mount_overlay(spec)?;
    let root = spec.rootfs.target.as_str();
    write_etc(spec).ctx("writing /etc/hostname and /etc/hosts")?;
    mount_kernel_fs(root).map_err(|Failure(c, m)| Failure(c, format!("mounting: {m}")))?;

    // The cgroup namespace is rooted at the cgroup the process is in when it
    // unshares, so wait until the monitor has moved it.
    let mut byte = [0u8; 1];
    if !matches!(rustix::io::read(&go, &mut byte), Ok(1)) {
        return Err(Failure(
            125,
            "the monitor could not place the container in its cgroup".into(),
        ));
    }
    drop(go);
    // SAFETY: as above; a cgroup namespace affects no held resource.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) }
        .ctx("creating the cgroup namespace")?;
    mount_cgroupfs(spec, &format!("{root}/sys/fs/cgroup"))
        .map_err(|Failure(c, m)| Failure(c, format!("mounting: {m}")))?;

    rustix::process::chdir(root).ctx("entering the root filesystem")?;
    rustix::process::pivot_root(".", ".").ctx("pivot_root")?;
    // The old root is stacked under the new one; detach it so no host file
    // stays reachable.
    rustix::mount::unmount(".", UnmountFlags::DETACH).ctx("detaching the old root")?;
    rustix::process::chdir("/").ctx("chdir /")?;
    mask_paths();

    rustix::system::sethostname(spec.hostname.as_bytes()).ctx("setting the hostname")?;
    if spec.netns.is_none() {
        sys::loopback_up().ctx("bringing up lo")?;
    }

    let ids = user::resolve(
        &spec.user,
        &account_file("/etc/passwd")?,
        &account_file("/etc/group")?,
    )
    .map_err(|e| Failure(125, format!("user {:?}: {e}", spec.user)))?;
    let env = user::complete_env(&spec.env, &ids);
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if rustix::fs::stat(cwd).is_err() {
        create_dir_all(cwd).ctx(format!("creating working directory {cwd}"))?;
    }
    rustix::process::chdir(cwd).ctx(format!("working directory {cwd}"))?;

    let program = find_program(&spec.args, &env)?;

    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening /dev/null")?;
    rustix::stdio::dup2_stdin(&null).ctx("stdin")?;
    rustix::stdio::dup2_stdout(out).ctx("stdout")?;
    rustix::stdio::dup2_stderr(err).ctx("stderr")?;
    sys::cloexec_from(3).ctx("closing inherited files")?;

    crate::caps::drop_to_default()?;
    let groups: Vec<rustix::process::Gid> = ids
        .groups
        .iter()
        .map(|&g| rustix::process::Gid::from_raw(g))
        .collect();
    rustix::thread::set_thread_groups(&groups).ctx("setgroups")?;
    rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(ids.gid)).ctx("setgid")?;
    rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(ids.uid)).ctx("setuid")?;
    rustix::thread::set_no_new_privs(true).ctx("no_new_privs")?;

    let c_strings = |items: &[String], what: &str| -> Step<Vec<CString>> {
        items
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| Failure(125, format!("{what} with a NUL byte")))
    };
    let args = c_strings(&spec.args, "argument")?;
    let envs = c_strings(&env, "environment")?;
    let pointers = |v: &[CString]| -> Vec<*const c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(core::iter::once(core::ptr::null()))
            .collect()
    };
    let errno = sys::execve(&program, &pointers(&args), &pointers(&envs));
    let code = if errno == Errno::NOENT { 127 } else { 126 };
    Err(Failure(
        code,
        format!("exec {}: {}", spec.args[0], io::describe(errno)),
    ))
}

/// The text of the image's /etc/passwd or /etc/group, empty when it has
/// none. The image decides what is there: a FIFO would block this process
/// for good and a device like /dev/zero never ends, so only a regular file
/// of a sane size is read.
fn account_file(path: &str) -> Step<String> {
    const MAX: u64 = 4 << 20;
    let file = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => f,
        Err(_) => return Ok(String::new()),
    };
    let st = rustix::fs::fstat(&file).ctx(path)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(String::new());
    }
    if st.st_size as u64 > MAX {
        return Err(Failure(
            125,
            format!("{path} is larger than {} MiB", MAX >> 20),
        ));
    }
    let bytes = io::read_to_end(&file).ctx(path)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Moves this process into the network namespace at `path` (one of
/// berthd's spares, reached through `/proc/<pid>/fd/<n>` of berthd).
fn enter_netns(path: &str) -> Result<(), Errno> {
    let ns = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
}

/// Mounts the overlay root: the image's layers (shared, read-only) under the
/// container's own upper dir. It lives in this mount namespace only and goes
/// away with it.
fn mount_overlay(spec: &LaunchSpec) -> Step {
    let fs = &spec.rootfs;
    if fs.layers.is_empty() {
        return Err(Failure(125, "the image has no layers".into()));
    }
    let lower: Vec<String> = fs
        .layers
        .iter()
        .rev()
        .map(|p| p.replace(':', "\\:"))
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        fs.upper,
        fs.work
    );
    let data =
        CString::new(opts.as_bytes()).map_err(|_| Failure(125, "NUL in a layer path".into()))?;
    // nodev: with no device cgroup, a device node in the image, or one
    // root in the container makes (it keeps CAP_MKNOD, as with Docker),
    // must not open the host's device.
    rustix::mount::mount(
        "overlay",
        fs.target.as_str(),
        "overlay",
        MountFlags::NODEV,
        data.as_c_str(),
    )
    .ctx(format!("mounting the overlay root at {}", fs.target))
    .map_err(Failure::from)
}

/// Resolves the command like a shell does: as a path when it has a '/',
/// otherwise through PATH, inside the container's root.
fn find_program(args: &[String], env: &[String]) -> Step<CString> {
    let Some(arg0) = args.first() else {
        return Err(Failure(
            125,
            "no command given and the image has none".into(),
        ));
    };
    let to_c = |p: &str| CString::new(p).map_err(|_| Failure(125, "NUL in command".into()));
    if arg0.contains('/') {
        return to_c(arg0);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(user::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{arg0}", dir.trim_end_matches('/'));
        if let Ok(st) = rustix::fs::stat(candidate.as_str()) {
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_mode & 0o111 != 0
            {
                return to_c(&candidate);
            }
        }
    }
    Err(Failure(
        127,
        format!("exec {arg0}: executable file not found in $PATH"),
    ))
}

/// Gives the container its own /etc/hostname and /etc/hosts, in its upper
/// layer. This runs before `pivot_root`, where an absolute symlink from the
/// image would point into the host: an image's symlink at either name is
/// replaced, never followed, and /etc itself must be a real directory.
fn write_etc(spec: &LaunchSpec) -> Result<(), Errno> {
    let etc = match rustix::fs::open(
        format!("{}/etc", spec.rootfs.target).as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // No /etc (or a symlink in its place): nothing to give.
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    for (name, content) in [
        ("hostname", format!("{}\n", spec.hostname)),
        ("hosts", hosts),
    ] {
        match rustix::fs::unlinkat(&etc, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let file = rustix::fs::openat(
            &etc,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        io::write_all(&file, content.as_bytes())?;
    }
    Ok(())
}

/// `mkdir -p`: creates `path` and its missing parents (mode 0755).
fn create_dir_all(path: &str) -> Result<(), Errno> {
    let mut end = 0;
    while end < path.len() {
        end = path[end + 1..]
            .find('/')
            .map_or(path.len(), |i| end + 1 + i);
        match rustix::fs::mkdir(&path[..end], Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    if rustix::fs::stat(path)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    {
        Ok(())
    } else {
        Err(Errno::NOTDIR)
    }
}

/// Creates `rel` under the root as a directory unless it exists. The root is
/// an overlay with a private upper dir, so this never touches the image.
fn target(root: &str, rel: &str) -> Step<String> {
    let p = format!("{root}/{rel}");
    match rustix::fs::lstat(p.as_str()) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(p),
        Ok(_) => Err(Failure(
            125,
            format!("/{rel} in the image is not a directory"),
        )),
        Err(_) => {
            create_dir_all(&p).ctx(format!("creating /{rel}"))?;
            Ok(p)
        }
    }
}

fn mnt(src: &str, dst: &str, fstype: &str, flags: MountFlags, data: Option<&str>) -> Step {
    let data = data
        .map(|d| CString::new(d.as_bytes()))
        .transpose()
        .map_err(|_| Failure(125, format!("NUL in the options for {dst}")))?;
    rustix::mount::mount(src, dst, fstype, flags, data.as_deref())
        .ctx(format!("{fstype} on {dst}"))
        .map_err(Failure::from)
}

fn mkdir(path: &str, what: &str) -> Step {
    rustix::fs::mkdir(path, Mode::from_raw_mode(0o755))
        .ctx(format!("creating {what}"))
        .map_err(Failure::from)
}

fn mount_kernel_fs(root: &str) -> Step {
    let nosuid_noexec_nodev = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    mnt(
        "proc",
        &target(root, "proc")?,
        "proc",
        nosuid_noexec_nodev,
        None,
    )?;

    let dev = target(root, "dev")?;
    // nodev, like the root: nodes made in /dev cannot be opened. The
    // standard ones are the host's, each bound on an empty file: a bind
    // mount has flags of its own, so they work.
    mnt(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = format!("{dev}/{name}");
        rustix::fs::open(
            p.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .ctx(format!("creating /dev/{name}"))?;
        rustix::mount::mount_bind(format!("/dev/{name}").as_str(), p.as_str())
            .ctx(format!("binding the host's /dev/{name}"))?;
    }
    let pts = format!("{dev}/pts");
    mkdir(&pts, "/dev/pts")?;
    mnt(
        "devpts",
        &pts,
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = format!("{dev}/shm");
    mkdir(&shm, "/dev/shm")?;
    mnt(
        "shm",
        &shm,
        "tmpfs",
        nosuid_noexec_nodev,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = format!("{dev}/mqueue");
    mkdir(&mqueue, "/dev/mqueue")?;
    mnt("mqueue", &mqueue, "mqueue", nosuid_noexec_nodev, None)?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        rustix::fs::symlink(to, format!("{dev}/{link}").as_str())
            .ctx(format!("creating /dev/{link}"))?;
    }

    let sysfs = target(root, "sys")?;
    mnt(
        "sysfs",
        &sysfs,
        "sysfs",
        nosuid_noexec_nodev | MountFlags::RDONLY,
        None,
    )
}

/// Shows the container its own cgroup at /sys/fs/cgroup, read-only. The
/// cgroup namespace makes the container's cgroup the root of what it sees.
fn mount_cgroupfs(spec: &LaunchSpec, dst: &str) -> Step {
    let ro = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV | MountFlags::RDONLY;
    if spec.cgroup_version == 2 {
        return mnt("cgroup2", dst, "cgroup2", ro, None);
    }
    mnt(
        "tmpfs",
        dst,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV,
        Some("mode=755"),
    )?;
    for ctrl in &spec.cgroup_v1_controllers {
        let d = format!("{dst}/{ctrl}");
        mkdir(&d, &format!("/sys/fs/cgroup/{ctrl}"))?;
        mnt("cgroup", &d, "cgroup", ro, Some(ctrl))?;
    }
    rustix::mount::mount_remount(dst, MountFlags::BIND | ro, "")
        .ctx("remounting /sys/fs/cgroup read-only")
        .map_err(Failure::from)
}

/// Hides kernel interfaces a container has no business with, as Docker does:
/// files covered by /dev/null, directories by an empty read-only tmpfs, and
/// some left visible but read-only. Paths a kernel lacks are skipped.
fn mask_paths() {
    let kind = |p: &str| {
        rustix::fs::stat(p)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode))
    };
    for f in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
    ] {
        if kind(f) == Some(FileType::RegularFile) {
            let _ = rustix::mount::mount_bind("/dev/null", f);
        }
    }
    for d in ["/proc/acpi", "/proc/scsi", "/sys/firmware"] {
        if kind(d) == Some(FileType::Directory) {
            let _ = rustix::mount::mount("tmpfs", d, "tmpfs", MountFlags::RDONLY, None::<&CStr>);
        }
    }
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        if kind(p).is_some() && rustix::mount::mount_bind_recursive(p, p).is_ok() {
            let _ =
                rustix::mount::mount_remount(p, MountFlags::BIND | MountFlags::RDONLY | MS_REC, "");
        }
    }
}
