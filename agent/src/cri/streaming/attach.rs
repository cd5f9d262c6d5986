//! An attach session: the client on a running container's stdin and
//! output, through its monitor's attach socket (`berth_runtime::attach`,
//! the one berth's own Attach uses), which the monitor holds across
//! berthd restarts. The output from the moment of attaching goes out on
//! channels 1 and 2 (or 1 alone, with a terminal); channel 0 feeds the
//! container's stdin and channel 4 resizes its terminal. When the
//! container's output ends (it exited) the status is written and the
//! connection closes; a client that goes away detaches, and the container
//! runs on.
//!
//! The client closing its stdin closes the container's only for a
//! container made with `stdin_once` (and no terminal), as with containerd:
//! then its stdin also closes when the client detaches. Otherwise the
//! next client may still write to it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::attach as proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::conn::{self, In, Out, Session, CHUNK};
use super::protocol::{self, Inbound, Outcome};
use super::resize::ResizeStream;
use crate::container::state::State;
use crate::container::Manager;
use crate::cri::containers;

/// How long the monitor has to take the client on.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// An attach granted by the Attach call.
#[derive(Debug, Clone)]
pub struct AttachGrant {
    /// The container's full id.
    pub container_id: String,
    /// The client sends stdin.
    pub stdin: bool,
    /// The client's end of stdin (or its detaching) closes the
    /// container's.
    pub stdin_once: bool,
    /// The container has a terminal.
    pub tty: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a terminal).
    pub stderr: bool,
}

/// Serves one attach session.
pub async fn serve(session: Session, grant: AttachGrant, mgr: Arc<Manager>) {
    let Session { out, input, writer } = session;
    let first = if grant.stdout {
        protocol::STDOUT
    } else if grant.stderr {
        protocol::STDERR
    } else {
        protocol::ERROR
    };
    let _ = out.send(first, &[]).await;
    let (outcome, reader) = match attach(&mgr, &grant).await {
        Ok((from_monitor, to_monitor)) => {
            let (gone_tx, gone) = oneshot::channel();
            let mut reader = tokio::spawn(read_input(input, to_monitor, grant.clone(), gone_tx));
            match relay(from_monitor, &out, &grant, gone).await {
                Some(outcome) => (Some(outcome), Some(reader)),
                // Gone: dropping the socket detached it. The reader ends
                // on its own once the client's side has (then closing a
                // stdin_once container's stdin); a client that went away
                // without a word gets a grace, as a close does.
                None => {
                    if tokio::time::timeout(conn::CLOSE_GRACE, &mut reader)
                        .await
                        .is_err()
                    {
                        reader.abort();
                    }
                    (None, None)
                }
            }
        }
        Err(why) => (Some(Outcome::Internal(why)), None),
    };
    if let Some(outcome) = outcome {
        let _ = out.status(&outcome).await;
    }
    drop(out);
    conn::finish(writer, reader).await;
}

