//! Exec processes, berthd's side: starting the `berth-monitor __exec`
//! helper (the protocol is `berth_runtime::exec`'s), the process's pipes or
//! terminal, its signals and resizes, and its exit.
//!
//! What is run and whether it may be (the container's state, its user,
//! env, capabilities) is the container manager's (`container/exec.rs`);
//! this module only knows processes.

pub mod fdio;
pub mod record;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use berth_runtime::exec::{self as proto, ExecLaunch, ExecReport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub use fdio::FdIo;

use crate::error::capped;
use crate::monitor::{BoxFuture, ExitRecord};

/// Why an exec could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container is not running (created, paused, exited, ...).
    #[error("container {id} is not running (it is {state}): exec needs a running container")]
    NotRunning {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// The process could not be set up or executed: `exit_code` as a
    /// shell would give it (127 not found, 126 not executable, 125 other).
    #[error("cannot exec in the container: {}", capped(message))]
    CannotExec {
        /// Why, as the helper reported it (it may quote the command).
        message: String,
        /// Shell-style exit code.
        exit_code: i32,
    },
    /// No exec of a container that exists has this id (never one, or its
    /// record was dropped: its container was removed, or newer execs
    /// ended).
    #[error("no such exec: {}", capped(exec_id))]
    NotFound {
        /// The id asked for.
        exec_id: String,
    },
    /// The helper could not be started or talked nonsense.
    #[error("exec helper: {0}")]
    Helper(String),
    /// A pipe, socket or terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: &'static str) -> impl FnOnce(std::io::Error) -> ExecError {
    move |source| ExecError::Io { context, source }
}

/// The process's standard files, berthd's ends.
pub enum Streams {
    /// Pipes: stdin (when attached), stdout, stderr.
    Pipes {
        /// Where its stdin comes from; `None`: /dev/null.
        stdin: Option<FdIo>,
        /// Its stdout.
        stdout: FdIo,
        /// Its stderr.
        stderr: FdIo,
    },
    /// A terminal's master side: its input and its output.
    Terminal(Arc<FdIo>),
}

/// Signals and resizes for a running exec. Dropping it leaves the process
/// running (as berthd's death does); [`Control::kill_now`] ends it.
pub struct Control {
    sock: tokio::sync::Mutex<tokio::net::UnixStream>,
    terminal: Option<Arc<FdIo>>,
}

impl Control {
    /// Sends signal number `signal` to the process (through the helper,
    /// which still holds it unreaped: never a process that reused its pid).
    /// A process that has ended ignores it.
    pub async fn signal(&self, signal: i32) -> Result<(), ExecError> {
        let Some(b) = proto::signal_byte(signal) else {
            return Err(ExecError::Helper(format!(
                "{signal} is not a signal number"
            )));
        };
        // The helper is gone once the process has ended: nothing to signal.
        let _ = self.sock.lock().await.write_all(&[b]).await;
        Ok(())
    }

    /// Sends SIGKILL without waiting, for a client that is gone (also from
    /// a `Drop`). A helper that is busy with another signal at this very
    /// moment is rare; it is tried once more as a task then.
    pub fn kill_now(self: &Arc<Self>) {
        let sent = self
            .sock
            .try_lock()
            .is_ok_and(|s| s.try_write(&[libc::SIGKILL as u8]).is_ok_and(|n| n == 1));
        if !sent {
            let me = self.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = me.signal(libc::SIGKILL).await;
                });
            }
        }
    }

    /// Resizes the terminal (nothing without one).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ExecError> {
        match &self.terminal {
            Some(t) => crate::sys::set_window_size(&t.fd(), rows, cols)
                .map_err(io_err("resizing the terminal")),
            None => Ok(()),
        }
    }
}

/// A running exec.
pub struct Running {
    /// Its host pid.
    pub pid: i32,
    /// The helper's host pid and start time (see
    /// [`record::ExecRecord::helper_start`]).
    pub helper: (i32, u64),
    /// Its standard files.
    pub streams: Streams,
    /// Its signals.
    pub control: Control,
    /// Resolves with its exit once it has ended (whatever happens to the
    /// rest: it does not hold the process).
    pub exit: BoxFuture<ExitRecord>,
}

/// What to start, and how.
pub struct Start<'a> {
    /// The monitor binary (which is also the helper).
    pub helper: &'a Path,
    /// The launch spec.
    pub launch: ExecLaunch,
    /// The container init's pidfd.
    pub init: OwnedFd,
    /// Give it a pipe for stdin (else /dev/null); without a terminal.
    pub attach_stdin: bool,
}

