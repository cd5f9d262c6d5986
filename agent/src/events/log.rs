//! The durable event log: append-only segment files in `<state>/events/`.
//!
//! Each segment is named after the sequence number of its first event
//! (`00000000000000000001.log`) and holds records `[len u32][crc32 u32]
//! [protobuf Event]` (little endian). A torn record at the end of the last
//! segment (a crash mid-write) is cut off at open. Whole segments are
//! deleted from the front to keep at most `retain` events.
//!
//! The state file system is shared with the containers' logs and layers,
//! which can fill it. So the writer keeps [`RESERVE`] bytes allocated ahead
//! of its end in the current segment (`fallocate` without changing the
//! size): a full disk still takes that many bytes of events (thousands),
//! nothing is lost while an operator makes room, and berthd warns once the
//! reserve can no longer be renewed. A new segment is begun only once its
//! own reserve is allocated; until then the current one grows on.
//!
//! The writer remembers where every `MARK_EVERY`th record of a segment
//! starts, so a reader catching up from some sequence number seeks close to
//! it and reads no more records than it returns, plus fewer than
//! `MARK_EVERY`; without them every batch of a replay re-read its
//! segment from the start.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use berth::v1::Event;
use prost::Message;

use super::StoredEvent;

/// Events per segment file.
const SEGMENT_EVENTS: u64 = 10_000;
/// Largest record accepted when reading (a corrupt length must not make us
/// allocate gigabytes).
pub(crate) const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Every this many records, a segment remembers where a record starts.
const MARK_EVERY: u64 = 256;
/// Read buffer of a reader: a few hundred records.
const READ_BUFFER: usize = 64 * 1024;
/// Bytes kept allocated ahead of the current segment's end; renewed when
/// less than half is left.
const RESERVE: u64 = 1024 * 1024;
/// After a failed renewal or rotation, appends before the next attempt (a
/// full disk must not cost an `fallocate` per event).
const RETRY_EVERY: u64 = 256;

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Sequence number of its first event.
    first: u64,
    /// Its path.
    path: PathBuf,
    /// `(seq, byte offset)` of every [`MARK_EVERY`]th record, oldest first.
    marks: Vec<(u64, u64)>,
}

impl Segment {
    fn new(first: u64, path: PathBuf) -> Self {
        Segment {
            first,
            path,
            marks: Vec::new(),
        }
    }

    /// The last mark at or before `seq`: where a read for it begins.
    fn mark_before(&self, seq: u64) -> Option<(u64, u64)> {
        let i = self.marks.partition_point(|&(s, _)| s <= seq);
        i.checked_sub(1).map(|i| self.marks[i])
    }
}

/// Where a reader finds the events from some sequence number on; taken
/// from the writer ([`EventLog::plan`]) and read without it ([`read_from`]).
#[derive(Debug)]
pub struct ReadPlan {
    /// The segment files to read, in order.
    files: Vec<PathBuf>,
    /// In the first of them, `(seq, byte offset)` of the record to begin
    /// at; none: its start.
    start: Option<(u64, u64)>,
}

/// The writer side of the log.
pub struct EventLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    in_current: u64,
    /// Bytes in the current segment: where the next record starts.
    len_current: u64,
    retain: u64,
    next_seq: u64,
    dirty: bool,
    /// The current segment may end in part of a record (a failed write
    /// that could not be cut off): the next event starts a new segment.
    torn: bool,
    /// Where the current segment's allocated reserve ends.
    allocated: u64,
    /// Appends until the next attempt to renew the reserve or rotate, after
    /// one failed for want of space.
    backoff: u64,
}

