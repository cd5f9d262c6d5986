//! Appending container output to its CRI log file, with rotation.
//!
//! A log that cannot be written (disk full, quota, its directory gone) must
//! not end the monitor: the container would lose the reader of its pipes,
//! and its exit would go unrecorded. Output is then dropped, the monitor
//! log says so once, and writing resumes when the file can be written again.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;

use berth_runtime::cri_log::{encode_record, Lines, Stream, Tag, ROTATED_SUFFIX};
use rustix::fd::OwnedFd;

use crate::io::{self, eprintln, Context, Result};

/// Appends output to a log file, rotating it to `<path>.1` when it grows
/// past a limit, so a chatty container cannot fill the disk.
pub struct LogWriter {
    path: String,
    file: Option<OwnedFd>,
    size: u64,
    max_bytes: u64,
    lines: Lines,
    record: Vec<u8>,
    /// Records dropped since the last failure was reported.
    dropped: u64,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`; if that fails, the writer
    /// tries again at every record.
    pub fn open(path: &str, max_bytes: u64) -> Self {
        let mut w = LogWriter {
            path: String::from(path),
            file: None,
            size: 0,
            max_bytes,
            lines: Lines::default(),
            record: Vec::new(),
            dropped: 0,
        };
        if let Err(e) = w.reopen() {
            eprintln!("log {path}: {e}; trying again at the next output");
        }
        w
    }

    /// Records `data` read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let mut lines = core::mem::take(&mut self.lines);
        let Ok(()) = lines.push(stream, data, |s, tag, content| self.append(s, tag, content));
        self.lines = lines;
    }

    /// Writes out unfinished lines (at exit: output without a final newline).
    pub fn finish(&mut self) {
        let mut lines = core::mem::take(&mut self.lines);
        let Ok(()) = lines.finish(|s, tag, content| self.append(s, tag, content));
        if self.dropped > 0 {
            eprintln!("log {}: {} records dropped in all", self.path, self.dropped);
        }
    }

    /// Appends one record; never fails (see the module docs).
    fn append(
        &mut self,
        stream: Stream,
        tag: Tag,
        content: &[u8],
    ) -> core::result::Result<(), Infallible> {
        if let Err(e) = self.try_append(stream, tag, content) {
            self.failed(&e);
        }
        Ok(())
    }

    fn try_append(&mut self, stream: Stream, tag: Tag, content: &[u8]) -> Result<()> {
        if self.file.is_none() || self.size >= self.max_bytes {
            self.rotate_or_reopen()?;
        }
        self.record.clear();
        encode_record(
            &mut self.record,
            crate::monitor::now_nanos(),
            stream,
            tag,
            content,
        );
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error("no log file".into()))?;
        io::write_all(file, &self.record).ctx(&self.path)?;
        self.size += self.record.len() as u64;
        if self.record.capacity() > 64 * 1024 {
            // A long piece once must not keep its buffer for good.
            self.record = Vec::new();
        }
        if self.dropped > 0 {
            eprintln!(
                "log {}: writing again, {} records were dropped",
                self.path, self.dropped
            );
            self.dropped = 0;
        }
        Ok(())
    }

    /// Reports the first failure of a run of them, and counts the record.
    fn failed(&mut self, e: &io::Error) {
        if self.dropped == 0 {
            eprintln!(
                "log {}: {e}; dropping output until it can be written",
                self.path
            );
        }
        self.dropped += 1;
    }

    fn rotate_or_reopen(&mut self) -> Result<()> {
        if self.file.is_some() {
            let old = format!("{}{ROTATED_SUFFIX}", self.path);
            rustix::fs::rename(&self.path, &old).ctx(&old)?;
            self.file = None;
        }
        self.reopen()
    }

    fn reopen(&mut self) -> Result<()> {
        let file = io::open_append(&self.path).ctx(&self.path)?;
        self.size = rustix::fs::fstat(&file).ctx(&self.path)?.st_size as u64;
        self.file = Some(file);
        Ok(())
    }
}
