//! An exec session: the command starts once the client has connected, its
//! output goes out on channels 1 and 2 (or 1 alone, with a terminal),
//! channel 0 feeds its stdin and channel 4 resizes its terminal; the
//! status goes on channel 3 when it has ended, then the connection closes.
//! A client that goes away first takes the process with it (as containerd
//! does), unless berthd is shutting down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::{self, In, Out, Session, CHUNK};
use super::protocol::{self, Inbound, Outcome};
use super::resize::ResizeStream;
use crate::container::{ExecOptions, Manager};
use crate::cri::containers;
use crate::exec::{Control, ExecError, FdIo, Streams};
use crate::monitor::ExitRecord;

/// How long output is still read after the process ended (from processes
/// it left running that hold its stdout or stderr), as berth's own Exec.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// An exec granted by the Exec call, run when its client connects.
#[derive(Debug, Clone)]
pub struct ExecGrant {
    /// The container's full id.
    pub container_id: String,
    /// The command.
    pub cmd: Vec<String>,
    /// A terminal.
    pub tty: bool,
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a terminal).
    pub stderr: bool,
}

/// Serves one exec session.
pub async fn serve(
    session: Session,
    grant: ExecGrant,
    mgr: Arc<Manager>,
    stopping: watch::Receiver<bool>,
) {
    let Session { out, input, writer } = session;
    // As kubelet: an empty message on the first channel the client reads
    // tells it the streams are up.
    let first = if grant.stdout {
        protocol::STDOUT
    } else if grant.stderr {
        protocol::STDERR
    } else {
        protocol::ERROR
    };
    let _ = out.send(first, &[]).await;
    let (outcome, reader) = run(&mgr, grant, &out, input, &stopping).await;
    if let Some(outcome) = outcome {
        let _ = out.status(&outcome).await;
    }
    drop(out);
    conn::finish(writer, reader).await;
}

/// Runs the exec; its outcome (`None`: the client left first) and the
/// task reading the client's messages.
async fn run(
    mgr: &Manager,
    grant: ExecGrant,
    out: &Out,
    input: In,
    stopping: &watch::Receiver<bool>,
) -> (Option<Outcome>, Option<JoinHandle<()>>) {
    let entry = match containers::get(mgr, &grant.container_id) {
        Ok(e) => e,
        Err(status) => return (Some(Outcome::Internal(status.message().into())), None),
    };
    let opts = ExecOptions {
        argv: grant.cmd,
        tty: grant.tty,
        attach_stdin: grant.stdin,
        ..ExecOptions::default()
    };
    let exec = match mgr.exec(&entry, opts).await {
        Ok(x) => x,
        Err(crate::error::Error::Exec(ExecError::CannotExec { message, exit_code })) => {
            // As a shell says it: the reason on the process's stderr (its
            // only output with a terminal), then its shell-style code.
            let channel = if grant.tty {
                protocol::STDOUT
            } else {
                protocol::STDERR
            };
            let line = format!("{}\n", crate::error::capped(&message));
            let _ = out.send(channel, line.as_bytes()).await;
            return (Some(Outcome::Exit(exit_code)), None);
        }
        Err(e) => return (Some(Outcome::Internal(e.to_string())), None),
    };
    let control = Arc::new(exec.control);
    let (stdin, stdout, stderr) = match exec.streams {
        Streams::Pipes {
            stdin,
            stdout,
            stderr,
        } => (stdin.map(Arc::new), Arc::new(stdout), Some(stderr)),
        Streams::Terminal(t) => (grant.stdin.then(|| t.clone()), t, None),
    };
    let (gone_tx, gone) = oneshot::channel();
    let reader = tokio::spawn(read_input(
        input,
        stdin,
        grant.tty,
        control.clone(),
        gone_tx,
    ));
    let want = (grant.stdout, grant.stderr);
    match pump(&stdout, stderr.as_ref(), exec.exit, out, want, gone).await {
        Some(exit) => {
            let code = if exit.signal != 0 {
                128 + exit.signal
            } else {
                exit.exit_code
            };
            let outcome = if code == 0 {
                Outcome::Success
            } else {
                Outcome::Exit(code)
            };
            (Some(outcome), Some(reader))
        }
        None => {
            if !*stopping.borrow() {
                control.kill_now();
            }
            reader.abort();
            (None, None)
        }
    }
}

