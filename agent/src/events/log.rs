//! The durable event log: append-only segment files in `<state>/events/`.
//!
//! Each segment is named after the sequence number of its first event
//! (`00000000000000000001.log`) and holds records `[len u32][crc32 u32]
//! [protobuf Event]` (little endian). A torn record at the end of the last
//! segment (a crash mid-write) is cut off at open. Whole segments are
//! deleted from the front to keep at most `retain` events.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth::v1::Event;
use prost::Message;

use super::StoredEvent;

/// Events per segment file.
const SEGMENT_EVENTS: u64 = 10_000;
/// Largest record accepted when reading (a corrupt length must not make us
/// allocate gigabytes).
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// One segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Sequence number of its first event.
    pub first: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The writer side of the log.
pub struct EventLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    in_current: u64,
    retain: u64,
    next_seq: u64,
    dirty: bool,
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
/// into what is kept (or nothing); a body it cannot decode ends the valid
/// part. Returns what was kept and the byte length of the valid prefix.
fn scan<T>(
    path: &Path,
    mut decode: impl FnMut(&[u8]) -> Result<Option<T>, prost::DecodeError>,
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
        match decode(body) {
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
                Some(Segment {
                    first,
                    path: e.path(),
                })
            })
            .collect();
        segments.sort_by_key(|s| s.first);
        let mut events = Vec::new();
        let mut next_seq = 1;
        let mut in_current = 0;
        for (i, seg) in segments.iter().enumerate() {
            let (evs, valid) = scan(&seg.path, |b| Event::decode(b).map(Some))?;
            let last = i + 1 == segments.len();
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
                next_seq = evs.last().map(|e| e.seq + 1).unwrap_or(seg.first);
            }
            events.extend(evs);
        }
        if segments.is_empty() {
            segments.push(Segment {
                first: 1,
                path: segment_path(dir, 1),
            });
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
                retain: retain.max(SEGMENT_EVENTS),
                next_seq,
                dirty: false,
            },
            events,
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

    /// The segment files, for readers.
    pub fn segments(&self) -> Vec<Segment> {
        self.segments.clone()
    }

    /// Appends the event `seq` (which must be [`EventLog::next_seq`]),
    /// encoded as `body`.
    pub fn append(&mut self, seq: u64, body: &[u8]) -> io::Result<()> {
        if self.in_current >= SEGMENT_EVENTS {
            self.rotate(seq)?;
        }
        let mut rec = Vec::with_capacity(body.len() + 8);
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        rec.extend_from_slice(body);
        self.file.write_all(&rec)?;
        self.in_current += 1;
        self.next_seq = seq + 1;
        self.dirty = true;
        Ok(())
    }

    fn rotate(&mut self, first: u64) -> io::Result<()> {
        self.file.sync_data()?;
        let path = segment_path(&self.dir, first);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.segments.push(Segment { first, path });
        self.in_current = 0;
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

/// Reads up to `max` events with seq >= `from` from `segments`. Runs
/// without the writer's lock: segments are append-only and a record being
/// written is simply not yet complete.
pub fn read_from(segments: &[Segment], from: u64, max: usize) -> io::Result<Vec<StoredEvent>> {
    let start = segments.iter().rposition(|s| s.first <= from).unwrap_or(0);
    let mut out = Vec::new();
    for seg in &segments[start..] {
        let (evs, _) = match scan(&seg.path, |b| StoredEvent::from_log(b, from)) {
            Ok(x) => x,
            // Deleted by retention meanwhile: the caller sees a gap.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(evs);
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            name: format!("e{seq}"),
            ..Default::default()
        }
    }

    #[test]
    fn reopens_where_it_left_off_and_cuts_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 100).unwrap().log;
        for s in 1..=5 {
            log.append(s, &ev(s).encode_to_vec()).unwrap();
        }
        log.take_dirty().unwrap().unwrap().sync_data().unwrap();
        assert!(log.take_dirty().unwrap().is_none(), "clean after a flush");
        drop(log);
        // A crash in the middle of a record.
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let opened = EventLog::open(dir.path(), 100).unwrap();
        assert_eq!(opened.log.next_seq(), 6);
        assert_eq!(opened.events.len(), 5);
        let mut log = opened.log;
        log.append(6, &ev(6).encode_to_vec()).unwrap();
        let got = read_from(&log.segments(), 4, 10).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
    }

    #[test]
    fn rotates_and_retains_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), SEGMENT_EVENTS).unwrap().log;
        let total = SEGMENT_EVENTS * 3 + 5;
        for s in 1..=total {
            log.append(s, &ev(s).encode_to_vec()).unwrap();
        }
        assert!(log.oldest() > 1, "old segments are dropped");
        assert!(total - log.oldest() < 2 * SEGMENT_EVENTS + 5);
        let got = read_from(&log.segments(), log.oldest(), 3).unwrap();
        assert_eq!(got[0].seq, log.oldest());
        let opened = EventLog::open(dir.path(), SEGMENT_EVENTS).unwrap();
        assert_eq!(opened.log.next_seq(), total + 1);
    }
}
