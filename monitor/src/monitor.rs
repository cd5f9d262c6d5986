//! The monitor process proper, from the launch spec to the exit record.
//!
//! It leaves berthd's session, reads its [`LaunchSpec`] from stdin, starts
//! the container's init as its own child in a new PID namespace (directly
//! inside the container's cgroup on cgroup v2), copies the container's
//! stdout/stderr into the log file, reaps the container, records the exit
//! and reports it on its stdout.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use berth_runtime::launch::{
    CgroupPlacement, ExitRecord, LaunchSpec, MonitorReport, RunningRecord, RUNNING_FILE,
};
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, WaitOptions};

use crate::io::{self, eprintln, Context, Error, Result};
use crate::log::LogWriter;
use crate::sys::{self, Forked};

const SIGPIPE: i32 = linux_raw_sys::general::SIGPIPE as i32;
const SIGCHLD: i32 = linux_raw_sys::general::SIGCHLD as i32;

/// Runs the monitor; never returns. A `spare` was started ahead of its
/// container and learns its directory from the launch spec; otherwise
/// `main` already named it from the command line. Either way stderr is
/// /dev/null until the first diagnostic creates the monitor log there.
pub fn main(spare: bool) -> ! {
    let code = match run(spare) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth monitor: {e}");
            report(&MonitorReport::Failed {
                message: e.0,
                exit_code: 125,
            });
            1
        }
    };
    sys::exit(code)
}

fn report(r: &MonitorReport) {
    if let Ok(mut line) = serde_json::to_vec(r) {
        line.push(b'\n');
        // berthd may be gone (restarting); the exit file is the durable copy.
        let _ = io::write_all(sys::stdout(), &line);
    }
}

