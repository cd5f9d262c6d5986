//! Reading a CRI log file record by record with bounded memory: forwards
//! ([`Forward`]) for streaming, backwards ([`lines_rev`]) for `tail`.
//!
//! Neither ever holds more than [`CHUNK`] plus one record line (at most
//! [`MAX_LINE`]) of a file, whatever its size: a line longer than that is
//! not one the monitor writes (its records are at most a piece of
//! [`berth_runtime::cri_log::MAX_PIECE`] plus one pipe read) and is skipped
//! as corrupt.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How much is read from a file at a time.
pub const CHUNK: usize = 64 * 1024;

/// Longest record line kept; longer ones are skipped as corrupt.
pub const MAX_LINE: usize = 256 * 1024;

fn read_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, off) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Reads record lines from an offset onwards. An unfinished last line (the
/// monitor is writing it, or a write torn at a crash) is not returned; a
/// later call returns it once it is complete.
pub struct Forward {
    file: File,
    /// File offset of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// Never read at or past this offset (a snapshot of the file's length).
    limit: Option<u64>,
    /// Inside an overlong line: skip up to its newline.
    skipping: bool,
}

impl Forward {
    /// Reads `file` from `offset`, up to `limit` if given.
    pub fn new(file: File, offset: u64, limit: Option<u64>) -> Forward {
        Forward {
            file,
            base: offset,
            buf: Vec::new(),
            start: 0,
            limit,
            skipping: false,
        }
    }

    /// The file read.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Offset of the next unread line.
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Stops reading at `limit` (or never, for `None`).
    pub fn set_limit(&mut self, limit: Option<u64>) {
        self.limit = limit;
    }

    /// Starts over at `offset` (after the file was truncated).
    pub fn seek(&mut self, offset: u64) {
        self.base = offset;
        self.buf.clear();
        self.start = 0;
        self.skipping = false;
    }

    /// The next complete line (without its newline) and its offset, or
    /// `None` when there is none yet.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        loop {
            if let Some(i) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let (s, e) = (self.start, self.start + i);
                self.start = e + 1;
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Ok(Some((self.base + s as u64, &self.buf[s..e])));
            }
            // Keep only the unfinished line, at the front.
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
            if self.buf.len() > MAX_LINE {
                self.base += self.buf.len() as u64;
                self.buf = Vec::new();
                self.skipping = true;
            }
            let end = self.base + self.buf.len() as u64;
            let want = match self.limit {
                Some(l) => l.saturating_sub(end).min(CHUNK as u64) as usize,
                None => CHUNK,
            };
            if want == 0 {
                return Ok(None);
            }
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let n = read_at(&self.file, &mut self.buf[old..], end);
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            };
            self.buf.truncate(old + n);
            if self.buf.capacity() > MAX_LINE + 2 * CHUNK {
                self.buf.shrink_to(MAX_LINE + CHUNK);
            }
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

/// Calls `f` with every complete line of the first `len` bytes of `file`
/// (without its newline) and its offset, last line first, until `f`
/// returns false. An unfinished last line and overlong lines are skipped.
/// Returns whether it reached the start of the file.
pub fn lines_rev(file: &File, len: u64, mut f: impl FnMut(u64, &[u8]) -> bool) -> io::Result<bool> {
    // `buf` holds the bytes [base, base + buf.len()), which end just after
    // a newline: the end of the next line to hand out.
    let Some((mut base, mut buf)) = back_to_newline(file, len)? else {
        return Ok(true);
    };
    loop {
        let body = buf.len() - 1;
        match buf[..body].iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                if !f(base + i as u64 + 1, &buf[i + 1..body]) {
                    return Ok(false);
                }
                buf.truncate(i + 1);
            }
            None if base == 0 => return Ok(f(0, &buf[..body])),
            None if buf.len() > MAX_LINE => {
                // Overlong: skip to the newline before it.
                match back_to_newline(file, base)? {
                    Some((b, next)) => (base, buf) = (b, next),
                    None => return Ok(true),
                }
            }
            None => {
                let take = base.min(CHUNK as u64);
                let mut more = vec![0u8; take as usize];
                read_exact_at(file, &mut more, base - take)?;
                more.extend_from_slice(&buf);
                buf = more;
                base -= take;
            }
        }
    }
}

/// The chunk of `file` that ends just after the last newline before `end`,
/// and its offset; `None` when there is no newline before `end`.
fn back_to_newline(file: &File, mut end: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut chunk = vec![0u8; CHUNK];
    while end > 0 {
        let take = end.min(CHUNK as u64) as usize;
        let start = end - take as u64;
        read_exact_at(file, &mut chunk[..take], start)?;
        if let Some(i) = chunk[..take].iter().rposition(|&b| b == b'\n') {
            chunk.truncate(i + 1);
            return Ok(Some((start, chunk)));
        }
        end = start;
    }
    Ok(None)
}

fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], off + done as u64)? {
            // Truncated under us: what is gone reads as nothing.
            0 => {
                buf[done..].fill(0);
                return Ok(());
            }
            n => done += n,
        }
    }
    Ok(())
}
