//! The per-container monitor process (`berth-monitor __monitor [<dir>]`).
//!
//! Single-threaded by construction (a fresh exec that never starts a
//! thread), so forking is safe. It leaves berthd's session, reads its
//! [`LaunchSpec`] from stdin, starts the container's init as its own child in
//! a new PID namespace (directly inside the container's cgroup on cgroup v2),
//! copies the container's stdout/stderr into the log file, reaps the
//! container, records the exit and reports it on its stdout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cri_log::{LogWriter, Stream};
use crate::launch::{
    CgroupPlacement, ExitRecord, LaunchSpec, MonitorReport, RunningRecord, MONITOR_LOG,
    RUNNING_FILE,
};
use crate::sys::{self, Forked};

/// Runs the monitor; never returns. `argv_dir` is the container directory
/// when berthd started this monitor for one container: its stderr is then
/// that container's monitor log already. A monitor started ahead of time
/// (`None`) learns the directory from its launch spec.
pub fn main(argv_dir: Option<&Path>) -> ! {
    let code = match run(argv_dir.is_none()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth monitor: {e}");
            report(&MonitorReport::Failed {
                message: e.to_string(),
                exit_code: 125,
            });
            1
        }
    };
    sys::exit_now(code)
}

fn report(r: &MonitorReport) {
    if let Ok(mut line) = serde_json::to_vec(r) {
        line.push(b'\n');
        // berthd may be gone (restarting); the exit file is the durable copy.
        let _ = io::stdout().write_all(&line);
        let _ = io::stdout().flush();
    }
}

fn run(spare: bool) -> io::Result<()> {
    // A session of its own: a signal to berthd's process group (Ctrl-C on
    // the terminal berthd runs in) must not reach the monitors, which outlive
    // berthd by design.
    nix::unistd::setsid()?;
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input)?;
    let spec: LaunchSpec = serde_json::from_slice(&input)
        .map_err(|e| io::Error::other(format!("bad launch spec: {e}")))?;
    let dir = spec.dir.as_path();
    if spare {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(MONITOR_LOG))?;
        nix::unistd::dup2_stderr(log)?;
    }
    // berthd tells this monitor from a process that reused its pid by it.
    std::env::set_current_dir(dir)?;

    // Container processes are children of this one; the first is PID 1 there.
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)?;

    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (fail_r, fail_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;

    // SIGCHLD is taken through a signalfd, so it must be blocked first; the
    // child unblocks it before exec.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;

    let (forked, placed) = create_init(&spec.cgroup)?;
    let child = match forked {
        Forked::Child => {
            drop(out_r);
            drop(err_r);
            drop(fail_r);
            drop(go_w);
            crate::init::run(&spec, out_w, err_w, fail_w, go_r)
        }
        Forked::Parent(pid) => pid,
    };
    drop(out_w);
    drop(err_w);
    drop(fail_w);
    drop(go_r);

    if !placed {
        // Move the child into its cgroup while it sets up its mounts; it
        // waits for `go` before it enters its cgroup namespace and execs.
        if let Err(message) = join_cgroup(child, &spec.cgroup) {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            eprintln!("container {} failed to start: {message}", spec.id);
            report(&MonitorReport::Failed {
                message,
                exit_code: 125,
            });
            return Ok(());
        }
    }
    nix::unistd::write(&go_w, b"g")?;
    drop(go_w);

    let mut failure = String::new();
    File::from(fail_r).read_to_string(&mut failure)?;
    if !failure.is_empty() {
        let status = waitpid(child, None)?;
        let (message, exit_code) = match failure.split_once(':') {
            Some((code, msg)) => (msg.to_string(), code.parse().unwrap_or(125)),
            None => (failure, 125),
        };
        eprintln!(
            "container {} failed to start: {message} ({status:?})",
            spec.id
        );
        report(&MonitorReport::Failed { message, exit_code });
        return Ok(());
    }
    let running = RunningRecord {
        pid: child.as_raw(),
        monitor_pid: nix::unistd::getpid().as_raw(),
        started_at_unix_nanos: now_nanos(),
    };
    report(&MonitorReport::Started {
        pid: running.pid,
        monitor_pid: running.monitor_pid,
        started_at_unix_nanos: running.started_at_unix_nanos,
    });
    // For a berthd that dies before it records the start: the next one
    // adopts the container from this file. Written after the report, which
    // is what the start waits for; the container runs either way.
    let written = serde_json::to_vec(&running)
        .map_err(io::Error::other)
        .and_then(|json| crate::files::replace(&dir.join(RUNNING_FILE), &json));
    if let Err(e) = written {
        eprintln!("container {}: writing {RUNNING_FILE}: {e}", spec.id);
    }

    let mut log = LogWriter::open(&spec.log_path, spec.log_max_bytes)?;
    let status = pump(child, &sigfd, &out_r, &err_r, &mut log)?;
    log.flush_pending()?;

    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, 0),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, sig as i32),
        other => {
            return Err(io::Error::other(format!(
                "unexpected wait status {other:?}"
            )))
        }
    };
    let rec = ExitRecord {
        exit_code,
        signal,
        oom_killed: spec.oom_events.as_deref().map(oom_kill_count).unwrap_or(0) > 0,
        finished_at_unix_nanos: now_nanos(),
    };
    let json = serde_json::to_vec(&rec).map_err(io::Error::other)?;
    // Not fsynced: after a power loss the container is gone anyway, and
    // berthd then records the exit as lost.
    crate::files::replace(&spec.exit_path, &json)?;
    report(&MonitorReport::Exited(rec));
    Ok(())
}

