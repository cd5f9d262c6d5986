//! Streaming a container's log (Containers.Logs).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use berth::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;

use crate::container::Entry;
use berth_runtime::cri_log::{parse_header, Stream as LogStream, Tag, ROTATED_SUFFIX};

mod read;
mod tail;

use read::Forward;

type Out = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// How often a following reader looks for new output.
const POLL: Duration = Duration::from_millis(50);

struct Filter {
    /// Unix nanoseconds.
    since: Option<i64>,
    streams: Vec<LogStream>,
}

impl Filter {
    fn keep(&self, unix_nanos: i64, stream: LogStream) -> bool {
        self.since.is_none_or(|s| unix_nanos >= s)
            && (self.streams.is_empty() || self.streams.contains(&stream))
    }
}

fn to_entry(unix_nanos: i64, stream: LogStream, tag: Tag, content: &[u8]) -> pb::LogEntry {
    let mut data = Vec::with_capacity(content.len() + 1);
    data.extend_from_slice(content);
    if tag == Tag::Full {
        data.push(b'\n');
    }
    pb::LogEntry {
        time: Some(prost_types::Timestamp {
            seconds: unix_nanos.div_euclid(NANOS_PER_SEC),
            nanos: unix_nanos.rem_euclid(NANOS_PER_SEC) as i32,
        }),
        stream: match stream {
            LogStream::Stdout => pb::LogStream::Stdout as i32,
            LogStream::Stderr => pb::LogStream::Stderr as i32,
        },
        data,
    }
}

/// Opens the container's log files now (so a later removal cannot take them
/// away) and streams them as the request asks.
pub async fn open(entry: &Entry, req: pb::LogsRequest) -> Result<Out, Status> {
    let path: PathBuf = entry.lock_record().spec.log_file(&entry.dir);
    // Opening a local file does not block for long: done here, not on the
    // blocking pool, it costs the request no thread hand-offs.
    let mut rotated = path.clone().into_os_string();
    rotated.push(ROTATED_SUFFIX);
    let old = File::open(rotated).ok();
    let cur = File::open(&path).map_err(|e| crate::error::Error::internal("opening the log", e))?;
    let filter = Filter {
        since: req.since.map(|t| {
            t.seconds
                .saturating_mul(NANOS_PER_SEC)
                .saturating_add(t.nanos.into())
        }),
        streams: req
            .streams
            .iter()
            .filter_map(|s| match pb::LogStream::try_from(*s) {
                Ok(pb::LogStream::Stdout) => Some(LogStream::Stdout),
                Ok(pb::LogStream::Stderr) => Some(LogStream::Stderr),
                _ => None,
            })
            .collect(),
    };
    let life = entry.life();
    // Few entries in flight: each may be a piece of up to a pipe read, and
    // the reader reads on only as the client takes them.
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = pump(old, cur, path, req.follow, req.tail, filter, life, &tx).await {
            let _ = tx
                .send(Err(Status::internal(format!("reading the log: {e}"))))
                .await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

type Tx = mpsc::Sender<Result<pb::LogEntry, Status>>;

/// Sends the records `r` has up to its limit (or the file's end) that the
/// filter and `start` keep. False when the client went away.
///
/// The log is a local file that the monitor has just written, so a read is
/// served from the page cache in microseconds: it is done right here on the
/// async worker, which is cheaper than a hand-off to the blocking pool and
/// back; a long backlog yields to other tasks every few records.
async fn send_records(
    r: &mut Forward,
    idx: usize,
    start: Option<&tail::Start>,
    filter: &Filter,
    tx: &Tx,
) -> std::io::Result<bool> {
    let mut n = 0u32;
    loop {
        let entry = match r.next_line()? {
            None => return Ok(true),
            Some((off, line)) => parse_header(line).and_then(|(t, s, tag, content)| {
                (filter.keep(t, s) && start.is_none_or(|st| st.keeps(s, (idx, off))))
                    .then(|| to_entry(t, s, tag, content))
            }),
        };
        if let Some(e) = entry {
            if tx.send(Ok(e)).await.is_err() {
                return Ok(false);
            }
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    old: Option<File>,
    cur: File,
    path: PathBuf,
    follow: bool,
    tail: Option<u32>,
    filter: Filter,
    mut life: tokio::sync::watch::Receiver<crate::container::Life>,
    tx: &Tx,
) -> std::io::Result<()> {
    // What is read before following is what the files held at the start:
    // a reader without follow does not chase a writer.
    let mut files = Vec::new();
    for f in old.into_iter().chain(std::iter::once(cur)) {
        let len = f.metadata()?.len();
        files.push((f, len));
    }
    // The backwards scan may read megabytes (a long last line): on the
    // blocking pool.
    let (files, start, filter) = match tail {
        None => (files, None, filter),
        Some(n) => {
            let (files, start, filter) = tokio::task::spawn_blocking(move || {
                let refs: Vec<(&File, u64)> = files.iter().map(|(f, l)| (f, *l)).collect();
                let start = tail::find(&refs, n, |t, s| filter.keep(t, s));
                (files, start, filter)
            })
            .await
            .map_err(std::io::Error::other)?;
            (files, Some(start?), filter)
        }
    };
    let last = files.len() - 1;
    let mut cur = None;
    for (idx, (file, len)) in files.into_iter().enumerate() {
        let from = match start.map(|s| s.from()) {
            None => 0,
            // No line to show: following starts at the end.
            Some(None) => len,
            Some(Some((i, _))) if i > idx => len,
            Some(Some((i, off))) if i == idx => off,
            Some(Some(_)) => 0,
        };
        let mut r = Forward::new(file, from, Some(len));
        if !send_records(&mut r, idx, start.as_ref(), &filter, tx).await? {
            return Ok(());
        }
        if idx == last {
            cur = Some(r);
        }
    }
    let Some(mut cur) = cur else { return Ok(()) };
    if !follow {
        return Ok(());
    }
    cur.set_limit(None);
    loop {
        // Check for the end before reading: the monitor writes all output
        // before it reports the exit, so a read after seeing the exit gets
        // everything.
        let done = super::containers::finished(&life.borrow());
        // Truncated under us (not by the monitor, which only rotates):
        // what is there now is new.
        if cur.file().metadata()?.len() < cur.offset() {
            cur.seek(0);
        }
        if !send_records(&mut cur, usize::MAX, None, &filter, tx).await? {
            return Ok(());
        }
        // Rotated: finish the old file (done above), continue with the new
        // (also when the container has ended: it may have written more).
        if let (Ok(now), Ok(ours)) = (std::fs::metadata(&path), cur.file().metadata()) {
            if now.ino() != ours.ino() {
                // Ours is unlinked once a second rotation replaced it as
                // the rotated file: output after it may be gone. Say so
                // rather than skip it silently.
                if ours.nlink() == 0 {
                    let _ = tx.send(Err(super::status::log_overrun())).await;
                    return Ok(());
                }
                if let Ok(f) = File::open(&path) {
                    cur = Forward::new(f, 0, None);
                    continue;
                }
            }
        }
        if done {
            return Ok(());
        }
        tokio::select! {
            _ = life.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}
