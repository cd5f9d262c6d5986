//! SPDY tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`, what
//! client-go's port-forward sends over WebSocket, as `crictl port-forward
//! --transport websocket` does): the WebSocket's binary messages carry the
//! SPDY connection's bytes, in order, cut anywhere. [`tunnel`] turns the
//! WebSocket into a byte stream for [`super::start`].

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::super::conn::{Ws, CLOSE_GRACE, IDLE};

/// Bytes buffered between the WebSocket and the SPDY side.
const BUFFER: usize = 64 * 1024;

/// The byte stream of the SPDY connection tunnelled in `ws`. A task
/// copies both ways: the client's binary messages in, the SPDY side's
/// bytes out as binary messages; the SPDY side's end closes the WebSocket
/// (1000), and the WebSocket's end is the end of the stream. Anything but
/// a binary message (pings aside) ends the tunnel.
pub fn tunnel(ws: Ws) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    tokio::spawn(pump(ws, theirs));
    ours
}

async fn pump(ws: Ws, pipe: DuplexStream) {
    let (mut sink, mut stream) = ws.split();
    let (mut from_spdy, mut to_spdy) = tokio::io::split(pipe);
    let inbound = async move {
        loop {
            let msg = match tokio::time::timeout(IDLE, stream.next()).await {
                Ok(Some(Ok(m))) => m,
                _ => break,
            };
            match msg {
                Message::Binary(b) => {
                    if to_spdy.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Text(_) | Message::Close(_) => break,
            }
        }
        // The SPDY side reads the end of its connection.
        let _ = to_spdy.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; BUFFER];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    let msg = Message::Binary(buf[..n].to_vec().into());
                    match tokio::time::timeout(IDLE, sink.send(msg)).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                _ => break,
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
    };
    // The client's end ends both; the SPDY side's end leaves the client
    // CLOSE_GRACE to answer the close (a client that pings on instead
    // does not keep the tunnel).
    tokio::pin!(inbound);
    tokio::select! {
        () = &mut inbound => {}
        () = outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, inbound).await;
        }
    }
}