/// The client's messages, until it closes the connection (then `gone`
/// fires): stdin through a writer task (a process that does not read its
/// stdin never holds up resizes), terminal sizes, the close of stdin.
async fn read_input(
    mut input: In,
    stdin: Option<Arc<FdIo>>,
    tty: bool,
    control: Arc<Control>,
    gone: oneshot::Sender<()>,
) {
    let mut to_stdin = stdin.map(|w| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if w.write_all(&chunk).await.is_err() {
                    // It closed its stdin: what comes is dropped.
                    while rx.recv().await.is_some() {}
                    return;
                }
            }
            // End of input: a pipe closes as `w` is dropped; a terminal
            // (shared with the output) gets its end-of-file character.
            if tty {
                let _ = w.write_all(&[4]).await;
            }
        });
        tx
    });
    let mut resize = ResizeStream::default();
    while let Some(msg) = input.next().await {
        match msg {
            Inbound::Data {
                channel: protocol::STDIN,
                data,
            } => {
                if let Some(tx) = &to_stdin {
                    let _ = tx.send(data).await;
                }
            }
            Inbound::Data {
                channel: protocol::RESIZE,
                data,
            } => match resize.push(&data) {
                Ok(sizes) => {
                    for s in sizes {
                        if let Err(e) = control.resize(s.height, s.width) {
                            tracing::debug!("CRI exec: resizing the terminal: {e}");
                        }
                    }
                }
                Err(e) => tracing::debug!("CRI exec: {e}"),
            },
            Inbound::Close {
                channel: protocol::STDIN,
            } => to_stdin = None,
            // Channels the client does not write (kubelet ignores them).
            Inbound::Data { .. } | Inbound::Close { .. } | Inbound::Empty => {}
        }
    }
    let _ = gone.send(());
}

/// Sends the process's output as it comes (the streams the client did not
/// ask for are read and dropped, so the process never blocks on them)
/// until it has ended and its output is drained, or [`DRAIN_AFTER_EXIT`]
/// has passed. `None` when the client went away first.
async fn pump(
    stdout: &FdIo,
    stderr: Option<&FdIo>,
    mut exit: oneshot::Receiver<ExitRecord>,
    out: &Out,
    (want_out, want_err): (bool, bool),
    mut gone: oneshot::Receiver<()>,
) -> Option<ExitRecord> {
    let (mut out_open, mut err_open) = (true, stderr.is_some());
    let (mut obuf, mut ebuf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut ended: Option<ExitRecord> = None;
    let mut drain_until = None;
    let far = || Instant::now() + Duration::from_secs(86_400);
    loop {
        if ended.is_some() && !out_open && !err_open {
            break;
        }
        let drained = drain_until.unwrap_or_else(far);
        tokio::select! {
            // Fired, or its task is gone: either way no client.
            _ = &mut gone => return None,
            r = stdout.read(&mut obuf), if out_open => match r {
                Ok(n) if n > 0 => {
                    if want_out {
                        out.send(protocol::STDOUT, &obuf[..n]).await.ok()?;
                    }
                }
                _ => out_open = false,
            },
            r = async { match stderr { Some(e) => e.read(&mut ebuf).await, None => Ok(0) } }, if err_open => match r {
                Ok(n) if n > 0 => {
                    if want_err {
                        out.send(protocol::STDERR, &ebuf[..n]).await.ok()?;
                    }
                }
                _ => err_open = false,
            },
            x = &mut exit, if ended.is_none() => {
                // The task that records the exit cannot drop its sender
                // without sending; if it did, the exit was lost.
                ended = Some(x.unwrap_or(ExitRecord {
                    exit_code: 255,
                    signal: 0,
                    oom_killed: false,
                    finished_at_unix_nanos: 0,
                }));
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = tokio::time::sleep_until(drained), if drain_until.is_some() => break,
        }
    }
    ended
}