/// Forks the container's init. On cgroup v2 it is created directly in its
/// cgroup (the second value says so); elsewhere, and on kernels before 5.7,
/// the caller moves it with [`join_cgroup`].
fn create_init(cgroup: &CgroupPlacement) -> io::Result<(Forked, bool)> {
    if let CgroupPlacement::Unified(dir) = cgroup {
        let fd: OwnedFd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("opening cgroup {}: {e}", dir.display())))?;
        match sys::clone_into_cgroup(fd.as_fd()) {
            Ok(forked) => return Ok((forked, true)),
            // Kernels before 5.7 know no clone3 or no CLONE_INTO_CGROUP.
            Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {}
            Err(e) => return Err(io::Error::other(format!("clone3 into the cgroup: {e}"))),
        }
    }
    Ok((sys::fork()?, false))
}

/// Moves `child` into the container's cgroup (every v1 hierarchy, or the
/// unified directory where `CLONE_INTO_CGROUP` is missing).
fn join_cgroup(child: Pid, cgroup: &CgroupPlacement) -> Result<(), String> {
    let dirs = match cgroup {
        CgroupPlacement::Unified(dir) => std::slice::from_ref(dir),
        CgroupPlacement::Hierarchies(dirs) => dirs.as_slice(),
    };
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, child.as_raw().to_string())
            .map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
    }
    Ok(())
}

/// Copies output into the log until the container's init has exited and its
/// pipes are drained; returns its wait status.
fn pump(
    child: Pid,
    sigfd: &SignalFd,
    out: &OwnedFd,
    err: &OwnedFd,
    log: &mut LogWriter,
) -> io::Result<WaitStatus> {
    let mut open = [true, true];
    let mut status = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(st) = status {
            if open == [false, false] {
                return Ok(st);
            }
        }
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let streams: Vec<(usize, &OwnedFd)> = [(0, out), (1, err)]
            .into_iter()
            .filter(|(i, _)| open[*i])
            .collect();
        for (_, fd) in &streams {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        // Once init is gone every process of its PID namespace is gone, so
        // the pipes close promptly; the timeout only guards against the
        // impossible.
        let timeout = if status.is_some() {
            PollTimeout::from(1000u16)
        } else {
            PollTimeout::NONE
        };
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if let Some(st) = status {
                return Ok(st);
            }
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[0] {
            while sigfd.read_signal()?.is_some() {}
            match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))? {
                WaitStatus::StillAlive => {}
                st => status = Some(st),
            }
        }
        for (k, (i, fd)) in streams.iter().enumerate() {
            if !ready[k + 1] {
                continue;
            }
            let stream = if *i == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => open[*i] = false,
                Ok(n) => log.write(stream, &buf[..n])?,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Reads the `oom_kill` counter from memory.events (v2) or memory.oom_control (v1).
pub fn oom_kill_count(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}
