//! `berth-monitor __exec`: starts one process in a running container and
//! stays its parent until it ends (the protocol is
//! `berth_runtime::exec`'s).
//!
//! The helper enters the container init's namespaces through its pidfd
//! (mount, UTS, IPC, network and PID: its children are born in the
//! container's PID namespace), with a terminal opens a new pty of the
//! container's own devpts, and forks. The child is placed in the
//! container's cgroup (directly, with `clone3(CLONE_INTO_CGROUP)` on cgroup
//! v2; on v1 it moves itself), then enters the cgroup namespace, and the
//! user namespace when the container has one, and becomes the process
//! through the init's own [`crate::init::become_and_exec`]: the same user
//! resolution, capabilities, `no_new_privs` and seccomp filter. The helper
//! itself stays in berthd's cgroup, so stopping the container kills the
//! process but never the helper, which reports how it ended.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use berth_runtime::exec::{self as proto, ExecExit, ExecLaunch, ExecReport};
use berth_runtime::launch::CgroupPlacement;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, IoSliceMut};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{PidfdFlags, WaitOptions};
use rustix::thread::ThreadNameSpaceType as Ns;

use crate::init::{Command, Failure, Outcome, Stdio};
use crate::io::{self, Context, Error, Result};
use crate::sys::{self, Forked};

const SIGPIPE: i32 = linux_raw_sys::general::SIGPIPE as i32;
const SIGCHLD: i32 = linux_raw_sys::general::SIGCHLD as i32;

/// Runs the helper; never returns.
pub fn main() -> ! {
    let code = match run() {
        Ok(()) => 0,
        Err(Failure(exit_code, message)) => {
            report(&ExecReport::Failed { message, exit_code });
            1
        }
    };
    sys::exit(code)
}

fn report(r: &ExecReport) {
    if let Ok(mut line) = serde_json::to_vec(r) {
        line.push(b'\n');
        let _ = io::write_all(sys::stdout(), &line);
    }
}

/// What berthd sent: the launch spec and the descriptors with it.
struct Received {
    launch: ExecLaunch,
    init: OwnedFd,
    /// stdin, stdout, stderr (none with a terminal).
    stdio: Vec<OwnedFd>,
    /// The read ends of stdout and stderr (none with a terminal), read
    /// only once berthd is gone.
    outputs: Vec<OwnedFd>,
}

fn receive(sock: BorrowedFd<'_>) -> Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(6))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut header = [0u8; proto::HEADER_LEN];
    let got = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut header)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::WAITALL,
    )
    .ctx("receiving the exec")?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    if got.bytes != proto::HEADER_LEN {
        return Err(Error("short exec header".into()));
    }
    let len = proto::parse_header(header).ok_or_else(|| Error("exec spec too large".into()))?;
    let mut json = Vec::with_capacity(len);
    let mut chunk = [0u8; 8192];
    while json.len() < len {
        let want = (len - json.len()).min(chunk.len());
        match rustix::io::read(sock, &mut chunk[..want]) {
            Ok(0) => return Err(Error("exec spec cut short".into())),
            Ok(n) => json.extend_from_slice(&chunk[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).ctx("reading the exec spec"),
        }
    }
    let launch: ExecLaunch =
        serde_json::from_slice(&json).map_err(|e| Error(format!("bad exec spec: {e}")))?;
    if fds.len() != proto::fds_expected(launch.tty) {
        return Err(Error(format!(
            "{} descriptors came with the exec, {} expected",
            fds.len(),
            proto::fds_expected(launch.tty)
        )));
    }
    let init = fds.remove(0);
    let outputs = fds.split_off(fds.len().min(3));
    Ok(Received {
        launch,
        init,
        stdio: fds,
        outputs,
    })
}

