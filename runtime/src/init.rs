//! The container's init process, between fork and exec.
//!
//! Runs in the monitor's forked child (PID 1 of a fresh PID namespace). It
//! enters new namespaces, mounts the container's overlay root and the kernel
//! filesystems in its own mount namespace, waits until it is in its cgroup,
//! pivots into the root, drops privileges and execs the container's command. Any
//! failure is written to the fail pipe as "<exit code>:<message>" and ends the
//! process; a successful exec closes the pipe (it is close-on-exec).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::launch::LaunchSpec;
use crate::sys;
use crate::user;

/// A setup step failed: the shell-style exit code and what went wrong.
struct Failure(i32, String);

trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure(125, format!("{what}: {e}")))
    }
}

/// Sets up and execs the container process; never returns.
///
/// `go` becomes readable once the monitor has moved this process into its
/// cgroup; the slow part of that move (the kernel waits for an RCU grace
/// period, milliseconds on cgroup v1) overlaps with the mount setup here.
pub fn run(spec: &LaunchSpec, out: OwnedFd, err: OwnedFd, fail: OwnedFd, go: OwnedFd) -> ! {
    let Failure(code, message) = match setup_and_exec(spec, &out, &err, go) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let mut fail = fs::File::from(fail);
    let _ = write!(fail, "{code}:{message}");
    sys::exit_now(code)
}

enum Never {}

fn setup_and_exec(
    spec: &LaunchSpec,
    out: &OwnedFd,
    err: &OwnedFd,
    go: OwnedFd,
) -> Result<Never, Failure> {
    SigSet::all().thread_unblock().ctx("unblocking signals")?;
    sys::reset_signal(Signal::SIGPIPE).ctx("resetting SIGPIPE")?;

    // Before anything else: the path is in the host's /proc.
    let mut namespaces =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    match &spec.netns {
        Some(ns) => crate::netns::enter(ns).ctx("entering the network namespace")?,
        None => namespaces |= CloneFlags::CLONE_NEWNET,
    }
    nix::sched::unshare(namespaces).ctx("creating namespaces")?;

    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx("making mounts private")?;
    mount_overlay(spec)?;
    let root = &spec.rootfs.target;
    write_etc(spec).ctx("writing /etc/hostname and /etc/hosts")?;
    mount_kernel_fs(spec).map_err(|Failure(c, m)| Failure(c, format!("mounting: {m}")))?;

    // The cgroup namespace is rooted at the cgroup the process is in when it
    // unshares, so wait until the monitor has moved it.
    let mut byte = [0u8; 1];
    match nix::unistd::read(&go, &mut byte) {
        Ok(1) => {}
        _ => {
            return Err(Failure(
                125,
                "the monitor could not place the container in its cgroup".into(),
            ))
        }
    }
    drop(go);
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).ctx("creating the cgroup namespace")?;
    mount_cgroupfs(spec, &root.join("sys/fs/cgroup"))
        .map_err(|Failure(c, m)| Failure(c, format!("mounting: {m}")))?;

    std::env::set_current_dir(root).ctx("entering the root filesystem")?;
    sys::pivot_root(".", ".").ctx("pivot_root")?;
    // The old root is stacked under the new one; detach it so no host file
    // stays reachable.
    umount2(".", MntFlags::MNT_DETACH).ctx("detaching the old root")?;
    std::env::set_current_dir("/").ctx("chdir /")?;
    mask_paths();

    nix::unistd::sethostname(&spec.hostname).ctx("setting the hostname")?;
    if spec.netns.is_none() {
        sys::loopback_up().ctx("bringing up lo")?;
    }

    let ids = user::resolve(
        &spec.user,
        Path::new("/etc/passwd"),
        Path::new("/etc/group"),
    )
    .map_err(|e| Failure(125, format!("user {:?}: {e}", spec.user)))?;
    let env = user::complete_env(&spec.env, &ids);
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if fs::metadata(cwd).is_err() {
        fs::create_dir_all(cwd).ctx(&format!("creating working directory {cwd}"))?;
    }
    std::env::set_current_dir(cwd).ctx(&format!("working directory {cwd}"))?;

    let program = find_program(&spec.args, &env)?;

    nix::unistd::dup2_stdin(fs::File::open("/dev/null").ctx("opening /dev/null")?).ctx("stdin")?;
    nix::unistd::dup2_stdout(out).ctx("stdout")?;
    nix::unistd::dup2_stderr(err).ctx("stderr")?;
    sys::cloexec_from(3).ctx("closing inherited files")?;

    crate::caps::drop_to_default().ctx("dropping capabilities")?;
    nix::unistd::setgroups(&ids.groups).ctx("setgroups")?;
    nix::unistd::setgid(ids.gid).ctx("setgid")?;
    nix::unistd::setuid(ids.uid).ctx("setuid")?;
    sys::set_no_new_privs().ctx("no_new_privs")?;

    let args: Vec<CString> = spec
        .args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .ctx("argument with a NUL byte")?;
    let envs: Vec<CString> = env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .ctx("environment with a NUL byte")?;
    let errno = sys::execve(&program, &args, &envs);
    let code = match errno {
        nix::errno::Errno::ENOENT => 127,
        _ => 126,
    };
    Err(Failure(
        code,
        format!("exec {}: {}", spec.args[0], errno.desc()),
    ))
}