/// Connects to the container's monitor and waits for it to take the
/// client on: output from then on reaches it.
async fn attach(
    mgr: &Manager,
    grant: &AttachGrant,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), String> {
    let entry = containers::get(mgr, &grant.container_id).map_err(|s| s.message().to_string())?;
    let not_running = |state: &str| {
        format!(
            "container {} is not running (it is {state})",
            grant.container_id
        )
    };
    let rec = entry.snapshot();
    if rec.state != State::Running {
        return Err(not_running(rec.state.as_str()));
    }
    let sock = match connect(&entry.dir).await {
        Ok(s) => s,
        Err(e) => {
            let now = entry.snapshot();
            return Err(match now.state {
                State::Running => format!("reaching the container's monitor: {e}"),
                other => not_running(other.as_str()),
            });
        }
    };
    let (mut from_monitor, to_monitor) = sock.into_split();
    let mut ack = [0u8; proto::HEADER_LEN];
    match tokio::time::timeout(ACK_TIMEOUT, from_monitor.read_exact(&mut ack)).await {
        Ok(Ok(_)) if ack[0] == proto::OUT_ATTACHED => Ok((from_monitor, to_monitor)),
        Ok(Ok(_)) if ack[0] == proto::OUT_BUSY => {
            Err("the container has as many attached clients as it takes".into())
        }
        Ok(Ok(_)) => Err("the container's monitor did not acknowledge the client".into()),
        // Closed without taking the client: the container is exiting.
        Ok(Err(_)) => Err(not_running("exiting")),
        Err(_) => Err("the container's monitor did not take the client on".into()),
    }
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

/// The client's messages to frames for the monitor, until the client
/// closes the connection (then `gone` fires). The socket's writing half
/// lives as long as this task: shutting it down early is not needed, and
/// the monitor only sees a detach when the whole socket closes.
async fn read_input(
    mut input: In,
    mut to_monitor: OwnedWriteHalf,
    grant: AttachGrant,
    gone: oneshot::Sender<()>,
) {
    let mut stdin_open = grant.stdin;
    let mut resize = ResizeStream::default();
    let mut frame = Vec::new();
    let mut monitor_open = true;
    while let Some(msg) = input.next().await {
        frame.clear();
        match msg {
            Inbound::Data {
                channel: protocol::STDIN,
                data,
            } if stdin_open => {
                for chunk in data.chunks(proto::MAX_PAYLOAD) {
                    proto::encode(&mut frame, proto::IN_STDIN, chunk);
                }
            }
            Inbound::Data {
                channel: protocol::RESIZE,
                data,
            } if grant.tty => match resize.push(&data) {
                Ok(sizes) => {
                    for s in sizes {
                        let size = proto::resize_payload(s.height, s.width);
                        proto::encode(&mut frame, proto::IN_RESIZE, &size);
                    }
                }
                Err(e) => tracing::debug!("CRI attach: {e}"),
            },
            Inbound::Close {
                channel: protocol::STDIN,
            } if stdin_open => {
                stdin_open = false;
                if grant.stdin_once {
                    proto::encode(&mut frame, proto::IN_CLOSE_STDIN, &[]);
                }
            }
            Inbound::Data { .. } | Inbound::Close { .. } | Inbound::Empty => {}
        }
        // A closed socket: the container exited, and the output side ends
        // the session; the client's messages are read on meanwhile.
        if monitor_open && !frame.is_empty() && to_monitor.write_all(&frame).await.is_err() {
            monitor_open = false;
        }
    }
    // Detached with its stdin open: a stdin_once container's closes too.
    if stdin_open && grant.stdin_once && monitor_open {
        frame.clear();
        proto::encode(&mut frame, proto::IN_CLOSE_STDIN, &[]);
        let _ = to_monitor.write_all(&frame).await;
    }
    let _ = gone.send(());
}

/// Output frames from the monitor to the client until the monitor closes
/// the socket (the container's output ended: its outcome) or the client
/// is gone (`None`).
async fn relay(
    mut from_monitor: OwnedReadHalf,
    out: &Out,
    grant: &AttachGrant,
    mut gone: oneshot::Receiver<()>,
) -> Option<Outcome> {
    let mut header = [0u8; proto::HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        tokio::select! {
            _ = &mut gone => return None,
            r = from_monitor.read_exact(&mut header) => {
                if r.is_err() {
                    return Some(Outcome::Success);
                }
            }
        }
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > proto::MAX_PAYLOAD {
            return Some(Outcome::Internal(
                "the container's monitor sent a bad frame".into(),
            ));
        }
        payload.resize(len, 0);
        tokio::select! {
            _ = &mut gone => return None,
            r = from_monitor.read_exact(&mut payload) => {
                if r.is_err() {
                    return Some(Outcome::Success);
                }
            }
        }
        let (channel, wanted) = match header[0] {
            proto::OUT_STDERR => (protocol::STDERR, grant.stderr),
            _ => (protocol::STDOUT, grant.stdout),
        };
        if wanted {
            for chunk in payload.chunks(CHUNK) {
                if out.send(channel, chunk).await.is_err() {
                    return None;
                }
            }
        }
    }
}
