//! The bounded channels between the blocking file work and the RPC
//! streams: at most [`CHUNKS_AHEAD`] chunks wait either way, so a copy of
//! any size holds a few hundred KiB to a few MiB of berthd's memory.

use std::io::{self, Read, Write};

use tokio::sync::mpsc;

use super::CopyError;

/// Chunks that may wait in a channel.
pub const CHUNKS_AHEAD: usize = 4;
/// Size of the chunks an archive is sent in.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A `Write` that sends [`CHUNK_BYTES`] chunks down the channel, blocking
/// while the client is behind. A receiver that is gone (the client left)
/// is `BrokenPipe`.
pub struct ChunkWriter {
    tx: mpsc::Sender<Result<Vec<u8>, CopyError>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// Writes to `tx`.
    pub fn new(tx: mpsc::Sender<Result<Vec<u8>, CopyError>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    /// Sends what is buffered.
    pub fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over the chunks an upload sends. `Err` in the channel (the
/// client's stream failed) is `ConnectionAborted`; the channel closing is
/// the end of the data.
pub struct ChunkReader {
    rx: mpsc::Receiver<Result<bytes::Bytes, String>>,
    cur: bytes::Bytes,
}

impl ChunkReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Result<bytes::Bytes, String>>) -> Self {
        ChunkReader {
            rx,
            cur: bytes::Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_sends_full_chunks_and_the_rest_on_flush() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut w = ChunkWriter::new(tx);
        w.write_all(&vec![7u8; CHUNK_BYTES + 10]).unwrap();
        w.flush_chunk().unwrap();
        drop(w);
        let mut sizes = Vec::new();
        while let Ok(c) = rx.try_recv() {
            sizes.push(c.unwrap().len());
        }
        assert_eq!(sizes, [CHUNK_BYTES, 10]);
    }

    #[test]
    fn a_gone_receiver_is_a_broken_pipe() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx);
        let e = w.write_all(&vec![0u8; CHUNK_BYTES]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn the_reader_reads_across_chunks_and_reports_an_aborted_upload() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(bytes::Bytes::from_static(b"ab"))).unwrap();
        tx.try_send(Ok(bytes::Bytes::from_static(b"cde"))).unwrap();
        drop(tx);
        let mut s = String::new();
        ChunkReader::new(rx).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Err("gone".into())).unwrap();
        let e = ChunkReader::new(rx).read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }
}
