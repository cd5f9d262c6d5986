//! The container's init process, between fork and exec.
//!
//! Runs in the monitor's forked child (PID 1 of a fresh PID namespace). It
//! carries out the container's setup plan (`berth_runtime::plan`, executed
//! by [`crate::setup`]): new namespaces, the overlay root and the kernel
//! filesystems in its own mount namespace, its cgroup, `pivot_root`, the
//! masks. Then it resolves the user, drops privileges, installs the
//! container's seccomp filters ([`crate::confine`]) and execs the
//! container's command. Any
//! failure is written to the fail pipe as "<exit code>:<message>" and ends the
//! process; a successful exec closes the pipe (it is close-on-exec).

use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_char;

use berth_runtime::launch::LaunchSpec;
use berth_runtime::{plan, user};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::io::{self, Context};
use crate::sys;

/// A setup step failed: the shell-style exit code and what went wrong.
pub struct Failure(pub i32, pub String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure(125, e.0)
    }
}

/// The outcome of a setup step.
pub type Outcome<T = ()> = Result<T, Failure>;

/// Sets up and execs the container process; never returns.
///
/// `go` becomes readable once the monitor has moved this process into its
/// cgroup; the slow part of that move (the kernel waits for an RCU grace
/// period, milliseconds on cgroup v1) overlaps with the mount setup here.
///
/// `handoff` (`--userns auto`) is where the monitor sends the container's
/// root once it has written the user namespace's maps.
pub fn run(
    spec: &LaunchSpec,
    stdio: InitStdio,
    fail: OwnedFd,
    go: OwnedFd,
    handoff: Option<OwnedFd>,
) -> ! {
    // A panic from here on is a failed start too, not a silent exit.
    crate::rt::report_panics_to(&fail);
    let Err(Failure(code, message)) = setup_and_exec(spec, &stdio, &fail, go, handoff);
    let _ = io::write_all(&fail, format!("{code}:{message}").as_bytes());
    sys::exit(code)
}

/// What never comes: [`become_and_exec`] returns only failures.
pub enum Never {}

/// The init's ends of what the monitor made for the container's stdio.
pub struct InitStdio {
    /// Write end of the stdout pipe.
    pub out: OwnedFd,
    /// Write end of the stderr pipe.
    pub err: OwnedFd,
    /// Read end of the stdin pipe (an open stdin without a terminal).
    pub stdin: Option<OwnedFd>,
    /// With a terminal: where the init sends the master of the pty it
    /// opens in the container's devpts, once that is mounted; its slave
    /// becomes stdin, stdout and stderr.
    pub terminal: Option<OwnedFd>,
}

fn setup_and_exec(
    spec: &LaunchSpec,
    io: &InitStdio,
    fail: &OwnedFd,
    go: OwnedFd,
    handoff: Option<OwnedFd>,
) -> Outcome<Never> {
    reset_process(spec.oom_score_adj)?;

    // A host path: read before pivot_root, installed last before exec.
    let seccomp = spec
        .seccomp
        .as_deref()
        .map(crate::confine::load)
        .transpose()?;

    let steps = plan::container_setup(spec).map_err(|e| Failure(125, format!("{e}")))?;
    crate::setup::execute(&steps, &spec.rootfs.target, go, handoff)?;

    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening /dev/null")?;
    let command = Command {
        args: &spec.args,
        env: &spec.env,
        user: &spec.user,
        cwd: &spec.cwd,
        create_cwd: true,
        capabilities: spec.capabilities,
        groups: &spec.groups,
        no_new_privs: !spec.allow_privilege_escalation,
        strict_groups: spec.strict_groups,
    };
    // Opened in the container's devpts (mounted by now), as for an exec;
    // the monitor keeps the master, which outlives berthd.
    let slave = match &io.terminal {
        Some(sock) => {
            let (master, slave) = crate::pty::open(spec.terminal_size)?;
            crate::fdpass::send_fd(sock.as_fd(), &master).ctx("handing the terminal over")?;
            bind_console(&slave)?;
            Some(slave)
        }
        None => None,
    };
    let stdio = match (&slave, &io.stdin) {
        (Some(tty), _) => Stdio {
            stdin: tty.as_fd(),
            stdout: tty.as_fd(),
            stderr: tty.as_fd(),
            terminal: true,
        },
        (None, stdin) => Stdio {
            stdin: stdin.as_ref().map_or(null.as_fd(), |i| i.as_fd()),
            stdout: io.out.as_fd(),
            stderr: io.err.as_fd(),
            terminal: false,
        },
    };
    become_and_exec(&command, stdio, seccomp.as_ref(), fail.as_fd())
}

