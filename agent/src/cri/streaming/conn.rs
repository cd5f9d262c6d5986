//! One upgraded connection, split for a session whatever its transport:
//! [`Out`] sends channel data (cloneable: port-forward writes from one
//! task per port), [`In`] yields the client's messages as channels. A
//! writer task owns the sending half; once every `Out` is gone it ends the
//! session as the transport does (a WebSocket close, 1000; SPDY: FIN on
//! every stream, then GOAWAY), which client-go's readers take as the end
//! of every stream.
//!
//! Over SPDY the channels are the streams the client opened, each named
//! by its `streamType` ([`spdy_session`] waits for them as kubelet does).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::protocol::{self, Inbound, Outbound, Outcome, Proto};
use super::spdy::{self, StreamProto};

/// The upgraded connection.
pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// The largest client message taken (client-go writes at most 32 KiB).
const MESSAGE_MAX: usize = 1 << 20;
/// The most output bytes in one message.
pub const CHUNK: usize = 32 * 1024;
/// A connection with no message from the client (client-go pings every 5
/// s) and none sent for this long is dropped: kubelet's stream idle
/// timeout.
pub const IDLE: Duration = Duration::from_secs(4 * 3600);
/// How long the client has to answer the close before the socket is
/// dropped anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The client is gone (or the connection failed).
#[derive(Debug)]
pub struct Gone;

/// Wraps an upgraded connection, bounded in message size.
pub async fn accept(io: TokioIo<Upgraded>) -> Ws {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_MAX))
        .max_frame_size(Some(MESSAGE_MAX));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// The sending side of a session.
#[derive(Clone)]
pub struct Out {
    tx: Tx,
    proto: Proto,
}

#[derive(Clone)]
enum Tx {
    WebSocket(mpsc::Sender<Message>),
    /// The stream of each channel the client opened.
    Spdy {
        writer: spdy::Writer,
        streams: [Option<u32>; CHANNELS],
    },
}

/// Exec and attach channels (stdin to resize).
const CHANNELS: usize = 5;

impl Out {
    /// Sends `data` on `channel`; waits while the client is slow to read.
    /// Over SPDY, nothing is sent on a channel whose stream the client did
    /// not open, and empty data is no frame.
    pub async fn send(&self, channel: u8, data: &[u8]) -> Result<(), Gone> {
        match &self.tx {
            Tx::WebSocket(tx) => {
                let msg = match protocol::encode(self.proto, channel, data) {
                    Outbound::Binary(v) => Message::Binary(v.into()),
                    Outbound::Text(s) => Message::Text(s.into()),
                };
                tx.send(msg).await.map_err(|_| Gone)
            }
            Tx::Spdy { writer, streams } => {
                match streams.get(usize::from(channel)).copied().flatten() {
                    Some(id) if !data.is_empty() => writer.send(id, data).await,
                    _ => Ok(()),
                }
            }
        }
    }

    /// Writes the status of `outcome` on the error channel (if the
    /// protocol has one for it).
    pub async fn status(&self, outcome: &Outcome) -> Result<(), Gone> {
        match protocol::status(self.proto, outcome) {
            Some(doc) => self.send(protocol::ERROR, &doc).await,
            None => Ok(()),
        }
    }
}

/// The receiving side of a session.
pub struct In {
    rx: Rx,
    proto: Proto,
}

enum Rx {
    WebSocket(SplitStream<Ws>),
    Spdy {
        /// What came before every stream was up (client-go sends nothing
        /// then; another client might).
        early: VecDeque<spdy::Event>,
        events: mpsc::Receiver<spdy::Event>,
        /// The channel of each stream.
        channels: HashMap<u32, u8>,
        /// Refuses streams opened late.
        refuse: spdy::WeakWriter,
        /// The connection's reader, which ends with this.
        _reading: spdy::AbortOnDrop,
    },
}

impl In {
    /// The client's next message; `None` once it has closed the
    /// connection, broken the protocol, or been idle for [`IDLE`]. Over
    /// SPDY the end of a stream is the close of its channel (v5's
    /// message).
    pub async fn next(&mut self) -> Option<Inbound> {
        let stream = match &mut self.rx {
            Rx::WebSocket(stream) => stream,
            Rx::Spdy {
                early,
                events,
                channels,
                refuse,
                ..
            } => loop {
                let event = match early.pop_front() {
                    Some(e) => e,
                    None => events.recv().await?,
                };
                match event {
                    spdy::Event::Data { id, data } => {
                        if let Some(&channel) = channels.get(&id) {
                            return Some(Inbound::Data { channel, data });
                        }
                    }
                    spdy::Event::Fin { id } | spdy::Event::Reset { id } => {
                        if let Some(channel) = channels.remove(&id) {
                            return Some(Inbound::Close { channel });
                        }
                    }
                    spdy::Event::Open { id, .. } => refuse.try_refuse(id),
                }
            },
        };
        loop {
            let msg = match tokio::time::timeout(IDLE, stream.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    tracing::debug!("CRI streaming: reading the WebSocket: {e}");
                    return None;
                }
                Ok(None) | Err(_) => return None,
            };
            let payload = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => t.into(),
                // Pings are answered by tungstenite itself; they and pongs
                // only keep the connection from being idle.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(_) => return None,
            };
            match protocol::decode(self.proto, &payload) {
                Ok(Inbound::Empty) => continue,
                Ok(m) => return Some(m),
                Err(e) if e.fatal() => {
                    tracing::debug!("CRI streaming: {e}: closing the connection");
                    return None;
                }
                Err(e) => tracing::debug!("CRI streaming: {e}: dropped"),
            }
        }
    }
}

