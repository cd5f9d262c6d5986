//! The Exec service: a process in a running container, interactive
//! (`Exec`, a bidirectional stream) or run to completion (`ExecSync`).
//! Requests become `container::ExecOptions` here; the process plumbing is
//! `crate::exec`'s.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth::v1 as pb;
use berth::v1::exec_request::Request as In;
use berth::v1::exec_response::Response as Out;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::container::{Entry, ExecOptions, Manager};
use crate::error::Error;
use crate::events::wire::{exit_to_proto, nanos_to_ts};
use crate::exec::{Control, FdIo, Streams};
use crate::monitor::ExitRecord;

/// Longest container key in an exec, in bytes.
pub const MAX_KEY: usize = 256;
/// Most stdin bytes in one message (and in ExecSync's `stdin`).
pub const MAX_STDIN: usize = 1 << 20;
/// Most output bytes in one response message.
const CHUNK: usize = 64 * 1024;
/// ExecSync's timeout when the request gives none.
pub const DEFAULT_TIMEOUT_MS: u32 = 60_000;
/// ExecSync's longest timeout.
pub const MAX_TIMEOUT_MS: u32 = 3_600_000;
/// ExecSync's output kept per stream when the request says nothing.
pub const DEFAULT_MAX_OUTPUT: u32 = 1 << 20;
/// ExecSync's most output kept per stream.
pub const MAX_OUTPUT: u32 = 16 << 20;
/// How long output is still read after the process ended (from processes
/// it left running that hold its stdout or stderr).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Serves `berth.v1.Exec`.
pub struct ExecService {
    mgr: Arc<Manager>,
    /// Set when berthd shuts down: the streams it closes then are not
    /// clients that went away, and their execs run on.
    stopping: watch::Receiver<bool>,
}

impl ExecService {
    /// Wraps the manager; `stopping` turns true when berthd shuts down.
    pub fn new(mgr: Arc<Manager>, stopping: watch::Receiver<bool>) -> Self {
        ExecService { mgr, stopping }
    }
}

/// Kills an exec whose client is gone, unless berthd is shutting down
/// (then the exec runs on, as when berthd is killed, and the next berthd
/// announces its exit).
fn client_gone(control: &Arc<Control>, stopping: &watch::Receiver<bool>) {
    if !*stopping.borrow() {
        control.kill_now();
    }
}

/// Kills the exec of an ExecSync call that ends before the exec did (its
/// client cancelled it): a unary call has no stream to notice that by.
struct KillUnlessDone {
    control: Arc<Control>,
    stopping: watch::Receiver<bool>,
    done: bool,
}

impl Drop for KillUnlessDone {
    fn drop(&mut self) {
        if !self.done {
            client_gone(&self.control, &self.stopping);
        }
    }
}

