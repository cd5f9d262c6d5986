//! Containers.Attach: a client on a container's stdin, stdout and stderr,
//! or its terminal.
//!
//! A container with an open stdin or a terminal is reached through its
//! monitor's attach socket (`berth_runtime::attach`), which holds them
//! across berthd restarts: each call is one connection, relayed both
//! ways. A container without either has nothing to write to; its output
//! is followed in its log, as RunAttached does. Either way the call ends
//! with the container's exit; a client that ends the call detaches.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::attach_request::Request as In;
use berth::v1::attach_response::Response as Out;
use berth_runtime::attach as proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Response, Status, Streaming};

use super::convert::container_to_proto;
use super::exec::{invalid, size};
use crate::container::record::Record;
use crate::container::state::State;
use crate::container::{Entry, Manager, StartAttach};
use crate::error::Error;
use crate::events::wire::exit_to_proto;

/// The responses of one Attach call.
pub type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::AttachResponse, Status>> + Send>>;
type Tx = mpsc::Sender<Result<pb::AttachResponse, Status>>;

/// Longest container key, in bytes.
pub const MAX_KEY: usize = 256;
/// Most stdin bytes in one request.
pub const MAX_STDIN: usize = 1 << 20;
/// How long the monitor has to take a client on.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Most output bytes in one response.
const CHUNK: usize = 64 * 1024;

/// Why an attach could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Not running, and the call did not ask for a start.
    #[error(
        "container {id} is not running (it is {state}): attach needs a running container, or start"
    )]
    NotRunning {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// Stdin asked for, on a container created without an open stdin.
    #[error("container {id} was created without an open stdin (-i): attach without stdin")]
    NoStdin {
        /// The container.
        id: String,
    },
    /// The container has as many attached clients as it takes.
    #[error("the container has 16 attached clients, the most it takes")]
    Busy,
    /// The monitor's socket could not be reached.
    #[error("reaching the container's monitor: {0}")]
    Socket(#[source] std::io::Error),
}

fn refused(e: AttachError) -> Status {
    Error::Attach(e).into()
}

fn message(r: Out) -> Result<pb::AttachResponse, Status> {
    Ok(pb::AttachResponse { response: Some(r) })
}

fn not_running(rec: &Record) -> Status {
    refused(AttachError::NotRunning {
        id: rec.id.clone(),
        state: rec.state.as_str(),
    })
}

/// Serves one Attach call.
pub async fn attach(
    mgr: Arc<Manager>,
    mut requests: Streaming<pb::AttachRequest>,
) -> Result<Response<AttachStream>, Status> {
    let open = match requests.message().await? {
        Some(pb::AttachRequest {
            request: Some(In::Open(open)),
        }) => open,
        _ => return Err(invalid("open", "the first message must carry open")),
    };
    if open.id.is_empty() {
        return Err(invalid("open.id", "a container id or name is required"));
    }
    if open.id.len() > MAX_KEY {
        return Err(invalid("open.id", "a container key is at most 256 bytes"));
    }
    let terminal_size = size(open.terminal_size.as_ref())?;
    let entry = mgr.get(&open.id)?;
    let rec = entry.snapshot();
    if open.stdin && !rec.spec.open_stdin {
        return Err(refused(AttachError::NoStdin { id: rec.id }));
    }
    let (tx, rx) = mpsc::channel(16);
    if rec.spec.open_stdin || rec.spec.tty {
        through_monitor(mgr, entry, open, terminal_size, requests, tx).await?;
    } else {
        through_log(mgr, entry, open.start, requests, tx).await?;
    }
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

/// Attaches through the monitor's socket.
async fn through_monitor(
    mgr: Arc<Manager>,
    entry: Arc<Entry>,
    open: pb::AttachOpen,
    terminal_size: (u16, u16),
    requests: Streaming<pb::AttachRequest>,
    tx: Tx,
) -> Result<(), Status> {
    let rec = if open.start {
        mgr.start_attached(&entry, StartAttach { terminal_size })
            .await?
    } else {
        let rec = entry.snapshot();
        if rec.state != State::Running {
            return Err(not_running(&rec));
        }
        rec
    };
    let sock = match connect(&entry.dir).await {
        Ok(s) => s,
        Err(e) => {
            // It exited meanwhile, or never had a socket (a container
            // started by a berthd before Attach): either way, not running
            // as far as attach goes.
            let now = entry.snapshot();
            return Err(match now.state {
                State::Running => refused(AttachError::Socket(e)),
                _ => not_running(&now),
            });
        }
    };
    let (mut from_monitor, to_monitor) = sock.into_split();
    // Output from here on reaches this client.
    let mut ack = [0u8; proto::HEADER_LEN];
    match tokio::time::timeout(ACK_TIMEOUT, from_monitor.read_exact(&mut ack)).await {
        Ok(Ok(_)) if ack[0] == proto::OUT_ATTACHED => {}
        Ok(Ok(_)) if ack[0] == proto::OUT_BUSY => return Err(refused(AttachError::Busy)),
        Ok(Ok(_)) => {
            return Err(refused(AttachError::Socket(std::io::Error::other(
                "the monitor did not acknowledge the client",
            ))))
        }
        // Closed without taking the client: the container has exited and
        // its monitor is finishing (its exit is on the way).
        Ok(Err(_)) => {
            let now = entry.snapshot();
            return Err(refused(AttachError::NotRunning {
                id: now.id.clone(),
                state: match now.state {
                    State::Running => "exiting",
                    other => other.as_str(),
                },
            }));
        }
        Err(_) => {
            return Err(refused(AttachError::Socket(std::io::Error::other(
                "the monitor did not take the client on",
            ))))
        }
    }
    // Room for it: the channel is new.
    let _ = tx.try_send(message(Out::Attached(container_to_proto(
        &rec,
        mgr.cgroups().parent(),
    ))));
    let mut input = tokio::spawn(forward_input(requests, to_monitor, open.stdin, tx.clone()));
    let removed = rec.spec.auto_remove;
    tokio::spawn(async move {
        let relayed = tokio::select! {
            relayed = relay_output(from_monitor, &tx) => relayed,
            // Asked to detach: what came before is with the monitor, and
            // closing the socket (its halves dropped) detaches the client;
            // dropping `tx` ends the call with OK.
            Ok(Input::Detach) = &mut input => false,
        };
        input.abort();
        // The client is gone: dropping the socket detached it.
        if relayed {
            send_exit(&mgr, &entry, removed, &tx).await;
        }
    });
    Ok(())
}

/// Connects to the monitor's socket in `dir`, through /proc/self/fd when
/// its path is longer than a socket address holds.
async fn connect(dir: &Path) -> std::io::Result<UnixStream> {
    let path = dir.join(proto::SOCKET);
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path).await;
    }
    let d = std::fs::File::open(dir)?;
    let via = format!(
        "/proc/self/fd/{}/{}",
        std::os::fd::AsRawFd::as_raw_fd(&d),
        proto::SOCKET
    );
    UnixStream::connect(via).await
}