/// Mounts the overlay root: the image's layers (shared, read-only) under the
/// container's own upper dir. It lives in this mount namespace only and goes
/// away with it.
fn mount_overlay(spec: &LaunchSpec) -> Result<(), Failure> {
    let fs = &spec.rootfs;
    if fs.layers.is_empty() {
        return Err(Failure(125, "the image has no layers".into()));
    }
    let lower: Vec<String> = fs
        .layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().replace(':', "\\:"))
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        fs.upper.display(),
        fs.work.display()
    );
    mount(
        Some("overlay"),
        &fs.target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .ctx(&format!(
        "mounting the overlay root at {}",
        fs.target.display()
    ))
}

/// Resolves the command like a shell does: as a path when it has a '/',
/// otherwise through PATH, inside the container's root.
fn find_program(args: &[String], env: &[String]) -> Result<CString, Failure> {
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
        let candidate = PathBuf::from(dir).join(arg0);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return to_c(&candidate.to_string_lossy());
            }
        }
    }
    Err(Failure(
        127,
        format!("exec {arg0}: executable file not found in $PATH"),
    ))
}

fn write_etc(spec: &LaunchSpec) -> std::io::Result<()> {
    let etc = spec.rootfs.target.join("etc");
    if fs::symlink_metadata(&etc)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        fs::write(etc.join("hostname"), format!("{}\n", spec.hostname))?;
        fs::write(
            etc.join("hosts"),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
                spec.hostname
            ),
        )?;
    }
    Ok(())
}

/// Creates `rel` under the root as a directory unless it exists. The root is
/// an overlay with a private upper dir, so this never touches the image.
fn target(root: &Path, rel: &str) -> Result<PathBuf, Failure> {
    let p = root.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(Failure(
            125,
            format!("/{rel} in the image is not a directory"),
        )),
        Err(_) => {
            fs::create_dir_all(&p).ctx(&format!("creating /{rel}"))?;
            Ok(p)
        }
    }
}

fn mnt(
    src: &str,
    dst: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Failure> {
    mount(Some(src), dst, Some(fstype), flags, data).ctx(&format!("{fstype} on {}", dst.display()))
}

fn mount_kernel_fs(spec: &LaunchSpec) -> Result<(), Failure> {
    let root = &spec.rootfs.target;
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mnt(
        "proc",
        &target(root, "proc")?,
        "proc",
        nosuid_noexec_nodev,
        None,
    )?;

    let dev = target(root, "dev")?;
    mnt(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .ctx(&format!("creating /dev/{name}"))?;
        // mknod honours the umask; devices must be usable by any user.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).ctx("chmod device")?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts).ctx("creating /dev/pts")?;
    mnt(
        "devpts",
        &pts,
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    fs::create_dir(&shm).ctx("creating /dev/shm")?;
    mnt(
        "shm",
        &shm,
        "tmpfs",
        nosuid_noexec_nodev,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = dev.join("mqueue");
    fs::create_dir(&mqueue).ctx("creating /dev/mqueue")?;
    mnt("mqueue", &mqueue, "mqueue", nosuid_noexec_nodev, None)?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        symlink(to, dev.join(link)).ctx(&format!("creating /dev/{link}"))?;
    }

    let sysfs = target(root, "sys")?;
    mnt(
        "sysfs",
        &sysfs,
        "sysfs",
        nosuid_noexec_nodev | MsFlags::MS_RDONLY,
        None,
    )?;
    Ok(())
}

/// Shows the container its own cgroup at /sys/fs/cgroup, read-only. The
/// cgroup namespace makes the container's cgroup the root of what it sees.
fn mount_cgroupfs(spec: &LaunchSpec, dst: &Path) -> Result<(), Failure> {
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY;
    if spec.cgroup_version == 2 {
        return mnt("cgroup2", dst, "cgroup2", ro, None);
    }
    mnt(
        "tmpfs",
        dst,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        Some("mode=755"),
    )?;
    for ctrl in &spec.cgroup_v1_controllers {
        let d = dst.join(ctrl);
        fs::create_dir(&d).ctx(&format!("creating /sys/fs/cgroup/{ctrl}"))?;
        mnt("cgroup", &d, "cgroup", ro, Some(ctrl))?;
    }
    mount(
        None::<&str>,
        dst,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro,
        None::<&str>,
    )
    .ctx("remounting /sys/fs/cgroup read-only")
}

/// Hides kernel interfaces a container has no business with, as Docker does:
/// files covered by /dev/null, directories by an empty read-only tmpfs, and
/// some left visible but read-only. Paths a kernel lacks are skipped.
fn mask_paths() {
    for f in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
    ] {
        if fs::metadata(f).map(|m| m.is_file()).unwrap_or(false) {
            let _ = mount(
                Some("/dev/null"),
                f,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            );
        }
    }
    for d in ["/proc/acpi", "/proc/scsi", "/sys/firmware"] {
        if fs::metadata(d).map(|m| m.is_dir()).unwrap_or(false) {
            let _ = mount(
                Some("tmpfs"),
                d,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        if fs::metadata(p).is_ok()
            && mount(
                Some(p),
                p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .is_ok()
        {
            let _ = mount(
                None::<&str>,
                p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            );
        }
    }
}
