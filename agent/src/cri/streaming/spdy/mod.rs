//! SPDY/3.1 as Kubernetes streams over it: crictl's default transport,
//! client-go's SPDY executors and port-forward, and what kubelet forwards
//! for `kubectl exec/attach/port-forward`. The client opens every stream
//! (SYN_STREAM, its kind in a `streamType` header); the server accepts one
//! with a SYN_REPLY or refuses it with RST_STREAM, sends DATA, and ends
//! its side with a FIN. No flow control is spoken, as spdystream speaks
//! none: TCP's is the only one.
//!
//! [`start`] splits an upgraded connection into a reader task, which turns
//! frames into [`Event`]s (and answers pings), and a writer task, which
//! [`Writer`]s feed. Once every `Writer` is gone the writer task ends the
//! streams still open on the server's side, says GOAWAY and shuts its half
//! of the socket down.

mod dictionary;
mod frame;
mod headers;
mod tunnel;
mod version;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use frame::{CANCEL, REFUSED_STREAM};
pub use headers::Headers;
pub use tunnel::tunnel;
pub use version::{negotiate, StreamProto, EXEC, PORT_FORWARD};

use super::conn::{Gone, CLOSE_GRACE, IDLE};
use frame::{Frame, DATA_MAX};
use headers::{Deflater, Inflater};

/// What the client did.
#[derive(Debug)]
pub enum Event {
    /// It opened stream `id`; it waits for [`Writer::reply`] (or a
    /// [`Writer::reset`]).
    Open {
        /// The stream.
        id: u32,
        /// Its headers.
        headers: Headers,
    },
    /// Bytes on stream `id`.
    Data {
        /// The stream.
        id: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// It ended its side of stream `id` (stdin's end of input).
    Fin {
        /// The stream.
        id: u32,
    },
    /// It abandoned stream `id`.
    Reset {
        /// The stream.
        id: u32,
    },
}

enum Cmd {
    Reply(u32),
    Data(u32, Vec<u8>),
    Fin(u32),
    Reset(u32, u32),
}

/// When the connection last read or wrote a frame: it is idle only when
/// neither direction has moved for [`IDLE`] (an exec whose client sends
/// nothing still has its output going out).
struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long ago the last frame moved.
    fn quiet_for(&self) -> Duration {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Sends on the connection; cloneable.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Cmd>,
}

impl Writer {
    /// Accepts stream `id`.
    pub async fn reply(&self, id: u32) -> Result<(), Gone> {
        self.tx.send(Cmd::Reply(id)).await.map_err(|_| Gone)
    }

    /// Sends `data` on stream `id`; waits while the client is slow to read.
    pub async fn send(&self, id: u32, data: &[u8]) -> Result<(), Gone> {
        for chunk in data.chunks(DATA_MAX) {
            self.tx
                .send(Cmd::Data(id, chunk.to_vec()))
                .await
                .map_err(|_| Gone)?;
        }
        Ok(())
    }

    /// Ends the server's side of stream `id`.
    pub async fn fin(&self, id: u32) -> Result<(), Gone> {
        self.tx.send(Cmd::Fin(id)).await.map_err(|_| Gone)
    }

    /// Ends stream `id` at once with `status` ([`REFUSED_STREAM`],
    /// [`CANCEL`], ...).
    pub async fn reset(&self, id: u32, status: u32) -> Result<(), Gone> {
        self.tx.send(Cmd::Reset(id, status)).await.map_err(|_| Gone)
    }

    /// A handle that does not keep the connection's writing side open.
    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter(self.tx.downgrade())
    }
}

/// A [`Writer`] that lets the connection end.
pub struct WeakWriter(mpsc::WeakSender<Cmd>);

impl WeakWriter {
    /// Refuses stream `id` if the connection still writes and has room
    /// (a late stream: nothing waits on the answer but the client).
    pub fn try_refuse(&self, id: u32) {
        if let Some(tx) = self.0.upgrade() {
            let _ = tx.try_send(Cmd::Reset(id, REFUSED_STREAM));
        }
    }
}

/// Aborts its task when dropped.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A SPDY connection, split.
pub struct Conn {
    /// Sends on it.
    pub writer: Writer,
    /// What the client does; ends when it closes the connection, says
    /// GOAWAY, breaks the protocol or is idle for [`IDLE`].
    pub events: mpsc::Receiver<Event>,
    /// The writer task: done once every [`Writer`] is gone and the end
    /// is sent.
    pub writing: JoinHandle<()>,
    /// The reader task, aborted with this handle (it holds the socket).
    pub reading: AbortOnDrop,
}

