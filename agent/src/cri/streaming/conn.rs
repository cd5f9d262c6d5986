//! One upgraded WebSocket connection, split for a session: [`Out`] sends
//! framed channel data (cloneable: port-forward writes from one task per
//! port), [`In`] yields the client's unframed messages. A writer task owns
//! the sending half; once every `Out` is gone it sends the close (1000,
//! normal), which client-go's readers take as the end of every stream.

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
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    tx: mpsc::Sender<Message>,
    proto: Proto,
}

impl Out {
    /// Sends `data` on `channel`; waits while the client is slow to read.
    pub async fn send(&self, channel: u8, data: &[u8]) -> Result<(), Gone> {
        let msg = match protocol::encode(self.proto, channel, data) {
            Outbound::Binary(v) => Message::Binary(v.into()),
            Outbound::Text(s) => Message::Text(s.into()),
        };
        self.tx.send(msg).await.map_err(|_| Gone)
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
    stream: SplitStream<Ws>,
    proto: Proto,
}

impl In {
    /// The client's next message; `None` once it has closed the
    /// connection, broken the protocol, or been idle for [`IDLE`].
    pub async fn next(&mut self) -> Option<Inbound> {
        loop {
            let msg = match tokio::time::timeout(IDLE, self.stream.next()).await {
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

/// Splits `ws` for a session speaking `proto`; the handle is the writer
/// task's, for [`finish`].
pub fn split(ws: Ws, proto: Proto) -> (Out, In, JoinHandle<()>) {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(16);
    let writer = tokio::spawn(write(sink, rx));
    (Out { tx, proto }, In { stream, proto }, writer)
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