/// Starts the exec and returns once its process runs.
pub async fn start(s: Start<'_>) -> Result<Running, ExecError> {
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(io_err("creating the exec socket"))?;
    let tty = s.launch.tty;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("creating the exec's pipes")(e.into()))
    };
    // (the helper's ends, berthd's ends)
    let (theirs_stdio, ours_stdio) = if tty {
        (Vec::new(), None)
    } else {
        let (in_r, in_w) = if s.attach_stdin {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // The helper holds the read ends too, to drain them once berthd
        // is gone (see the protocol).
        let dup = |f: &OwnedFd| {
            f.try_clone()
                .map_err(io_err("duplicating the exec's pipes"))
        };
        let (out_r2, err_r2) = (dup(&out_r)?, dup(&err_r)?);
        (
            vec![in_r, out_w, err_w, out_r2, err_r2],
            Some((in_w, out_r, err_r)),
        )
    };
    let json = serde_json::to_vec(&s.launch)
        .map_err(|e| ExecError::Helper(format!("encoding the exec spec: {e}")))?;
    let header = proto::header(json.len())
        .ok_or_else(|| ExecError::Helper("the exec spec is too large".into()))?;

    let mut child = tokio::process::Command::new(s.helper)
        .arg(proto::EXEC_ARG)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .spawn()
        .map_err(|e| ExecError::Helper(format!("cannot execute {}: {e}", s.helper.display())))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(ExecError::Helper("the exec helper has no stdout".into()));
    };
    let helper = helper_identity(&child);
    let mut reports = BufReader::new(stdout).lines();

    // Blocking socket calls, off the async threads: the spec may be large.
    let init = s.init;
    let sent = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut fds = vec![init.as_fd()];
        fds.extend(theirs_stdio.iter().map(|f| f.as_fd()));
        crate::sys::send_with_fds(&ours, &header, &fds)?;
        std::io::Write::write_all(&mut &ours, &json)?;
        let master = if tty {
            let mut byte = [0u8; 1];
            crate::sys::recv_with_fd(&ours, &mut byte)?.1
        } else {
            None
        };
        // The helper's ends close here: end of file reaches us once the
        // process (and whatever it left running) closes them.
        drop((theirs_stdio, init));
        Ok((ours, master))
    })
    .await
    .map_err(|e| ExecError::Helper(format!("sending the exec: {e}")));
    let failed = |child: tokio::process::Child| reap(child);
    let (ours, master) = match sent {
        Ok(Ok(x)) => x,
        // The helper failed early (its report says why) or died.
        Ok(Err(e)) => {
            let why = first_report(&mut reports).await;
            failed(child);
            return Err(match why {
                Some(Err(e)) => e,
                _ => io_err("sending the exec")(e),
            });
        }
        Err(e) => {
            let _ = child.start_kill();
            failed(child);
            return Err(e);
        }
    };
    let pid = match first_report(&mut reports).await {
        Some(Ok(pid)) => pid,
        Some(Err(e)) => {
            failed(child);
            return Err(e);
        }
        None => {
            failed(child);
            return Err(ExecError::Helper(
                "the exec helper ended without a report".into(),
            ));
        }
    };
    let streams = match (tty, master, ours_stdio) {
        (true, Some(m), _) => {
            Streams::Terminal(Arc::new(FdIo::new(m).map_err(io_err("the terminal"))?))
        }
        (false, _, Some((in_w, out_r, err_r))) => {
            let io = |fd: OwnedFd| FdIo::new(fd).map_err(io_err("the exec's pipes"));
            Streams::Pipes {
                stdin: in_w.map(io).transpose()?,
                stdout: io(out_r)?,
                stderr: io(err_r)?,
            }
        }
        _ => return Err(ExecError::Helper("no terminal came from the helper".into())),
    };
    ours.set_nonblocking(true)
        .map_err(io_err("the exec socket"))?;
    let sock = tokio::net::UnixStream::from_std(ours).map_err(io_err("the exec socket"))?;
    let control = Control {
        sock: tokio::sync::Mutex::new(sock),
        terminal: match &streams {
            Streams::Terminal(t) => Some(t.clone()),
            Streams::Pipes { .. } => None,
        },
    };
    let exit = Box::pin(async move {
        let mut exit = None;
        while let Ok(Some(line)) = reports.next_line().await {
            if let Ok(ExecReport::Exited { exit_code, signal }) = serde_json::from_str(&line) {
                exit = Some(ExitRecord {
                    exit_code,
                    signal,
                    oom_killed: false,
                    finished_at_unix_nanos: now_nanos(),
                });
            }
        }
        let _ = child.wait().await;
        // A helper that died without a word (killed by hand): the process
        // was its child and died with it (PR_SET_PDEATHSIG is not needed:
        // the helper SIGKILLs it at end of file, or it was killed too).
        exit.unwrap_or(ExitRecord {
            exit_code: 255,
            signal: 0,
            oom_killed: false,
            finished_at_unix_nanos: now_nanos(),
        })
    });
    Ok(Running {
        pid,
        helper,
        streams,
        control,
        exit,
    })
}

/// The helper's first report: the pid, or why it failed.
async fn first_report(
    reports: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Option<Result<i32, ExecError>> {
    let line = reports.next_line().await.ok()??;
    Some(match serde_json::from_str(&line) {
        Ok(ExecReport::Started { pid }) => Ok(pid),
        Ok(ExecReport::Failed { message, exit_code }) => {
            Err(ExecError::CannotExec { message, exit_code })
        }
        Ok(ExecReport::Exited { .. }) | Err(_) => Err(ExecError::Helper(format!(
            "unexpected report {:?}",
            capped(&line)
        ))),
    })
}

/// The helper's pid and start time, read while it is berthd's unreaped
/// child (its pid cannot have been reused); (0, 0) when unknown, which a
/// later berthd takes for a helper that is gone.
fn helper_identity(child: &tokio::process::Child) -> (i32, u64) {
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return (0, 0);
    };
    (pid, start_time(pid).unwrap_or(0))
}

/// The start time of process `pid` (clock ticks after boot).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    crate::procinfo::parse_stat(&stat).map(|(_, _, _, _, start)| start)
}

/// Reaps a helper that is done or failing, in the background.
fn reap(mut child: tokio::process::Child) {
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