/// Starts speaking SPDY (as the server) on an upgraded connection (or a
/// [`tunnel`]'s end).
pub fn start<T>(io: T) -> Conn
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(16);
    // Pongs go apart from the data, so a backlog of output never drops
    // one: client-go waits for each pong before its next ping.
    let (pong_tx, pongs) = mpsc::channel(4);
    let (events_tx, events) = mpsc::channel(16);
    let activity = Activity::new();
    let reading = tokio::spawn(read(rd, events_tx, pong_tx, activity.clone()));
    let writing = tokio::spawn(write(wr, rx, pongs, activity));
    Conn {
        writer: Writer { tx },
        events,
        writing,
        reading: AbortOnDrop(reading),
    }
}

async fn read(
    mut rd: impl AsyncRead + Unpin,
    events: mpsc::Sender<Event>,
    pongs: mpsc::Sender<u32>,
    activity: Arc<Activity>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflater = Inflater::default();
    let mut last_id = 0u32;
    loop {
        loop {
            let (frame, used) = match frame::parse(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("CRI streaming: {e}: closing the connection");
                    return;
                }
            };
            buf.advance(used);
            let mut send = Vec::with_capacity(2);
            match frame {
                Frame::Data { stream, fin, data } => {
                    if !data.is_empty() {
                        send.push(Event::Data { id: stream, data });
                    }
                    if fin {
                        send.push(Event::Fin { id: stream });
                    }
                }
                Frame::SynStream { stream, fin, block } => {
                    // Inflated whatever comes of the stream: the zlib
                    // stream is the connection's.
                    let headers = match inflater.block(&block) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!("CRI streaming: {e}: closing the connection");
                            return;
                        }
                    };
                    if stream % 2 == 0 || stream <= last_id {
                        tracing::debug!(
                            stream,
                            "CRI streaming: a client stream id out of order: closing the connection"
                        );
                        return;
                    }
                    last_id = stream;
                    send.push(Event::Open {
                        id: stream,
                        headers,
                    });
                    if fin {
                        send.push(Event::Fin { id: stream });
                    }
                }
                Frame::Headers { stream, fin, block } => {
                    if let Err(e) = inflater.block(&block) {
                        tracing::debug!("CRI streaming: {e}: closing the connection");
                        return;
                    }
                    if fin {
                        send.push(Event::Fin { id: stream });
                    }
                }
                Frame::RstStream { stream } => send.push(Event::Reset { id: stream }),
                Frame::Ping { id } => {
                    // The client's pings are odd; even ones would be
                    // answers to this server's, which sends none.
                    if id % 2 == 1 {
                        // Full: the client has four unanswered already.
                        let _ = pongs.try_send(id);
                    }
                }
                Frame::GoAway => return,
                Frame::Ignored => {}
            }
            for e in send {
                if events.send(e).await.is_err() {
                    return;
                }
            }
        }
        match tokio::time::timeout(IDLE, rd.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => activity.touch(),
            Ok(Ok(_)) => return,
            // Nothing read for IDLE: idle only if nothing was written either.
            Err(_) if activity.quiet_for() < IDLE => continue,
            Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!("CRI streaming: reading the connection: {e}");
                return;
            }
        }
    }
}

async fn write(
    mut wr: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Cmd>,
    mut pongs: mpsc::Receiver<u32>,
    activity: Arc<Activity>,
) {
    let mut deflater = Deflater::default();
    // The client streams accepted and not yet ended on this side.
    let mut open = BTreeSet::new();
    let mut last = 0u32;
    loop {
        let cmd = tokio::select! {
            biased;
            Some(id) = pongs.recv() => {
                if !write_frame(&mut wr, &frame::ping(id), &activity).await {
                    return;
                }
                continue;
            }
            cmd = rx.recv() => match cmd {
                Some(c) => c,
                None => break,
            },
        };
        let bytes = match cmd {
            Cmd::Reply(id) => {
                open.insert(id);
                last = last.max(id);
                frame::syn_reply(id, &deflater.block(&[]))
            }
            Cmd::Data(id, data) => frame::data(id, false, &data),
            Cmd::Fin(id) => {
                if !open.remove(&id) {
                    continue;
                }
                frame::data(id, true, &[])
            }
            Cmd::Reset(id, status) => {
                open.remove(&id);
                frame::rst_stream(id, status)
            }
        };
        if !write_frame(&mut wr, &bytes, &activity).await {
            return;
        }
    }
    let mut tail: Vec<u8> = open
        .into_iter()
        .flat_map(|id| frame::data(id, true, &[]))
        .collect();
    tail.extend(frame::goaway(last));
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        wr.write_all(&tail).await?;
        wr.shutdown().await
    })
    .await;
}

/// Writes one frame; false when the connection failed or the client has
/// taken nothing for [`IDLE`].
async fn write_frame(
    wr: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    activity: &Activity,
) -> bool {
    match tokio::time::timeout(IDLE, wr.write_all(bytes)).await {
        Ok(Ok(())) => {
            activity.touch();
            true
        }
        Ok(Err(e)) => {
            tracing::debug!("CRI streaming: writing the connection: {e}");
            false
        }
        Err(_) => false,
    }
}