fn run() -> Outcome {
    sys::ignore_signal(SIGPIPE).ctx("ignoring SIGPIPE")?;
    sys::default_signal(SIGCHLD).ctx("resetting SIGCHLD")?;
    // Out of berthd's session and process group: a signal to berthd's
    // group (Ctrl-C where it runs in a terminal) must not end the exec,
    // which outlives berthd as a container does.
    let _ = rustix::process::setsid();
    // The child is born in the container's PID namespace holding host
    // descriptors (the cgroup's, berthd's socket) until it execs: not
    // dumpable, the container's root cannot reach them through
    // /proc/<pid>/fd or ptrace (runc's CVE-2016-9962). execve makes the
    // process dumpable again.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .ctx("making the exec not dumpable")?;
    let sock = sys::stdin();
    let Received {
        launch,
        init,
        stdio,
        mut outputs,
    } = receive(sock)?;
    // Where the exit is recorded: a host path, opened before the
    // container's mount namespace is entered. Without it an exit could be
    // lost, so nothing runs.
    let record_dir = launch
        .record_dir
        .as_deref()
        .map(crate::exec_wait::open_record_dir)
        .transpose()?;

    // Host paths, opened before the container's mount namespace is entered.
    let seccomp = launch
        .seccomp
        .as_deref()
        .map(crate::confine::load)
        .transpose()?;
    let cgroup = open_cgroup(&launch.cgroup)?;

    // Every namespace but the cgroup and user ones, which the child enters
    // once it is in the container's cgroup (from the host's cgroup
    // namespace: the kernel refuses a move from a cgroup outside the
    // namespace's root) and as the last step of its setup.
    rustix::thread::move_into_thread_name_spaces(
        init.as_fd(),
        Ns::MOUNT
            | Ns::HOST_NAME_AND_NIS_DOMAIN_NAME
            | Ns::INTER_PROCESS_COMMUNICATION
            | Ns::NETWORK
            | Ns::PROCESS_ID,
    )
    .ctx("entering the container's namespaces")?;

    let terminal = if launch.tty {
        Some(crate::pty::open(launch.terminal_size)?)
    } else {
        None
    };
    let (fail_r, fail_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ctx("pipe")?;

    let forked = match &cgroup {
        Cgroup::Unified { dir, .. } => {
            match sys::clone_into_cgroup(dir.as_fd(), sys::Namespaces::Inherited) {
                Ok(f) => Some(f),
                Err(Errno::NOSYS | Errno::TOOBIG | Errno::INVAL) => None,
                Err(e) => return Err(e).ctx("clone3 into the cgroup").map_err(Failure::from),
            }
        }
        Cgroup::Procs(_) => None,
    };
    // Where clone3 could not place the child (a kernel before 5.7, or
    // berthd under a seccomp profile that answers clone3 with ENOSYS), the
    // child moves itself, on v2 as on v1.
    let placed = forked.is_some();
    let forked = match forked {
        Some(f) => f,
        None => sys::fork_into(sys::Namespaces::Inherited).ctx("fork")?,
    };
    let child = match forked {
        Forked::Child => {
            drop(fail_r);
            crate::rt::report_panics_to(&fail_w);
            let setup = ChildSetup {
                launch: &launch,
                init: &init,
                cgroup: &cgroup,
                placed,
                stdio: &stdio,
                terminal: terminal.as_ref(),
                fail: fail_w.as_fd(),
            };
            let Err(Failure(code, message)) = child_setup(setup, seccomp);
            let _ = io::write_all(&fail_w, format!("{code}:{message}").as_bytes());
            sys::exit(code)
        }
        Forked::Parent(pid) => pid,
    };
    drop((fail_w, stdio, init, cgroup));
    let pidfd = rustix::process::pidfd_open(child, PidfdFlags::empty()).ctx("pidfd_open")?;
    // The child's own side of the terminal is the child's; berthd gets the
    // master, and the helper keeps it too, to read it once berthd is gone
    // (a closed master would hang up the process's terminal).
    if let Some((master, slave)) = terminal {
        drop(slave);
        crate::fdpass::send_fd(sock, &master).ctx("handing over the terminal")?;
        outputs.push(master);
    }

    let failure = io::read_to_end(&fail_r).ctx("reading the exec's result")?;
    drop(fail_r);
    if !failure.is_empty() {
        let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
        let failure = String::from_utf8_lossy(&failure);
        let (code, message) = match failure.split_once(':') {
            Some((code, msg)) => (code.parse().unwrap_or(125), msg.to_string()),
            None => (125, failure.to_string()),
        };
        return Err(Failure(code, message));
    }
    report(&ExecReport::Started {
        pid: child.as_raw_nonzero().get(),
    });
    let (exit_code, signal) = crate::exec_wait::supervise(child, &pidfd, sock, outputs)?;
    if let Some(dir) = &record_dir {
        let exit = ExecExit {
            exit_code,
            signal,
            finished_at_unix_nanos: crate::monitor::now_nanos(),
        };
        // Recorded before it is reported: once berthd has heard of the
        // exit, the file is there for InspectExec and a later berthd.
        // Failing (a full disk), berthd still hears of it if it is there.
        let _ = crate::exec_wait::record_exit(dir.as_fd(), &launch.exec_id, &exit);
    }
    report(&ExecReport::Exited { exit_code, signal });
    Ok(())
}

/// The container's cgroup, opened on the host's side.
enum Cgroup {
    /// cgroup v2: its directory, for `CLONE_INTO_CGROUP`, and its
    /// `cgroup.procs`, where clone3 cannot.
    Unified {
        /// The cgroup's directory.
        dir: OwnedFd,
        /// Its `cgroup.procs`.
        procs: OwnedFd,
    },
    /// The `cgroup.procs` of each v1 hierarchy.
    Procs(Vec<OwnedFd>),
}

fn open_cgroup(placement: &CgroupPlacement) -> Result<Cgroup> {
    let procs = |dir: &str| {
        let path = format!("{dir}/cgroup.procs");
        rustix::fs::open(
            path.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(format!("opening {path}"))
    };
    match placement {
        CgroupPlacement::Unified(dir) => Ok(Cgroup::Unified {
            dir: rustix::fs::open(
                dir.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ctx(format!("opening cgroup {dir}"))?,
            procs: procs(dir)?,
        }),
        CgroupPlacement::Hierarchies(dirs) => dirs
            .iter()
            .map(|d| procs(d))
            .collect::<Result<_>>()
            .map(Cgroup::Procs),
    }
}

/// What the forked child works with.
struct ChildSetup<'a> {
    launch: &'a ExecLaunch,
    init: &'a OwnedFd,
    cgroup: &'a Cgroup,
    /// clone3 created it in the (v2) cgroup already.
    placed: bool,
    stdio: &'a [OwnedFd],
    terminal: Option<&'a (OwnedFd, OwnedFd)>,
    /// Where a failure is reported; the only descriptor kept besides stdio.
    fail: BorrowedFd<'a>,
}

/// In the child: into the cgroup, the remaining namespaces, then the
/// process.
fn child_setup(
    setup: ChildSetup<'_>,
    seccomp: Option<crate::confine::Seccomp>,
) -> Outcome<crate::init::Never> {
    let ChildSetup {
        launch,
        init,
        cgroup,
        placed,
        stdio,
        terminal,
        fail,
    } = setup;
    crate::init::reset_process(launch.oom_score_adj)?;
    // "0": the writing process.
    let join = |f: &OwnedFd| io::write_all(f, b"0").ctx("joining the container's cgroup");
    match cgroup {
        Cgroup::Procs(files) => {
            for f in files {
                join(f)?;
            }
        }
        Cgroup::Unified { procs, .. } if !placed => join(procs)?,
        Cgroup::Unified { .. } => {}
    }
    let mut last = Ns::CONTROL_GROUP;
    if launch.userns {
        last |= Ns::USER;
    }
    rustix::thread::move_into_thread_name_spaces(init.as_fd(), last)
        .ctx("entering the container's cgroup and user namespaces")?;
    if launch.userns {
        // As the container's init did: root of the namespace first, then
        // the user (host root is unmapped there).
        let (uid, gid) = (
            rustix::process::Uid::from_raw(0),
            rustix::process::Gid::from_raw(0),
        );
        rustix::thread::set_thread_res_gid(gid, gid, gid).ctx("setresgid")?;
        rustix::thread::set_thread_groups(&[]).ctx("setgroups")?;
        rustix::thread::set_thread_res_uid(uid, uid, uid).ctx("setresuid")?;
    }
    let command = Command {
        args: &launch.args,
        env: &launch.env,
        user: &launch.user,
        cwd: &launch.cwd,
        create_cwd: false,
        capabilities: launch.capabilities,
        groups: &launch.groups,
        no_new_privs: !launch.allow_privilege_escalation,
        strict_groups: launch.strict_groups,
    };
    let stdio = match (terminal, stdio) {
        (Some((_, slave)), _) => Stdio {
            stdin: slave.as_fd(),
            stdout: slave.as_fd(),
            stderr: slave.as_fd(),
            terminal: true,
        },
        (None, [i, o, e]) => Stdio {
            stdin: i.as_fd(),
            stdout: o.as_fd(),
            stderr: e.as_fd(),
            terminal: false,
        },
        (None, _) => return Err(Failure(125, "no stdio for the exec".into())),
    };
    crate::init::become_and_exec(&command, stdio, seccomp.as_ref(), fail)
}
