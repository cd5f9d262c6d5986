//! A port-forward session. Each forwarded connection is one TCP
//! connection to 127.0.0.1:port (or `[::1]`) inside the pod's network
//! namespace, carried one of two ways:
//! - kubelet's WebSocket variant ([`serve`]): for the i-th port of the
//!   query, channel 2i carries the data both ways and channel 2i+1 the
//!   server's error text; both start with the port (2 bytes, little
//!   endian). The connections are made when the client connects and the
//!   session closes once every one has ended.
//! - SPDY's `portforward.k8s.io` ([`serve_spdy`]): the client opens a data
//!   and an error stream per connection, paired by their `requestID`
//!   header and naming the `port`; each pair is connected when it is
//!   complete (kubectl opens one per local connection), and the session
//!   lasts until the client closes it.
//!
//! The socket is made by a short-lived thread that has joined the pod's
//! network namespace (a socket keeps the namespace it was made in), so no
//! thread of berthd's runtime ever changes namespace.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::conn::{self, Gone, In, Out, Session, CHUNK};
use super::protocol::{self, Inbound};
use super::spdy;
use crate::error::capped;

mod spdy_pairs;
pub use spdy_pairs::serve_spdy;

/// How long a connection to the pod's port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A port-forward granted by the PortForward call.
#[derive(Debug, Clone)]
pub struct PortForwardGrant {
    /// The pod's full id.
    pub pod_id: String,
    /// The ports the call named; empty: any (crictl and kubelet name
    /// none, the query does).
    pub ports: Vec<u16>,
    /// The pod's network namespace file; `None`: the host's network.
    pub netns: Option<PathBuf>,
}

/// Serves one WebSocket port-forward session for `ports` (from the
/// query, already checked against the grant).
pub async fn serve(session: Session, grant: PortForwardGrant, ports: Vec<u16>) {
    let Session { out, input, writer } = session;
    let mut to_pod = Vec::with_capacity(ports.len());
    let mut forwards = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        // The query has at most PORTS_MAX (64) ports: channels up to 127.
        let (Ok(data), Ok(error)) = (u8::try_from(2 * i), u8::try_from(2 * i + 1)) else {
            break;
        };
        let prefix = protocol::port_prefix(port);
        if out.send(data, &prefix).await.is_err() || out.send(error, &prefix).await.is_err() {
            return;
        }
        let (tx, rx) = mpsc::channel(8);
        to_pod.push(Some(tx));
        let forward = Forward {
            pod_id: grant.pod_id.clone(),
            netns: grant.netns.clone(),
            port,
        };
        let sink = Sink::Channels {
            out: out.clone(),
            data,
            error,
        };
        forwards.spawn(forward.run(sink, rx));
    }
    drop(out);
    let (gone_tx, mut gone) = oneshot::channel();
    let reader = tokio::spawn(read_input(input, to_pod, gone_tx));
    loop {
        tokio::select! {
            done = forwards.join_next() => if done.is_none() { break },
            // The client left: every connection goes with it.
            _ = &mut gone => {
                forwards.shutdown().await;
                reader.abort();
                return;
            }
        }
    }
    conn::finish(writer, Some(reader)).await;
}

/// The client's data to each port's connection, until the client closes
/// the connection (then `gone` fires). A v5 close of a data channel ends
/// what goes to that port (its connection is shut down for writing).
async fn read_input(
    mut input: In,
    mut to_pod: Vec<Option<mpsc::Sender<Vec<u8>>>>,
    gone: oneshot::Sender<()>,
) {
    while let Some(msg) = input.next().await {
        match msg {
            Inbound::Data { channel, data } if channel % 2 == 0 => {
                if let Some(Some(tx)) = to_pod.get(usize::from(channel / 2)) {
                    // Waits while the pod's side is slow to take it.
                    let _ = tx.send(data).await;
                }
            }
            Inbound::Close { channel } if channel % 2 == 0 => {
                if let Some(tx) = to_pod.get_mut(usize::from(channel / 2)) {
                    *tx = None;
                }
            }
            // The error channels are the server's only.
            Inbound::Data { .. } | Inbound::Close { .. } | Inbound::Empty => {}
        }
    }
    let _ = gone.send(());
}

