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

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::{self, Gone, In, Out, Session, CHUNK};
use super::protocol::{self, Inbound};
use super::spdy;
use crate::error::capped;

/// How long a connection to the pod's port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the second stream of a SPDY pair may take (kubelet's stream
/// creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The most SPDY connections forwarded (or waiting for their second
/// stream) at once on one session.
const PAIRS_MAX: usize = 256;

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

/// Serves one SPDY port-forward session: every complete pair of streams
/// the client opens is a connection to its port (one the grant names,
/// when it names any), until the client closes the connection.
pub async fn serve_spdy(conn: spdy::Conn, grant: PortForwardGrant) {
    let spdy::Conn {
        writer,
        mut events,
        writing,
        reading,
    } = conn;
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut to_pod: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None => break,
                Some(spdy::Event::Open { id, headers }) => {
                    let busy = pairs.len() + forwards.len() >= PAIRS_MAX;
                    let paired = match open_stream(id, &headers, &grant, busy) {
                        Some(opened) => pair_up(&mut pairs, opened),
                        None => Paired::Refused,
                    };
                    let answer = match paired {
                        Paired::Refused => writer.reset(id, spdy::REFUSED_STREAM).await,
                        _ => writer.reply(id).await,
                    };
                    if answer.is_err() {
                        break;
                    }
                    let Paired::Complete { data, error, port } = paired else {
                        continue;
                    };
                    let (tx, rx) = mpsc::channel(8);
                    to_pod.insert(data, tx);
                    let forward = Forward {
                        pod_id: grant.pod_id.clone(),
                        netns: grant.netns.clone(),
                        port,
                    };
                    let sink = Sink::Streams { writer: writer.clone(), data, error };
                    forwards.spawn(forward.run(sink, rx));
                }
                Some(spdy::Event::Data { id, data }) => {
                    if let Some(tx) = to_pod.get(&id) {
                        // Waits while the pod's side is slow to take it.
                        if tx.send(data).await.is_err() {
                            to_pod.remove(&id);
                        }
                    }
                }
                // The client's end of a data stream: the pod's connection
                // is shut down for writing (its answer still comes back).
                Some(spdy::Event::Fin { id } | spdy::Event::Reset { id }) => {
                    to_pod.remove(&id);
                }
            },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
            _ = sweep.tick() => {
                for (error, data) in stale_pairs(&mut pairs) {
                    if let Some(id) = error {
                        let _ = writer.send(id, b"timed out waiting for the data and error streams").await;
                        let _ = writer.fin(id).await;
                    }
                    if let Some(id) = data {
                        let _ = writer.reset(id, spdy::CANCEL).await;
                    }
                }
            }
        }
    }
    // The client is gone: every connection goes with it.
    forwards.shutdown().await;
    drop((writer, reading));
    conn::finish(writing, None).await;
}

/// A stream of a SPDY port-forward pair.
struct Opened {
    id: u32,
    request: String,
    port: u16,
    data: bool,
}

/// The stream's place in a pair, from its headers (kubelet's rules); `None`
/// refuses it: a bad or missing port or type, a port the grant does not
/// name, or too many pairs already.
fn open_stream(
    id: u32,
    headers: &spdy::Headers,
    grant: &PortForwardGrant,
    busy: bool,
) -> Option<Opened> {
    let port = headers
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p > 0);
    let data = match headers.get("streamtype") {
        Some("data") => true,
        Some("error") => false,
        _ => {
            tracing::debug!("CRI port-forward: a stream of no known type: refused");
            return None;
        }
    };
    let Some(port) = port else {
        tracing::debug!("CRI port-forward: a stream without a good port header: refused");
        return None;
    };
    if busy || (!grant.ports.is_empty() && !grant.ports.contains(&port)) {
        tracing::debug!(port, busy, "CRI port-forward: a stream refused");
        return None;
    }
    // Without a request id the pair is the error stream and the data
    // stream after it, as kubelet pairs them.
    let request = match headers.get("requestid") {
        Some(r) => crate::error::capped(r).into_owned(),
        None if data => id.saturating_sub(2).to_string(),
        None => id.to_string(),
    };
    Some(Opened {
        id,
        request,
        port,
        data,
    })
}

/// Half of a SPDY port-forward pair, waiting for the other.
struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    since: Instant,
}

/// What came of a stream filed with its pair.
#[derive(Debug, PartialEq, Eq)]
enum Paired {
    /// A repeated stream, or one naming another port than its pair's.
    Refused,
    /// Half a pair.
    Waiting,
    /// The pair is complete.
    Complete { data: u32, error: u32, port: u16 },
}

/// Files `s` with its pair.
fn pair_up(pairs: &mut HashMap<String, Pair>, s: Opened) -> Paired {
    let pair = pairs.entry(s.request.clone()).or_insert(Pair {
        port: s.port,
        data: None,
        error: None,
        since: Instant::now(),
    });
    let slot = if s.data {
        &mut pair.data
    } else {
        &mut pair.error
    };
    if slot.is_some() || pair.port != s.port {
        return Paired::Refused;
    }
    *slot = Some(s.id);
    let (Some(data), Some(error)) = (pair.data, pair.error) else {
        return Paired::Waiting;
    };
    let port = pair.port;
    pairs.remove(&s.request);
    Paired::Complete { data, error, port }
}

/// The pairs whose second stream has not come in [`PAIR_TIMEOUT`], taken
/// out: (error stream, data stream).
fn stale_pairs(pairs: &mut HashMap<String, Pair>) -> Vec<(Option<u32>, Option<u32>)> {
    let now = Instant::now();
    let mut stale = Vec::new();
    pairs.retain(|_, p| {
        let keep = now.duration_since(p.since) < PAIR_TIMEOUT;
        if !keep {
            stale.push((p.error, p.data));
        }
        keep
    });
    stale
}

/// Where a forward's data and errors go.
enum Sink {
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
struct Forward {
    pod_id: String,
    netns: Option<PathBuf>,
    port: u16,
}

impl Forward {
    /// Connects, then copies both ways until the pod's side has ended (the
    /// client's end only shuts the connection down for writing, so a
    /// response still comes back).
    async fn run(self, sink: Sink, from_client: mpsc::Receiver<Vec<u8>>) {
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