fn run(spare: bool) -> Result<()> {
    // Its end of our stdout may close while berthd restarts; a write must
    // then fail, not kill the monitor.
    sys::ignore_signal(SIGPIPE).ctx("ignoring SIGPIPE")?;
    // An ignored SIGCHLD (inherited across exec) would have the kernel reap
    // the container itself, and its exit status would be lost.
    sys::default_signal(SIGCHLD).ctx("resetting SIGCHLD")?;
    // A session of its own: a signal to berthd's process group (Ctrl-C on
    // the terminal berthd runs in) must not reach the monitors, which outlive
    // berthd by design.
    rustix::process::setsid().ctx("setsid")?;
    let input = io::read_to_end(sys::stdin()).ctx("reading the launch spec")?;
    let spec: LaunchSpec =
        serde_json::from_slice(&input).map_err(|e| Error(format!("bad launch spec: {e}")))?;
    drop(input);
    let dir = spec.dir.as_str();
    if spare {
        sys::set_log_dir(io::open_dir(dir).ctx(dir)?);
    }
    // berthd tells this monitor from a process that reused its pid by it.
    rustix::process::chdir(dir).ctx(dir)?;

    // Container processes are children of this one; the first is PID 1 there.
    // With a user namespace of its own, the init is created with both (its
    // PID namespace must be owned by its user namespace for it to mount
    // /proc).
    let namespaces = if spec.userns.is_some() {
        sys::Namespaces::NewUserAndPid
    } else if spec.host_pid {
        // A CRI pod's hostPID: berthd's own, which is the host's.
        sys::Namespaces::Inherited
    } else if let Some(path) = &spec.pidns {
        // A CRI pod's PID namespace, held by its first process: setns
        // changes, as unshare would, only where children are created.
        let ns = rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ctx("opening the pod's PID namespace")?;
        rustix::thread::move_into_link_name_space(
            rustix::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::ProcessID),
        )
        .ctx("entering the pod's PID namespace")?;
        sys::Namespaces::Inherited
    } else {
        // SAFETY: CLONE_NEWPID changes nothing for this process, only where
        // its children are created.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }
            .ctx("creating the PID namespace")?;
        sys::Namespaces::Inherited
    };

    let pipe = || rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ctx("pipe");
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (fail_r, fail_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // What attached clients reach: the listener, bound before the start
    // is reported; the stdin pipe; a channel for the terminal's master.
    let mut attach = if spec.attachable() {
        Some(crate::attach::Attach::listen(
            spec.open_stdin,
            spec.await_attach,
        )?)
    } else {
        None
    };
    let (in_r, in_w) = if spec.open_stdin && !spec.tty {
        pipe().map(|(r, w)| (Some(r), Some(w)))?
    } else {
        (None, None)
    };
    let (tty_sock, init_tty_sock) = if spec.tty {
        rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map(|(a, b)| (Some(a), Some(b)))
        .ctx("socketpair")?
    } else {
        (None, None)
    };
    let (handoff, init_handoff) = match spec.userns {
        Some(_) => crate::userns::channel().map(|(m, i)| (Some(m), Some(i)))?,
        None => (None, None),
    };

    let (forked, placed) = create_init(&spec.cgroup, namespaces)?;
    let child = match forked {
        Forked::Child => {
            drop((out_r, err_r, fail_r, go_w, handoff, attach, in_w, tty_sock));
            let stdio = crate::init::InitStdio {
                out: out_w,
                err: err_w,
                stdin: in_r,
                terminal: init_tty_sock,
            };
            crate::init::run(&spec, stdio, fail_w, go_r, init_handoff)
        }
        Forked::Parent(pid) => pid,
    };
    drop((
        out_w,
        err_w,
        fail_w,
        go_r,
        init_handoff,
        in_r,
        init_tty_sock,
    ));
    // Readable once the child has exited: how the pump learns of the exit.
    let pidfd = rustix::process::pidfd_open(child, PidfdFlags::empty()).ctx("pidfd_open")?;

    // Move the child into its cgroup while it sets up its mounts; it
    // waits for `go` before it enters its cgroup namespace and execs.
    let userns = match (spec.userns, &handoff) {
        (Some(map), Some(sock)) => crate::userns::prepare(child, &map, &spec.rootfs, sock),
        _ => Ok(()),
    };
    drop(handoff);
    // The init only learns that the user namespace failed; why is here.
    let userns_failure = userns.as_ref().err().map(|e| e.0.clone());
    let placement = userns.and_then(|()| {
        if placed {
            Ok(())
        } else {
            join_cgroup(child, &spec.cgroup)
        }
    });
    match &placement {
        Ok(()) => match io::write_all(&go_w, b"g") {
            // The init has failed and exited already; why is in the fail pipe.
            Ok(()) | Err(Errno::PIPE) => {}
            Err(e) => return Err(e).ctx("starting the init"),
        },
        // It must not run outside its cgroup.
        Err(_) => {
            let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
        }
    }
    drop(go_w);

    let failure = io::read_to_end(&fail_r).ctx("reading the init's result")?;
    drop(fail_r);
    if !failure.is_empty() || placement.is_err() {
        let status = rustix::process::waitpid(Some(child), WaitOptions::empty());
        // The init's own reason first: joining its cgroup fails when the
        // init has already failed and exited.
        let (message, exit_code) = if let Some(why) = userns_failure {
            (why, 125)
        } else if failure.is_empty() {
            (placement.err().map(|e| e.0).unwrap_or_default(), 125)
        } else {
            let failure = String::from_utf8_lossy(&failure);
            match failure.split_once(':') {
                Some((code, msg)) => (msg.to_string(), code.parse().unwrap_or(125)),
                None => (failure.to_string(), 125),
            }
        };
        eprintln!(
            "container {} failed to start: {message} ({status:?})",
            spec.id
        );
        report(&MonitorReport::Failed { message, exit_code });
        return Ok(());
    }
    if let Some(a) = attach.as_mut() {
        if let Some(w) = in_w {
            a.set_stdin(w)?;
        }
        // Sent before the init exec'd, which the empty fail pipe proved.
        if let Some(sock) = &tty_sock {
            match crate::fdpass::recv_fd(sock.as_fd()).ctx("receiving the terminal")? {
                Some(master) => a.set_terminal(master)?,
                None => return Err(Error("the init sent no terminal".into())),
            }
        }
    }
    drop(tty_sock);
    let running = RunningRecord {
        pid: child.as_raw_nonzero().get(),
        monitor_pid: rustix::process::getpid().as_raw_nonzero().get(),
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
        .map_err(|e| Error(e.to_string()))
        .and_then(|json| io::replace(&format!("{dir}/{RUNNING_FILE}"), &json));
    if let Err(e) = written {
        eprintln!("container {}: writing {RUNNING_FILE}: {e}", spec.id);
    }

    let mut log = LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_group_readable);
    let status = crate::pump::pump(child, &pidfd, &out_r, &err_r, &mut log, attach.as_mut())?;
    log.finish();
    // Clients get the last of the output before the exit is reported.
    if let Some(a) = attach {
        a.finish(rustix::time::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        });
    }

    let (exit_code, signal) = match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => (code, 0),
        (None, Some(sig)) => (128 + sig, sig),
        _ => return Err(Error(format!("unexpected wait status {status:?}"))),
    };
    let rec = ExitRecord {
        exit_code,
        signal,
        oom_killed: spec.oom_events.as_deref().map(oom_kill_count).unwrap_or(0) > 0,
        finished_at_unix_nanos: now_nanos(),
    };
    // Not fsynced: after a power loss the container is gone anyway, and
    // berthd then records the exit as lost. A file that cannot be written
    // still leaves the report: berthd keeps the true exit in memory.
    let written = serde_json::to_vec(&rec)
        .map_err(|e| Error(e.to_string()))
        .and_then(|json| write_exit(&spec.exit_path, &json));
    if let Err(e) = written {
        eprintln!("container {}: writing the exit record: {e}", spec.id);
    }
    report(&MonitorReport::Exited(rec));
    Ok(())
}

