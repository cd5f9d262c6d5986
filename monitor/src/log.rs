//! Appending container output to its CRI log file, with rotation.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use berth_runtime::cri_log::{encode_record, Lines, Stream, Tag, ROTATED_SUFFIX};
use rustix::fd::OwnedFd;

use crate::io::{self, Context, Result};

/// Appends output to a log file, rotating it to `<path>.1` when it grows
/// past a limit, so a chatty container cannot fill the disk.
pub struct LogWriter {
    path: String,
    file: OwnedFd,
    size: u64,
    max_bytes: u64,
    lines: Lines,
    record: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &str, max_bytes: u64) -> Result<Self> {
        let file = io::open_append(path).ctx(path)?;
        let size = rustix::fs::fstat(&file).ctx(path)?.st_size as u64;
        Ok(LogWriter {
            path: String::from(path),
            file,
            size,
            max_bytes,
            lines: Lines::default(),
            record: Vec::new(),
        })
    }

    /// Records `data` read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let mut lines = core::mem::take(&mut self.lines);
        let done = lines.push(stream, data, |s, tag, content| self.append(s, tag, content));
        self.lines = lines;
        done
    }

    /// Writes out unfinished lines (at exit: output without a final newline).
    pub fn finish(&mut self) -> Result<()> {
        let mut lines = core::mem::take(&mut self.lines);
        lines.finish(|s, tag, content| self.append(s, tag, content))
    }

    fn append(&mut self, stream: Stream, tag: Tag, content: &[u8]) -> Result<()> {
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        self.record.clear();
        encode_record(
            &mut self.record,
            crate::monitor::now_nanos(),
            stream,
            tag,
            content,
        );
        io::write_all(&self.file, &self.record).ctx(&self.path)?;
        self.size += self.record.len() as u64;
        if self.record.capacity() > 64 * 1024 {
            // A long piece once must not keep its buffer for good.
            self.record = Vec::new();
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let old = format!("{}{ROTATED_SUFFIX}", self.path);
        rustix::fs::rename(&self.path, &old).ctx(&old)?;
        self.file = io::open_append(&self.path).ctx(&self.path)?;
        self.size = 0;
        Ok(())
    }
}