/// Makes the terminal the container's /dev/console too, as runc does: a
/// bind mount of it on an empty file in the container's own /dev (berth's
/// tmpfs, so nothing of the image is covered).
fn bind_console(slave: &OwnedFd) -> Outcome {
    const CONSOLE: &str = "/dev/console";
    match rustix::fs::open(
        CONSOLE,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(_) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e).ctx(CONSOLE).map_err(Failure::from),
    }
    let source = format!("/proc/self/fd/{}", slave.as_raw_fd());
    rustix::mount::mount_bind(source.as_str(), CONSOLE)
        .ctx("mounting the terminal on /dev/console")
        .map_err(Failure::from)
}

/// Leaves nothing of berthd's settings to the process: unblocks and resets
/// every signal, sets its OOM score, resource limits and session keyring
/// to a container's. Shared by the init and exec processes.
pub fn reset_process(oom_score_adj: Option<i32>) -> Outcome {
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

    // Nothing of berthd's passes on: its OOM protection, its limits, its
    // session keyring.
    crate::confine::oom_score_adj(oom_score_adj)?;
    crate::confine::default_rlimits()?;
    crate::confine::fresh_session_keyring()
}

/// What runs in the container, and as whom.
pub struct Command<'a> {
    /// argv.
    pub args: &'a [String],
    /// The environment (PATH and HOME are added when missing).
    pub env: &'a [String],
    /// User spec, resolved in the container's /etc/passwd and /etc/group.
    pub user: &'a str,
    /// Working directory; empty: "/".
    pub cwd: &'a str,
    /// Create the working directory when it is missing (the init does, as
    /// Docker's does; an exec's must exist).
    pub create_cwd: bool,
    /// Capabilities the process keeps (bit N: capability N).
    pub capabilities: u64,
    /// Supplementary groups added to the user's (gids or group names).
    pub groups: &'a [String],
    /// Set `no_new_privs` (a setuid program then raises nothing).
    pub no_new_privs: bool,
    /// Only the primary group and `groups`, not the user's memberships.
    pub strict_groups: bool,
}

/// The process's standard files.
pub struct Stdio<'a> {
    /// Its stdin.
    pub stdin: BorrowedFd<'a>,
    /// Its stdout.
    pub stdout: BorrowedFd<'a>,
    /// Its stderr.
    pub stderr: BorrowedFd<'a>,
    /// They are one terminal: it is made the controlling terminal of a new
    /// session and given to the user.
    pub terminal: bool,
}

