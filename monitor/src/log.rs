//! Appending container output to its CRI log file, with rotation.
//!
//! A log that cannot be written (disk full, quota, its directory gone) must
//! not end the monitor: the container would lose the reader of its pipes,
//! and its exit would go unrecorded. Output is then dropped, the monitor
//! log says so once, and writing resumes when the file can be written again.
//!
//! Someone else may rotate the log: kubelet renames a CRI container's log
//! and asks for a new one (ReopenContainerLog), and logrotate does the same
//! to any file. At most once a second of output the writer checks that the
//! path still names the file it holds, and opens the path again when not,
//! so no signal or channel is needed and a berthd restart changes nothing.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;

use berth_runtime::cri_log::{encode_record, Lines, Stream, Tag, ROTATED_SUFFIX};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, CWD};

use crate::io::{self, eprintln, Context, Result};

/// How often, at most, the writer checks whether its path was rotated away.
const RECHECK_NANOS: i64 = 1_000_000_000;

/// Appends output to a log file, rotating it to `<path>.1` when it grows
/// past a limit, so a chatty container cannot fill the disk.
pub struct LogWriter {
    path: String,
    /// The mode of a log file the writer creates.
    mode: u32,
    file: Option<OwnedFd>,
    /// The held file's (device, inode), to see a rename of the path.
    identity: (u64, u64),
    /// When the path was last checked against `identity` (ns).
    checked_at: i64,
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
    pub fn open(path: &str, max_bytes: u64, group_readable: bool) -> Self {
        let mut w = LogWriter {
            path: String::from(path),
            mode: if group_readable { 0o640 } else { 0o600 },
            file: None,
            identity: (0, 0),
            checked_at: 0,
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
        let now = crate::monitor::now_nanos();
        if self.file.is_none() || self.size >= self.max_bytes {
            self.rotate_or_reopen()?;
        } else if !(0..RECHECK_NANOS).contains(&(now - self.checked_at)) {
            self.checked_at = now;
            if !self.path_is_held() {
                self.reopen()?;
            }
        }
        self.record.clear();
        encode_record(&mut self.record, now, stream, tag, content);
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

    /// Past the size limit: renames the log to `<path>.1` and opens a new
    /// one. If someone else has rotated it meanwhile (the path names no
    /// file, or another one), only opens the path again: renaming what is
    /// there would put kubelet's new, empty log over the last generation.
    fn rotate_or_reopen(&mut self) -> Result<()> {
        if self.file.is_some() && self.path_is_held() {
            let old = format!("{}{ROTATED_SUFFIX}", self.path);
            match rustix::fs::rename(&self.path, &old) {
                // Renamed away between the check and here: as above.
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e).ctx(&old),
            }
        }
        self.reopen()
    }

    fn reopen(&mut self) -> Result<()> {
        self.file = None;
        let file = io::open_append(&self.path, self.mode).ctx(&self.path)?;
        let st = rustix::fs::fstat(&file).ctx(&self.path)?;
        if st.st_size == 0 && st.st_mode & 0o7777 != self.mode {
            // Created here (or empty): its mode whatever berthd's umask.
            rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(self.mode))
                .ctx(&self.path)?;
        }
        self.size = st.st_size as u64;
        self.identity = (st.st_dev, st.st_ino);
        self.file = Some(file);
        Ok(())
    }

    /// Whether the path still names the file held (not renamed or removed
    /// away by a rotation).
    fn path_is_held(&self) -> bool {
        rustix::fs::statat(CWD, self.path.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| (st.st_dev, st.st_ino) == self.identity)
    }
}
