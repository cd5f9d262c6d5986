//! The bounded channels between the blocking file work and the RPC
//! streams: at most [`CHUNKS_AHEAD`] chunks wait either way, so a copy of
//! any size holds a few hundred KiB to a few MiB of berthd's memory.

use std::io::{self, Read};

use tokio::sync::mpsc;

use super::CopyError;

/// Chunks that may wait in a channel.
pub const CHUNKS_AHEAD: usize = 4;
/// Size of the chunks an archive is sent in.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The writer of an archive being sent: [`CHUNK_BYTES`] chunks (see
/// [`crate::chunk_writer`]).
pub type ChunkWriter = crate::chunk_writer::ChunkWriter<CopyError>;

/// A writer of `tx` in [`CHUNK_BYTES`] chunks.
pub fn writer(tx: mpsc::Sender<Result<Vec<u8>, CopyError>>) -> ChunkWriter {
    ChunkWriter::new(tx, CHUNK_BYTES)
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
    use std::io::Write;

    #[test]
    fn the_writer_sends_full_chunks_and_the_rest_on_flush() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut w = writer(tx);
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
        let mut w = writer(tx);
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