/// How the client's side of a call ended.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    /// It asked to detach.
    Detach,
    /// A request the call cannot take (its error sent), or the monitor's
    /// socket closed (the container exited).
    Ended,
}

/// Client requests to frames for the monitor, until the client detaches
/// or stops sending. A request the call cannot take ends it with an
/// error.
async fn forward_input(
    mut requests: Streaming<pb::AttachRequest>,
    mut to_monitor: OwnedWriteHalf,
    stdin_allowed: bool,
    tx: Tx,
) -> Input {
    let mut frame = Vec::new();
    while let Some(Ok(req)) = requests.next().await {
        frame.clear();
        match req.request {
            Some(In::Detach(true)) => return Input::Detach,
            Some(In::Detach(false)) => continue,
            Some(In::Stdin(bytes)) => {
                if !stdin_allowed {
                    let _ = tx
                        .send(Err(invalid(
                            "stdin",
                            "stdin needs open.stdin in the first message",
                        )))
                        .await;
                    return Input::Ended;
                }
                if bytes.len() > MAX_STDIN {
                    let _ = tx
                        .send(Err(invalid("stdin", "stdin is at most 1 MiB per message")))
                        .await;
                    return Input::Ended;
                }
                proto::encode(&mut frame, proto::IN_STDIN, &bytes);
            }
            Some(In::Resize(s)) => match size(Some(&s)) {
                Ok((rows, cols)) => proto::encode(
                    &mut frame,
                    proto::IN_RESIZE,
                    &proto::resize_payload(rows, cols),
                ),
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return Input::Ended;
                }
            },
            Some(In::CloseStdin(true)) if stdin_allowed => {
                proto::encode(&mut frame, proto::IN_CLOSE_STDIN, &[]);
            }
            Some(In::CloseStdin(_)) => continue,
            Some(In::Open(_)) | None => {
                let _ = tx
                    .send(Err(invalid("open", "only the first message carries open")))
                    .await;
                return Input::Ended;
            }
        }
        // The monitor closes the socket when the container has exited;
        // the output side then ends the call.
        if to_monitor.write_all(&frame).await.is_err() {
            return Input::Ended;
        }
    }
    // The client has sent all it will, yet still wants the output: the
    // socket stays whole (dropping this half would shut it down for
    // writing) until the output side ends the call and this task.
    std::future::pending::<()>().await;
    drop(to_monitor);
    Input::Ended
}