/// Inside the container's root (its mount namespace entered): resolves the
/// user, enters the working directory, sets up stdio, drops privileges to
/// the user's and the container's capabilities, sets `no_new_privs`,
/// installs the seccomp filters last (without `no_new_privs`: before the
/// privileges are dropped, as a filter then needs `CAP_SYS_ADMIN`), and
/// execs. Shared by the container's
/// init and exec processes, so both confine their process the same way.
pub fn become_and_exec(
    command: &Command<'_>,
    stdio: Stdio<'_>,
    seccomp: Option<&crate::confine::Seccomp>,
    fail: BorrowedFd<'_>,
) -> Outcome<Never> {
    // Before any path of the container is resolved (its /etc/passwd, the
    // working directory, PATH), the process holds its stdio and the fail
    // pipe only: a host descriptor left open (a cgroup directory, a pidfd,
    // berthd's socket) would let a working directory or PATH entry of
    // /proc/self/fd/N/.. lead out of the root (runc's CVE-2024-21626).
    rustix::stdio::dup2_stdin(stdio.stdin).ctx("stdin")?;
    rustix::stdio::dup2_stdout(stdio.stdout).ctx("stdout")?;
    rustix::stdio::dup2_stderr(stdio.stderr).ctx("stderr")?;
    let fail_fd = u32::try_from(fail.as_raw_fd()).unwrap_or(0);
    sys::close_from_except(3, fail_fd).ctx("closing inherited files")?;
    let terminal = stdio.terminal.then(sys::stdin);

    let groups = account_file("/etc/group")?;
    let mut ids = user::resolve(command.user, &account_file("/etc/passwd")?, &groups)
        .map_err(|e| Failure(125, format!("user {:?}: {e}", command.user)))?;
    if command.strict_groups {
        user::only_primary_group(&mut ids);
    }
    user::add_groups(&mut ids, command.groups, &groups)
        .map_err(|e| Failure(125, format!("added groups: {e}")))?;
    let env = user::complete_env(command.env, &ids);
    let cwd = if command.cwd.is_empty() {
        "/"
    } else {
        command.cwd
    };
    if command.create_cwd && rustix::fs::stat(cwd).is_err() {
        crate::setup::create_dir_all(cwd).ctx(format!("creating working directory {cwd}"))?;
    }
    rustix::process::chdir(cwd).ctx(format!("working directory {cwd}"))?;
    // A second guard: the kernel names a directory outside the process's
    // root "(unreachable)...", or refuses to name it.
    match rustix::process::getcwd(Vec::new()) {
        Ok(here) if here.to_bytes().starts_with(b"/") => {}
        _ => {
            return Err(Failure(
                125,
                format!("working directory {cwd} is outside the container"),
            ))
        }
    }

    let program = find_program(command.args, &env)?;

    if let Some(tty) = terminal {
        rustix::process::setsid().ctx("setsid")?;
        rustix::process::ioctl_tiocsctty(tty).ctx("making the terminal controlling")?;
        // The user may then reopen its /dev/pts node, as on a login. In a
        // user namespace the node belongs to an unmapped id and cannot be
        // given away; the open terminal works regardless.
        match rustix::fs::fchown(
            tty,
            Some(rustix::process::Uid::from_raw(ids.uid)),
            Some(rustix::process::Gid::from_raw(ids.gid)),
        ) {
            Ok(()) | Err(Errno::PERM | Errno::INVAL) => {}
            Err(e) => {
                return Err(e)
                    .ctx("giving the terminal to the user")
                    .map_err(Failure::from)
            }
        }
    }
    // Without no_new_privs a filter needs CAP_SYS_ADMIN, held only until
    // the capabilities are dropped: it goes in now (runc's order), and
    // what follows must pass it (Docker's profile and berth's allow it).
    let early = !command.no_new_privs;
    if let (true, Some(filters)) = (early, seccomp) {
        crate::confine::install(filters)?;
    }
    let caps = crate::caps::limit_bounding(command.capabilities)?;
    let groups: Vec<rustix::process::Gid> = ids
        .groups
        .iter()
        .map(|&g| rustix::process::Gid::from_raw(g))
        .collect();
    rustix::thread::set_thread_groups(&groups).ctx("setgroups")?;
    rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(ids.gid)).ctx("setgid")?;
    rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(ids.uid)).ctx("setuid")?;
    crate::caps::apply(caps, ids.uid == 0)?;
    if command.no_new_privs {
        rustix::thread::set_no_new_privs(true).ctx("no_new_privs")?;
    }

    let c_strings = |items: &[String], what: &str| -> Outcome<Vec<CString>> {
        items
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| Failure(125, format!("{what} with a NUL byte")))
    };
    let args = c_strings(command.args, "argument")?;
    let envs = c_strings(&env, "environment")?;
    let pointers = |v: &[CString]| -> Vec<*const c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(core::iter::once(core::ptr::null()))
            .collect()
    };
    let (argv, envp) = (pointers(&args), pointers(&envs));
    // Last: nothing of this setup is filtered, only the exec and what the
    // container does (a profile must allow execve, as Docker's does).
    if let (false, Some(filters)) = (early, seccomp) {
        crate::confine::install(filters)?;
    }
    let errno = sys::execve(&program, &argv, &envp);
    let code = if errno == Errno::NOENT { 127 } else { 126 };
    Err(Failure(
        code,
        format!("exec {}: {}", command.args[0], io::describe(errno)),
    ))
}

/// The text of the image's /etc/passwd or /etc/group, empty when it has
/// none. The image decides what is there: a FIFO would block this process
/// for good and a device like /dev/zero never ends, so only a regular file
/// of a sane size is read.
fn account_file(path: &str) -> Outcome<String> {
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

/// Resolves the command like a shell does: as a path when it has a '/',
/// otherwise through PATH, inside the container's root.
fn find_program(args: &[String], env: &[String]) -> Outcome<CString> {
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
