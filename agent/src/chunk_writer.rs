//! A `Write` that hands what blocking code writes (a tar being built) to an
//! async stream in fixed-size chunks over a bounded channel: the writer
//! blocks while the client is behind, so an archive of any size holds only
//! the channel's chunks of berthd's memory. Used by `image save` and `cp`.
//!
//! A client that stops reading must not hold the writer (a blocking-pool
//! thread and open files) forever: a chunk not taken within
//! [`STALL_TIMEOUT`] ends the writer with `TimedOut`. The channel then
//! closes with chunks still queued and no error in it (there is no room
//! for one), which a gRPC stream would end with OK: a truncated archive
//! that looks whole. So the writer sets a [`Completion`] only when the
//! stream it wrote is whole (or ends in an error the client will see), and
//! the server turns a channel that closed without it into an error.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// How long a chunk may wait for the client to take it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Set by the writer when what it sent is whole: every chunk, or the
/// chunks and then the error that ended them.
#[derive(Clone, Default)]
pub struct Completion(Arc<AtomicBool>);

impl Completion {
    /// Not complete yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the stream whole.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the stream was whole; read once the channel has closed.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Sends `chunk_bytes` chunks down a channel of `Result<Vec<u8>, E>`. A
/// receiver that is gone (the client left) is `BrokenPipe`; one that takes
/// nothing for the stall timeout is `TimedOut`.
pub struct ChunkWriter<E> {
    tx: mpsc::Sender<Result<Vec<u8>, E>>,
    buf: Vec<u8>,
    chunk_bytes: usize,
    stall: Duration,
    /// The runtime the timed sends wait on: the blocking-pool thread the
    /// writer runs on has one; a plain thread (unit tests) waits untimed.
    rt: Option<Handle>,
}

impl<E> ChunkWriter<E> {
    /// Writes to `tx` in chunks of `chunk_bytes` (at least 1), each taken
    /// within [`STALL_TIMEOUT`].
    pub fn new(tx: mpsc::Sender<Result<Vec<u8>, E>>, chunk_bytes: usize) -> Self {
        Self::with_stall(tx, chunk_bytes, STALL_TIMEOUT)
    }

    /// As [`ChunkWriter::new`], with a stall timeout of `stall`.
    pub fn with_stall(
        tx: mpsc::Sender<Result<Vec<u8>, E>>,
        chunk_bytes: usize,
        stall: Duration,
    ) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(chunk_bytes),
            chunk_bytes,
            stall,
            rt: Handle::try_current().ok(),
        }
    }

    /// Sends what is buffered (the last, short chunk).
    pub fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_bytes));
        self.send(Ok(chunk))
    }

    /// Sends the error that ends the stream; whether the client will see it.
    pub fn send_error(&self, e: E) -> bool {
        self.send(Err(e)).is_ok()
    }

    fn send(&self, item: Result<Vec<u8>, E>) -> io::Result<()> {
        let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
        let Some(rt) = &self.rt else {
            return self.tx.blocking_send(item).map_err(|_| gone());
        };
        match rt.block_on(self.tx.send_timeout(item, self.stall)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(gone()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no data for {} s", self.stall.as_secs_f64()),
            )),
        }
    }
}

impl<E> Write for ChunkWriter<E> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk_bytes - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk_bytes {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    /// Chunks are sent when full or by [`ChunkWriter::flush_chunk`]: a
    /// flush in the middle (tar flushes) must not cut short chunks.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_chunks_then_the_rest_on_flush_and_a_gone_reader_is_a_broken_pipe() {
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, String>>(8);
        let mut w = ChunkWriter::new(tx, 1000);
        w.write_all(&[7u8; 1010]).expect("write");
        w.flush_chunk().expect("flush");
        assert_eq!(rx.try_recv().expect("chunk").expect("ok").len(), 1000);
        assert_eq!(rx.try_recv().expect("chunk").expect("ok").len(), 10);
        drop(rx);
        w.write_all(&[1]).expect("buffered");
        let e = w.flush_chunk().expect_err("reader gone");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_nobody_takes_times_out_and_the_error_cannot_follow() {
        let (tx, _rx) = mpsc::channel::<Result<Vec<u8>, String>>(1);
        let ended = tokio::task::spawn_blocking(move || {
            let mut w = ChunkWriter::with_stall(tx, 4, std::time::Duration::from_millis(50));
            // The first chunk fills the channel; the second waits in vain.
            let e = w.write_all(&[0u8; 8]).expect_err("stalled");
            (e.kind(), w.send_error("late".into()))
        })
        .await
        .expect("writer");
        assert_eq!(ended, (io::ErrorKind::TimedOut, false));
    }
}