/// A connection split for a session.
pub struct Session {
    /// Sends.
    pub out: Out,
    /// Receives.
    pub input: In,
    /// The writer task, for [`finish`].
    pub writer: JoinHandle<()>,
}

/// Splits `ws` for a session speaking `proto`.
pub fn websocket(ws: Ws, proto: Proto) -> Session {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(16);
    let writer = tokio::spawn(write(sink, rx));
    Session {
        out: Out {
            tx: Tx::WebSocket(tx),
            proto,
        },
        input: In {
            rx: Rx::WebSocket(stream),
            proto,
        },
        writer,
    }
}

/// The streams an exec or attach waits for (the error stream always).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// stdin.
    pub stdin: bool,
    /// stdout.
    pub stdout: bool,
    /// stderr.
    pub stderr: bool,
    /// A terminal (a resize stream, when the protocol has one).
    pub tty: bool,
}

impl Expected {
    /// The streams of an exec or attach asking for these.
    pub fn of(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Expected {
        Expected {
            stdin,
            stdout,
            stderr,
            tty,
        }
    }
}

/// How long the client has to open its streams (kubelet's default).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes kept from streams already open while the others are
/// awaited (client-go sends none then); more ends the connection.
const EARLY_MAX: usize = 64 * 1024;

/// The session of an exec or attach over SPDY speaking `version`, once
/// the client has opened every stream `expected` (each accepted as it
/// comes, as kubelet does); `None` if it has not within
/// [`STREAMS_TIMEOUT`] or went away. Streams of an unknown or repeated
/// type are refused.
pub async fn spdy_session(
    conn: spdy::Conn,
    version: StreamProto,
    expected: Expected,
) -> Option<Session> {
    let spdy::Conn {
        writer,
        mut events,
        writing,
        reading,
    } = conn;
    let want = [
        expected.stdin,
        expected.stdout,
        expected.stderr,
        true,
        expected.tty && version.resize(),
    ];
    let count = want.iter().filter(|w| **w).count();
    let mut streams = [None; CHANNELS];
    let mut channels = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAMS_TIMEOUT;
    let mut early = Vec::new();
    let mut early_bytes = 0usize;
    let mut early_ends = 0usize;
    while channels.len() < count {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(_) => {
                tracing::debug!("CRI streaming: the client did not open its streams in time");
                return None;
            }
        };
        let (id, headers) = match event {
            spdy::Event::Open { id, headers } => (id, headers),
            // Before every stream is up (client-go sends nothing then):
            // kept for the streams already open, within EARLY_MAX.
            spdy::Event::Data { id, data } if channels.contains_key(&id) => {
                early_bytes += data.len();
                if early_bytes > EARLY_MAX {
                    tracing::debug!("CRI streaming: too much data before the streams were up");
                    return None;
                }
                early.push(spdy::Event::Data { id, data });
                continue;
            }
            e @ (spdy::Event::Fin { id } | spdy::Event::Reset { id })
                if channels.contains_key(&id) =>
            {
                // One end per stream is all there is to keep.
                early_ends += 1;
                if early_ends > 2 * CHANNELS {
                    return None;
                }
                early.push(e);
                continue;
            }
            // On a stream never opened: nothing to deliver it to.
            _ => continue,
        };
        let channel = headers.get("streamtype").and_then(channel_of);
        match channel {
            Some(c) if want[usize::from(c)] && streams[usize::from(c)].is_none() => {
                streams[usize::from(c)] = Some(id);
                channels.insert(id, c);
                writer.reply(id).await.ok()?;
            }
            _ => writer.reset(id, spdy::REFUSED_STREAM).await.ok()?,
        }
    }
    let refuse = writer.downgrade();
    let proto = version.status();
    Some(Session {
        out: Out {
            tx: Tx::Spdy { writer, streams },
            proto,
        },
        input: In {
            rx: Rx::Spdy {
                early: early.into(),
                events,
                channels,
                refuse,
                _reading: reading,
            },
            proto,
        },
        writer: writing,
    })
}

/// The channel of a `streamType`.
fn channel_of(kind: &str) -> Option<u8> {
    match kind {
        "stdin" => Some(protocol::STDIN),
        "stdout" => Some(protocol::STDOUT),
        "stderr" => Some(protocol::STDERR),
        "error" => Some(protocol::ERROR),
        "resize" => Some(protocol::RESIZE),
        _ => None,
    }
}

async fn write(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        match tokio::time::timeout(IDLE, sink.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!("CRI streaming: writing the WebSocket: {e}");
                return;
            }
            Err(_) => return,
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
}

/// Ends a session whose every [`Out`] has been dropped: waits for the
/// writer to send what is queued and the close, then for `reader` (the
/// task reading [`In`]) to see the client's answer to it. Dropping the
/// socket before that could reset it under output the client has not read
/// yet.
pub async fn finish(writer: JoinHandle<()>, reader: Option<JoinHandle<()>>) {
    let _ = tokio::time::timeout(IDLE, writer).await;
    if let Some(mut reader) = reader {
        if tokio::time::timeout(CLOSE_GRACE, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
}