/// The wire form of an exec's record.
fn exec_info(x: crate::exec::record::ExecRecord) -> pb::ExecInfo {
    pb::ExecInfo {
        running: x.exit.is_none(),
        exit: x.exit.as_ref().map(exit_to_proto),
        started_at: Some(nanos_to_ts(x.started_at_unix_nanos)),
        exec_id: x.exec_id,
        container_id: x.container_id,
        command: x.command,
        truncated: x.truncated,
        tty: x.tty,
        pid: x.pid,
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;
type Tx = mpsc::Sender<Result<pb::ExecResponse, Status>>;

/// INVALID_ARGUMENT for `field`.
pub(super) fn invalid(field: &'static str, reason: &'static str) -> Status {
    Error::InvalidRequest { field, reason }.into()
}

/// A terminal size from the wire; (0, 0) when absent (the default size).
pub(super) fn size(s: Option<&pb::TerminalSize>) -> Result<(u16, u16), Status> {
    let Some(s) = s else { return Ok((0, 0)) };
    match (u16::try_from(s.rows), u16::try_from(s.cols)) {
        (Ok(r), Ok(c)) => Ok((r, c)),
        _ => Err(invalid(
            "terminal_size",
            "terminal rows and columns are at most 65535",
        )),
    }
}

/// The container and what to run in it, checked at this boundary (the
/// rest of the limits are the manager's).
fn options(mgr: &Manager, spec: pb::ExecSpec) -> Result<(Arc<Entry>, ExecOptions), Status> {
    if spec.container.is_empty() {
        return Err(invalid("container", "a container id or name is required"));
    }
    if spec.container.len() > MAX_KEY {
        return Err(invalid("container", "a container key is at most 256 bytes"));
    }
    let terminal_size = size(spec.terminal_size.as_ref())?;
    let entry = mgr.get(&spec.container)?;
    Ok((
        entry,
        ExecOptions {
            argv: spec.argv,
            env: spec.env,
            user: spec.user,
            working_dir: spec.working_dir,
            tty: spec.tty,
            attach_stdin: spec.stdin,
            terminal_size,
            privileged: spec.privileged,
        },
    ))
}

fn message(r: Out) -> Result<pb::ExecResponse, Status> {
    Ok(pb::ExecResponse { response: Some(r) })
}

#[tonic::async_trait]
impl pb::exec_server::Exec for ExecService {
    type ExecStream = ExecStream;

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<ExecStream>, Status> {
        let mut input = req.into_inner();
        let spec = match input.message().await? {
            Some(pb::ExecRequest {
                request: Some(In::Start(spec)),
            }) => spec,
            _ => return Err(invalid("start", "the first message must carry start")),
        };
        let attach = spec.stdin;
        let (entry, opts) = options(&self.mgr, spec)?;
        let exec = self.mgr.exec(&entry, opts).await?;
        let (tx, rx) = mpsc::channel(16);
        // Room for it: the channel is new.
        let _ = tx.try_send(message(Out::Started(pb::ExecStarted {
            exec_id: exec.id.clone(),
            pid: exec.pid,
        })));
        let control = Arc::new(exec.control);
        let (stdin, stdout, stderr) = match exec.streams {
            Streams::Pipes {
                stdin,
                stdout,
                stderr,
            } => (stdin.map(Arc::new), Arc::new(stdout), Some(stderr)),
            Streams::Terminal(t) => (attach.then(|| t.clone()), t, None),
        };
        let is_tty = stderr.is_none();
        let requests = tokio::spawn(forward_input(
            input,
            stdin,
            is_tty,
            control.clone(),
            tx.clone(),
            self.stopping.clone(),
        ));
        let exit = exec.exit;
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            match pump(&stdout, stderr.as_ref(), exit, &control, None, &tx).await {
                Some(done) => {
                    let _ = tx.send(message(Out::Exit(exit_to_proto(&done.exit)))).await;
                }
                // The client is gone: the process goes with it.
                None => client_gone(&control, &stopping),
            }
            // The exit is the last message: the requests side ends too, so
            // the response stream closes (it holds a sender) whether or not
            // the client half-closed its side.
            requests.abort();
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn exec_sync(
        &self,
        req: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        let req = req.into_inner();
        let Some(spec) = req.spec else {
            return Err(invalid("spec", "spec is required"));
        };
        if spec.tty || spec.stdin {
            return Err(invalid(
                "spec",
                "ExecSync takes no terminal and no attached stdin (use stdin bytes)",
            ));
        }
        if req.stdin.len() > MAX_STDIN {
            return Err(invalid("stdin", "stdin is at most 1 MiB"));
        }
        let timeout_ms = match req.timeout_ms {
            0 => DEFAULT_TIMEOUT_MS,
            t if t > MAX_TIMEOUT_MS => {
                return Err(invalid("timeout_ms", "timeout_ms is at most 3600000"))
            }
            t => t,
        };
        let max = match req.max_output_bytes {
            0 => DEFAULT_MAX_OUTPUT,
            m if m > MAX_OUTPUT => {
                return Err(invalid(
                    "max_output_bytes",
                    "max_output_bytes is at most 16777216",
                ))
            }
            m => m,
        } as usize;
        let (entry, mut opts) = options(&self.mgr, spec)?;
        opts.attach_stdin = !req.stdin.is_empty();
        let exec = self.mgr.exec(&entry, opts).await?;
        let mut guard = KillUnlessDone {
            control: Arc::new(exec.control),
            stopping: self.stopping.clone(),
            done: false,
        };
        let Streams::Pipes {
            stdin,
            stdout,
            stderr,
        } = exec.streams
        else {
            return Err(Error::internal("exec", "a terminal where pipes were asked for").into());
        };
        // Closed when written, or when the call ends: a process that never
        // reads its stdin (or left a child holding it) must not keep the
        // bytes and a task alive after its exit.
        let writer = stdin.map(|w| {
            let input = req.stdin;
            tokio::spawn(async move {
                let _ = w.write_all(&input).await;
            })
        });
        let kill_at = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        let (tx, mut rx) = mpsc::channel(16);
        let pumping = async {
            let r = pump(
                &stdout,
                Some(&stderr),
                exec.exit,
                &guard.control,
                Some(kill_at),
                &tx,
            )
            .await;
            drop(tx);
            r
        };
        let collecting = async {
            let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
            while let Some(Ok(m)) = rx.recv().await {
                let (buf, bytes) = match m.response {
                    Some(Out::Stdout(b)) => (&mut out, b),
                    Some(Out::Stderr(b)) => (&mut err, b),
                    _ => continue,
                };
                let room = max.saturating_sub(buf.len());
                truncated |= bytes.len() > room;
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            (out, err, truncated)
        };
        let (done, (out, err, truncated)) = tokio::join!(pumping, collecting);
        guard.done = true;
        if let Some(writer) = writer {
            writer.abort();
        }
        let Some(done) = done else {
            return Err(Error::internal("exec", "the output channel closed").into());
        };
        Ok(Response::new(pb::ExecSyncResponse {
            exec_id: exec.id,
            stdout: out,
            stderr: err,
            exit: Some(exit_to_proto(&done.exit)),
            truncated,
            timed_out: done.timed_out,
        }))
    }

    async fn inspect_exec(
        &self,
        req: Request<pb::InspectExecRequest>,
    ) -> Result<Response<pb::InspectExecResponse>, Status> {
        let id = req.into_inner().exec_id;
        let mgr = self.mgr.clone();
        // A few small file reads per container: off the async threads.
        let rec = tokio::task::spawn_blocking(move || mgr.inspect_exec(&id))
            .await
            .map_err(|e| Error::internal("inspecting the exec", e))??;
        Ok(Response::new(pb::InspectExecResponse {
            exec: Some(exec_info(rec)),
        }))
    }
}

/// Client requests of an `Exec` call, until the client ends them: stdin
/// (through a writer task, so a process that does not read its stdin never
/// holds up its output), resizes, signals.
async fn forward_input(
    mut input: Streaming<pb::ExecRequest>,
    stdin: Option<Arc<FdIo>>,
    tty: bool,
    control: Arc<Control>,
    tx: Tx,
    stopping: watch::Receiver<bool>,
) {
    let attached = stdin.is_some();
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(4);
    let mut wtx = Some(wtx);
    if let Some(w) = stdin {
        tokio::spawn(async move {
            while let Some(chunk) = wrx.recv().await {
                if w.write_all(&chunk).await.is_err() {
                    // It closed its stdin: what comes is dropped.
                    while wrx.recv().await.is_some() {}
                    return;
                }
            }
            // End of input: a pipe closes as `w` is dropped; a terminal
            // (shared with the output) gets its end-of-file character.
            if tty {
                let _ = w.write_all(&[4]).await;
            }
        });
    }
    let fail = |status: Status| {
        let (tx, control) = (tx.clone(), control.clone());
        async move {
            let _ = tx.send(Err(status)).await;
            let _ = control.signal(libc::SIGKILL).await;
        }
    };
    loop {
        let msg = match input.message().await {
            Ok(Some(m)) => m,
            // Half-closed: no more input.
            Ok(None) => return,
            // The client is gone (the output side notices too).
            Err(_) => {
                client_gone(&control, &stopping);
                return;
            }
        };
        match msg.request {
            Some(In::Stdin(bytes)) => {
                if !attached {
                    return fail(invalid("stdin", "stdin was not attached (ExecSpec.stdin)")).await;
                }
                if bytes.len() > MAX_STDIN {
                    return fail(invalid("stdin", "a stdin message is at most 1 MiB")).await;
                }
                if let Some(w) = &wtx {
                    let _ = w.send(bytes).await;
                }
            }
            Some(In::CloseStdin(true)) => wtx = None,
            Some(In::Resize(s)) => match size(Some(&s)) {
                Ok((rows, cols)) => {
                    let _ = control.resize(rows, cols);
                }
                Err(status) => return fail(status).await,
            },
            Some(In::Signal(name)) => {
                if name.len() > 32 {
                    return fail(invalid("signal", "a signal is at most 32 bytes")).await;
                }
                match crate::signal::parse(&name) {
                    Ok(sig) => {
                        let _ = control.signal(sig as i32).await;
                    }
                    Err(e) => return fail(Error::from(e).into()).await,
                }
            }
            Some(In::Start(_)) => {
                return fail(invalid("start", "start comes once, first")).await;
            }
            Some(In::CloseStdin(false)) | None => {}
        }
    }
}

/// How a pumped exec ended.
struct Pumped {
    exit: ExitRecord,
    timed_out: bool,
}

/// Sends the process's output on `tx` as it comes until it has ended and
/// its output is drained (or [`DRAIN_AFTER_EXIT`] has passed); SIGKILLs it
/// at `kill_at`. `None` when `tx` closed (the client is gone).
async fn pump(
    stdout: &FdIo,
    stderr: Option<&FdIo>,
    mut exit: oneshot::Receiver<ExitRecord>,
    control: &Control,
    mut kill_at: Option<Instant>,
    tx: &Tx,
) -> Option<Pumped> {
    let (mut out_open, mut err_open) = (true, stderr.is_some());
    let (mut obuf, mut ebuf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut ended: Option<ExitRecord> = None;
    let mut timed_out = false;
    let mut drain_until = None;
    let far = || Instant::now() + Duration::from_secs(86_400);
    loop {
        if ended.is_some() && !out_open && !err_open {
            break;
        }
        let kill = kill_at.unwrap_or_else(far);
        let drained = drain_until.unwrap_or_else(far);
        tokio::select! {
            () = tx.closed() => return None,
            r = stdout.read(&mut obuf), if out_open => match r {
                Ok(n) if n > 0 => {
                    tx.send(message(Out::Stdout(obuf[..n].to_vec()))).await.ok()?;
                }
                _ => out_open = false,
            },
            r = async { match stderr { Some(e) => e.read(&mut ebuf).await, None => Ok(0) } }, if err_open => match r {
                Ok(n) if n > 0 => {
                    tx.send(message(Out::Stderr(ebuf[..n].to_vec()))).await.ok()?;
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
            () = tokio::time::sleep_until(kill), if kill_at.is_some() && ended.is_none() => {
                timed_out = true;
                kill_at = None;
                let _ = control.signal(libc::SIGKILL).await;
            }
            () = tokio::time::sleep_until(drained), if drain_until.is_some() => break,
        }
    }
    Some(Pumped {
        exit: ended?,
        timed_out,
    })
}
