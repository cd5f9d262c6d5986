//! Container logs on disk, in the CRI log format that crictl and kubelet use:
//! one record per line, `<RFC 3339 time> <stdout|stderr> <F|P> <content>`,
//! where `F` ends a line (its newline is implied) and `P` is a piece of a line
//! that continues in the next record of that stream.
//!
//! The monitor writes; berthd reads (and follows) while the monitor writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A container output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Longest line piece kept in memory before it is written as a partial record.
const MAX_PIECE: usize = 16 * 1024;

/// Appends output to a log file, rotating it to `<path>.1` when it grows past
/// a limit, so a chatty container cannot fill the disk.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Records `data` read from `stream`: every completed line becomes a full
    /// record; an unfinished line waits for more data (up to [`MAX_PIECE`]).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[idx]);
            line.extend_from_slice(&rest[..nl]);
            self.record(stream, b'F', &line)?;
            rest = &rest[nl + 1..];
        }
        self.pending[idx].extend_from_slice(rest);
        if self.pending[idx].len() >= MAX_PIECE {
            let piece = std::mem::take(&mut self.pending[idx]);
            self.record(stream, b'P', &piece)?;
        }
        Ok(())
    }

    /// Writes out unfinished lines (at exit: output that did not end in a newline).
    pub fn flush_pending(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let piece = std::mem::take(&mut self.pending[stream as usize]);
            if !piece.is_empty() {
                self.record(stream, b'P', &piece)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, stream: Stream, tag: u8, content: &[u8]) -> io::Result<()> {
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        let ts = humantime::format_rfc3339_nanos(SystemTime::now());
        let mut rec = Vec::with_capacity(content.len() + 48);
        write!(rec, "{ts} {} {} ", stream.as_str(), tag as char)?;
        rec.extend_from_slice(content);
        rec.push(b'\n');
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Where the previous generation of a log lives after rotation.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the monitor read it.
    pub time: SystemTime,
    /// Which stream.
    pub stream: Stream,
    /// The bytes, with the newline restored for full lines.
    pub data: Vec<u8>,
}

/// Parses one record line (without its trailing newline). `None` for a line
/// that is not a record (a torn write at a crash).
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let mut data = parts.next().unwrap_or_default().to_vec();
    if full {
        data.push(b'\n');
    }
    Some(Record {
        time: humantime::parse_rfc3339(ts).ok()?,
        stream,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> Vec<Record> {
        let text = std::fs::read(path).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_split_and_joined_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 1 << 20).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.write(Stream::Stdout, b"ld\nend").unwrap();
        w.flush_pending().unwrap();
        let recs = read_all(&path);
        let out: Vec<u8> = recs
            .iter()
            .filter(|r| r.stream == Stream::Stdout)
            .flat_map(|r| r.data.clone())
            .collect();
        assert_eq!(out, b"hello\nworld\nend");
        assert_eq!(recs[0].stream, Stream::Stderr);
        assert_eq!(recs[0].data, b"oops\n");
    }

    #[test]
    fn binary_and_spaces_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 1 << 20).unwrap();
        w.write(Stream::Stdout, b"a b  c\xff\x00\n").unwrap();
        assert_eq!(read_all(&path)[0].data, b"a b  c\xff\x00\n");
    }

    #[test]
    fn long_lines_become_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 1 << 30).unwrap();
        let long = vec![b'x'; MAX_PIECE * 2 + 10];
        w.write(Stream::Stdout, &long).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        let recs = read_all(&path);
        assert!(recs.len() >= 2);
        let joined: Vec<u8> = recs.iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(joined.len(), long.len() + 1);
    }

    #[test]
    fn rotates_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, 200).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated_path(&path)).unwrap().len();
        assert!(cur <= 260 && old <= 260, "cur={cur} old={old}");
        let last = read_all(&path);
        assert_eq!(last.last().unwrap().data, b"line 19\n");
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert!(parse_record(b"nonsense").is_none());
        assert!(parse_record(b"2026-01-01T00:00:00Z stdin F x").is_none());
    }
}