/// What [`EventLog::open`] found.
pub struct Opened {
    /// The log, ready to append.
    pub log: EventLog,
    /// Every retained event, oldest first (to rebuild in-memory indexes).
    pub events: Vec<Event>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Reads the valid records of a segment: `decode` turns each record's body
/// (and its byte offset) into what is kept (or nothing); a body it cannot
/// decode ends the valid part. Returns what was kept and the byte length of
/// the valid prefix.
fn scan<T>(
    path: &Path,
    mut decode: impl FnMut(u64, &[u8]) -> Result<Option<T>, prost::DecodeError>,
) -> io::Result<(Vec<T>, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut events = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= 8 {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len > MAX_RECORD || data.len() - pos - 8 < len {
            break;
        }
        let body = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match decode(pos as u64, body) {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => {}
            Err(_) => break,
        }
        pos += 8 + len;
    }
    Ok((events, pos as u64))
}

impl EventLog {
    /// Opens (or creates) the log in `dir`, keeping at most `retain` events.
    pub fn open(dir: &Path, retain: u64) -> io::Result<Opened> {
        std::fs::create_dir_all(dir)?;
        let mut segments: Vec<Segment> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let first = name.strip_suffix(".log")?.parse::<u64>().ok()?;
                Some(Segment::new(first, e.path()))
            })
            .collect();
        segments.sort_by_key(|s| s.first);
        let mut events = Vec::new();
        let mut next_seq = 1;
        let mut in_current = 0;
        let mut len_current = 0;
        let count = segments.len();
        for (i, seg) in segments.iter_mut().enumerate() {
            let mut marks = Vec::new();
            let (evs, valid) = scan(&seg.path, |offset, body| {
                let ev = Event::decode(body)?;
                if ev.seq >= seg.first + MARK_EVERY * marks.len() as u64 {
                    marks.push((ev.seq, offset));
                }
                Ok(Some(ev))
            })?;
            seg.marks = marks;
            let last = i + 1 == count;
            if last {
                let len = std::fs::metadata(&seg.path)?.len();
                if valid < len {
                    tracing::warn!(
                        segment = %seg.path.display(),
                        "event log ends in a torn record (crash mid-write): cutting {} bytes",
                        len - valid
                    );
                    OpenOptions::new()
                        .write(true)
                        .open(&seg.path)?
                        .set_len(valid)?;
                }
                in_current = evs.len() as u64;
                len_current = valid;
                next_seq = evs.last().map(|e| e.seq + 1).unwrap_or(seg.first);
            }
            events.extend(evs);
        }
        if segments.is_empty() {
            segments.push(Segment::new(1, segment_path(dir, 1)));
        }
        let current = segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| segment_path(dir, 1));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)?;
        Ok(Opened {
            log: EventLog {
                dir: dir.to_path_buf(),
                segments,
                file,
                in_current,
                len_current,
                retain: retain.max(SEGMENT_EVENTS),
                next_seq,
                dirty: false,
                torn: false,
                allocated: len_current,
                backoff: 0,
            },
            events,
        })
        .map(|mut opened| {
            opened.log.renew_reserve();
            opened
        })
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The oldest sequence number still in the log.
    pub fn oldest(&self) -> u64 {
        self.segments
            .first()
            .map(|s| s.first)
            .unwrap_or(self.next_seq)
    }

    /// Where to read the events from `from` on (see [`read_from`]).
    pub fn plan(&self, from: u64) -> ReadPlan {
        let i = self
            .segments
            .iter()
            .rposition(|s| s.first <= from)
            .unwrap_or(0);
        let segments = self.segments.get(i..).unwrap_or_default();
        ReadPlan {
            files: segments.iter().map(|s| s.path.clone()).collect(),
            start: segments.first().and_then(|s| s.mark_before(from)),
        }
    }

    /// Appends the event `seq` (which must be [`EventLog::next_seq`]),
    /// encoded as `body`. The seq is taken even when this fails: the event
    /// was published all the same, and no two events may share a seq; the
    /// log then lacks it, which readers see as a hole (see [`read_from`]).
    pub fn append(&mut self, seq: u64, body: &[u8]) -> io::Result<()> {
        self.next_seq = seq + 1;
        self.backoff = self.backoff.saturating_sub(1);
        if self.torn {
            self.rotate(seq)?;
            self.torn = false;
        } else if self.in_current >= SEGMENT_EVENTS && self.backoff == 0 {
            self.rotate_into_reserve(seq);
        }
        let mut rec = Vec::with_capacity(body.len() + 8);
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        rec.extend_from_slice(body);
        let at = self.len_current;
        if let Err(e) = self.file.write_all(&rec) {
            self.cut_back(at);
            return Err(e);
        }
        self.len_current += rec.len() as u64;
        if let Some(seg) = self.segments.last_mut() {
            if seq >= seg.first + MARK_EVERY * seg.marks.len() as u64 {
                seg.marks.push((seq, at));
            }
        }
        self.in_current += 1;
        self.dirty = true;
        if self.allocated.saturating_sub(self.len_current) < RESERVE / 2 && self.backoff == 0 {
            self.renew_reserve();
        }
        Ok(())
    }

    /// After a failed write: cuts off whatever part of the record reached
    /// the current segment, which ends at `len` again, so that the records
    /// appended next are found by readers from its start too; where that
    /// fails, the segment ends here.
    fn cut_back(&mut self, len: u64) {
        if self.file.set_len(len).is_err() {
            self.torn = true;
        }
        // Truncation also freed the blocks allocated ahead.
        self.allocated = len;
        self.backoff = 0;
    }

    /// Allocates [`RESERVE`] bytes ahead of the current segment's end. A
    /// file system without `fallocate` has no reserve (and never had one);
    /// a full one is retried after [`RETRY_EVERY`] appends.
    fn renew_reserve(&mut self) {
        match reserve(&self.file, self.len_current) {
            Ok(true) => self.allocated = self.len_current + RESERVE,
            Ok(false) => self.allocated = u64::MAX,
            Err(e) => {
                self.backoff = RETRY_EVERY;
                tracing::warn!(
                    left = self.allocated.saturating_sub(self.len_current),
                    "the event log cannot renew its reserve ({e}): events go on into the \
                     bytes left; make room on the state file system"
                );
            }
        }
    }

    /// Begins the segment of event `first` if its reserve can be allocated;
    /// else the current segment grows on, and this is retried later.
    fn rotate_into_reserve(&mut self, first: u64) {
        let path = segment_path(&self.dir, first);
        let reserved = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| reserve(&f, 0));
        match reserved {
            Ok(supported) => match self.rotate(first) {
                Ok(()) => self.allocated = if supported { RESERVE } else { u64::MAX },
                Err(e) => {
                    // A segment file that is not the current one would
                    // claim seqs the current one holds at the next open.
                    if self.segments.last().map(|s| &s.path) != Some(&path) {
                        let _ = std::fs::remove_file(&path);
                    }
                    tracing::error!("beginning event log segment {first}: {e}");
                }
            },
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                self.backoff = RETRY_EVERY;
                tracing::warn!(
                    "cannot begin a new event log segment ({e}): the current one grows on"
                );
            }
        }
    }

    fn rotate(&mut self, first: u64) -> io::Result<()> {
        self.file.sync_data()?;
        // The finished segment gives back what it had allocated ahead.
        let _ = self.file.set_len(self.len_current);
        self.allocated = 0;
        let path = segment_path(&self.dir, first);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.segments.push(Segment::new(first, path));
        self.in_current = 0;
        self.len_current = 0;
        // Retention: drop the oldest segment while what remains still holds
        // `retain` events; never the current one.
        while self.segments.len() > 1 && first.saturating_sub(self.segments[1].first) >= self.retain
        {
            let old = self.segments.remove(0);
            std::fs::remove_file(&old.path)?;
        }
        Ok(())
    }

    /// What a flush must sync: a second handle on the current
    /// segment if events were appended since the last flush (the caller
    /// fsyncs it without holding the writer, so appends go on meanwhile),
    /// and the log counts as clean. After a failed fsync, call
    /// [`EventLog::mark_dirty`].
    pub fn take_dirty(&mut self) -> io::Result<Option<File>> {
        if !self.dirty {
            return Ok(None);
        }
        let f = self.file.try_clone()?;
        self.dirty = false;
        Ok(Some(f))
    }

    /// Makes the next flush sync the log again.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

