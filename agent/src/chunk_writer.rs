//! A `Write` that hands what blocking code writes (a tar being built) to an
//! async stream in fixed-size chunks over a bounded channel: the writer
//! blocks while the client is behind, so an archive of any size holds only
//! the channel's chunks of berthd's memory. Used by `image save` and `cp`.

use std::io::{self, Write};

use tokio::sync::mpsc;

/// Sends `chunk_bytes` chunks down a channel of `Result<Vec<u8>, E>`. A
/// receiver that is gone (the client left) is `BrokenPipe`.
pub struct ChunkWriter<E> {
    tx: mpsc::Sender<Result<Vec<u8>, E>>,
    buf: Vec<u8>,
    chunk_bytes: usize,
}

impl<E> ChunkWriter<E> {
    /// Writes to `tx` in chunks of `chunk_bytes` (at least 1).
    pub fn new(tx: mpsc::Sender<Result<Vec<u8>, E>>, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(chunk_bytes),
            chunk_bytes,
        }
    }

    /// Sends what is buffered (the last, short chunk).
    pub fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_bytes));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
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
}