/// Where a forward's data and errors go.
pub(super) enum Sink {
    /// Its channels on a WebSocket session.
    Channels { out: Out, data: u8, error: u8 },
    /// Its pair of SPDY streams.
    Streams {
        writer: spdy::Writer,
        data: u32,
        error: u32,
    },
}

impl Sink {
    async fn data(&self, bytes: &[u8]) -> Result<(), Gone> {
        match self {
            Sink::Channels { out, data, .. } => out.send(*data, bytes).await,
            Sink::Streams { writer, data, .. } => writer.send(*data, bytes).await,
        }
    }

    async fn error(&self, text: &str) -> Result<(), Gone> {
        match self {
            Sink::Channels { out, error, .. } => out.send(*error, text.as_bytes()).await,
            Sink::Streams { writer, error, .. } => writer.send(*error, text.as_bytes()).await,
        }
    }

    /// The forward is over: a SPDY pair's streams end (a failed one's data
    /// stream is reset, as kubelet does); channels end with the session.
    async fn end(&self, failed: bool) {
        if let Sink::Streams {
            writer,
            data,
            error,
        } = self
        {
            let _ = if failed {
                writer.reset(*data, spdy::CANCEL).await
            } else {
                writer.fin(*data).await
            };
            let _ = writer.fin(*error).await;
        }
    }
}

/// One forwarded connection.
pub(super) struct Forward {
    pub(super) pod_id: String,
    pub(super) netns: Option<PathBuf>,
    pub(super) port: u16,
}

impl Forward {
    /// Connects, then copies both ways until the pod's side has ended (the
    /// client's end only shuts the connection down for writing, so a
    /// response still comes back).
    pub(super) async fn run(self, sink: Sink, from_client: mpsc::Receiver<Vec<u8>>) {
        let failed = self.copy(&sink, from_client).await.is_err();
        sink.end(failed).await;
    }

    async fn copy(self, sink: &Sink, mut from_client: mpsc::Receiver<Vec<u8>>) -> Result<(), ()> {
        let stream = match dial(self.netns.clone(), self.port).await {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "error forwarding port {} to pod {}: {}",
                    self.port,
                    capped(&self.pod_id),
                    e
                );
                tracing::debug!("CRI port-forward: {msg}");
                let _ = sink.error(&msg).await;
                return Err(());
            }
        };
        let (mut from_pod, mut to_pod) = stream.into_split();
        // Aborted when this forward ends or is cancelled (its client gone):
        // a copier blocked writing to a pod that does not read would else
        // hold the pod's connection for ever.
        let _writer = AbortOnDrop(tokio::spawn(async move {
            while let Some(chunk) = from_client.recv().await {
                if to_pod.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = to_pod.shutdown().await;
            // Keep taking what the client sends, so it is never blocked.
            while from_client.recv().await.is_some() {}
        }));
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if sink.data(&buf[..n]).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let msg = format!("error reading port {}: {e}", self.port);
                    let _ = sink.error(&msg).await;
                    return Err(());
                }
            }
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection to `port` on the loopback of `netns` (the host's when
/// `None`).
async fn dial(netns: Option<PathBuf>, port: u16) -> io::Result<TcpStream> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("berth-portfwd".into())
        .spawn(move || {
            let _ = tx.send(dial_in(netns.as_deref(), port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the connecting thread ended"))??;
    TcpStream::from_std(stream)
}

/// On a thread of its own (it changes namespace and then ends): joins
/// `netns`, connects, and returns the socket ready for tokio.
fn dial_in(netns: Option<&Path>, port: u16) -> io::Result<std::net::TcpStream> {
    if let Some(path) = netns {
        let ns = std::fs::File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening the pod's network namespace: {e}"),
            )
        })?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("joining the pod's network namespace: {e}")))?;
    }
    // As containerd: IPv4's loopback first, IPv6's if nothing listens there.
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = match std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|_| e)?
        }
    };
    stream.set_nonblocking(true)?;
    Ok(stream)
}