/// Reads up to `max` events with seq >= `from`, as planned by
/// [`EventLog::plan`], in order; the seqs of events whose write failed, or
/// of a segment deleted meanwhile, are missing. Runs without the writer's
/// lock: segments are append-only and a record being written is simply not
/// yet complete.
pub fn read_from(plan: &ReadPlan, from: u64, max: usize) -> io::Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for (i, path) in plan.files.iter().enumerate() {
        let start = if i == 0 { plan.start } else { None };
        match read_segment(path, start, from, max, &mut out) {
            Ok(()) => {}
            // Deleted by retention meanwhile: the caller sees a gap.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// Adds the events of one segment with seq >= `from` to `out` until it holds
/// `max`, from the record that `start` names (its seq and offset) or from
/// the segment's start. A mark that does not lead to a valid record of
/// that seq is not trusted: the read begins at the segment's start then.
fn read_segment(
    path: &Path,
    start: Option<(u64, u64)>,
    from: u64,
    max: usize,
    out: &mut Vec<StoredEvent>,
) -> io::Result<()> {
    let mut r = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let mut body = Vec::new();
    if let Some((seq, offset)) = start {
        r.seek(SeekFrom::Start(offset))?;
        let marked = if next_record(&mut r, &mut body)? {
            StoredEvent::from_log(&body, 0).ok().flatten()
        } else {
            None
        };
        match marked.filter(|e| e.seq == seq) {
            Some(ev) if ev.seq >= from && out.len() < max => out.push(ev),
            Some(_) => {}
            None => {
                r.seek(SeekFrom::Start(0))?;
            }
        }
    }
    while out.len() < max && next_record(&mut r, &mut body)? {
        if !keep(&body, from, out) {
            break;
        }
    }
    Ok(())
}

/// Adds the event in `body` to `out` if its seq >= `from`; false when the
/// body does not decode (the end of the valid records).
fn keep(body: &[u8], from: u64, out: &mut Vec<StoredEvent>) -> bool {
    match StoredEvent::from_log(body, from) {
        Ok(Some(ev)) => out.push(ev),
        Ok(None) => {}
        Err(_) => return false,
    }
    true
}

/// Reads the next record's body into `body`; false at the end of the valid
/// records (the end of the file, a record not yet complete, a bad length or
/// checksum).
fn next_record(r: &mut impl Read, body: &mut Vec<u8>) -> io::Result<bool> {
    let mut head = [0u8; 8];
    if !read_all(r, &mut head)? {
        return Ok(false);
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD {
        return Ok(false);
    }
    body.resize(len, 0);
    Ok(read_all(r, body)? && crc32fast::hash(body) == crc)
}

/// `read_exact`, but false where the file ends first.
fn read_all(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Allocates [`RESERVE`] bytes of `file` from `offset`; `Ok(false)` where
/// the file system cannot (it then has no reserve to lose either).
fn reserve(file: &File, offset: u64) -> io::Result<bool> {
    match crate::sys::preallocate(file, offset, RESERVE) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
impl EventLog {
    /// Makes the writes to the current segment fail, and cutting back after
    /// them too, as on a failing disk: the segment is held read-only.
    pub(super) fn fail_writes(&mut self) -> io::Result<()> {
        if let Some(seg) = self.segments.last() {
            self.file = File::open(&seg.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