/// Output frames from the monitor to the client, until the monitor ends
/// them (the container exited: true) or the client is gone (false).
async fn relay_output(mut from_monitor: OwnedReadHalf, tx: &Tx) -> bool {
    tokio::select! {
        relayed = relay_frames(&mut from_monitor, tx) => relayed,
        // A client that went away between two outputs is let go at once.
        () = tx.closed() => false,
    }
}

async fn relay_frames(from_monitor: &mut OwnedReadHalf, tx: &Tx) -> bool {
    let mut header = [0u8; proto::HEADER_LEN];
    loop {
        if from_monitor.read_exact(&mut header).await.is_err() {
            return !tx.is_closed();
        }
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > proto::MAX_PAYLOAD {
            let _ = tx
                .send(Err(Status::internal(
                    "the container's monitor sent a bad frame",
                )))
                .await;
            return false;
        }
        let mut payload = vec![0u8; len];
        if from_monitor.read_exact(&mut payload).await.is_err() {
            return !tx.is_closed();
        }
        for chunk in payload.chunks(CHUNK) {
            let out = match header[0] {
                proto::OUT_STDERR => Out::Stderr(chunk.to_vec()),
                _ => Out::Stdout(chunk.to_vec()),
            };
            if tx.send(message(out)).await.is_err() {
                return false;
            }
        }
    }
}

/// Attaches to a container without stdin or terminal: its log, followed
/// from now (opened before a start, so the run's first line is in it).
async fn through_log(
    mgr: Arc<Manager>,
    entry: Arc<Entry>,
    start: bool,
    mut requests: Streaming<pb::AttachRequest>,
    tx: Tx,
) -> Result<(), Status> {
    let rec = entry.snapshot();
    if !start && rec.state != State::Running {
        return Err(not_running(&rec));
    }
    let follow = pb::LogsRequest {
        id: rec.id.clone(),
        follow: true,
        tail: Some(0),
        ..Default::default()
    };
    let mut output = super::logs::open(&entry, follow).await?;
    let rec = if start { mgr.start(&entry).await? } else { rec };
    let _ = tx.try_send(message(Out::Attached(container_to_proto(
        &rec,
        mgr.cgroups().parent(),
    ))));
    let removed = rec.spec.auto_remove;
    tokio::spawn(async move {
        // Nothing to forward; a resize or close_stdin means nothing here.
        // Reading keeps the call's flow control going until the client
        // stops sending, or detaches: then the call ends (OK, no exit).
        let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = tokio::spawn(async move {
            while let Some(Ok(req)) = requests.next().await {
                if matches!(req.request, Some(In::Detach(true))) {
                    let _ = detach_tx.send(());
                    return;
                }
            }
            // The sender stays, so an ended request stream is no detach.
            std::future::pending::<()>().await;
            drop(detach_tx);
        });
        loop {
            let item = tokio::select! {
                item = output.next() => item,
                Ok(()) = &mut detach_rx => return,
            };
            let Some(item) = item else { break };
            let sent = match item {
                Ok(line) => {
                    let out = if line.stream == pb::LogStream::Stderr as i32 {
                        Out::Stderr(line.data)
                    } else {
                        Out::Stdout(line.data)
                    };
                    tx.send(message(out)).await
                }
                Err(status) => tx.send(Err(status)).await,
            };
            if sent.is_err() {
                drain.abort();
                return;
            }
        }
        drain.abort();
        send_exit(&mgr, &entry, removed, &tx).await;
    });
    Ok(())
}

/// Sends the run's exit once it is recorded (and the container removed,
/// with auto-remove), the call's last message.
async fn send_exit(mgr: &Arc<Manager>, entry: &Arc<Entry>, removed: bool, tx: &Tx) {
    let last = match mgr.wait(entry, removed).await {
        Ok((_, exit)) => message(Out::Exit(exit_to_proto(&exit))),
        Err(e) => Err(Status::from(Error::from(e))),
    };
    let _ = tx.send(last).await;
}