/// Writes the exit record into the room berthd reserved for it, in place
/// (its blocks are allocated: a full disk cannot refuse the write), padded
/// with spaces, which JSON ignores; without such room, as a new file.
fn write_exit(path: &str, json: &[u8]) -> Result<()> {
    const MOST: u64 = 4096;
    let reserved = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .ok()
        .and_then(|fd| {
            let size = rustix::fs::fstat(&fd).ok()?.st_size as u64;
            (size >= json.len() as u64 && size <= MOST).then_some((fd, size as usize))
        });
    let Some((fd, size)) = reserved else {
        return io::replace(path, json);
    };
    let mut padded = Vec::with_capacity(size);
    padded.extend_from_slice(json);
    padded.resize(size, b' ');
    io::write_all(&fd, &padded).ctx(path)
}

/// Forks the container's init. On cgroup v2 it is created directly in its
/// cgroup (the second value says so); elsewhere, and on kernels before 5.7,
/// the caller moves it with [`join_cgroup`].
fn create_init(cgroup: &CgroupPlacement, ns: sys::Namespaces) -> Result<(Forked, bool)> {
    if let CgroupPlacement::Unified(dir) = cgroup {
        let fd = rustix::fs::open(
            dir.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(format!("opening cgroup {dir}"))?;
        match sys::clone_into_cgroup(fd.as_fd(), ns) {
            Ok(forked) => return Ok((forked, true)),
            // Kernels before 5.7 know no clone3 or no CLONE_INTO_CGROUP.
            Err(Errno::NOSYS | Errno::TOOBIG | Errno::INVAL) => {}
            Err(e) => return Err(e).ctx("clone3 into the cgroup"),
        }
    }
    Ok((sys::fork_into(ns).ctx("fork")?, false))
}

/// Moves `child` into the container's cgroup (every v1 hierarchy, or the
/// unified directory where `CLONE_INTO_CGROUP` is missing).
fn join_cgroup(child: Pid, cgroup: &CgroupPlacement) -> Result<()> {
    let dirs = match cgroup {
        CgroupPlacement::Unified(dir) => core::slice::from_ref(dir),
        CgroupPlacement::Hierarchies(dirs) => dirs.as_slice(),
    };
    let pid = child.as_raw_nonzero().get().to_string();
    for dir in dirs {
        let procs = format!("{dir}/cgroup.procs");
        let fd = rustix::fs::open(
            procs.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        fd.and_then(|fd| io::write_all(&fd, pid.as_bytes()))
            .ctx(format!("joining cgroup {procs}"))?;
    }
    Ok(())
}

/// Unix time in nanoseconds.
pub fn now_nanos() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// Reads the `oom_kill` counter from memory.events (v2) or memory.oom_control (v1).
fn oom_kill_count(path: &str) -> u64 {
    io::read_file(path)
        .ok()
        .and_then(|text| {
            String::from_utf8_lossy(&text).lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}
