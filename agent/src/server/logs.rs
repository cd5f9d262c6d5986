//! Streaming a container's log (Containers.Logs).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use berth::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;

use crate::container::{Entry, LOG_FILE};
use berth_runtime::cri_log::{parse_record, Record, Stream as LogStream, ROTATED_SUFFIX};

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
    fn keep(&self, r: &Record) -> bool {
        self.since.is_none_or(|s| r.unix_nanos >= s)
            && (self.streams.is_empty() || self.streams.contains(&r.stream))
    }
}

fn to_entry(r: Record) -> pb::LogEntry {
    pb::LogEntry {
        time: Some(prost_types::Timestamp {
            seconds: r.unix_nanos.div_euclid(NANOS_PER_SEC),
            nanos: r.unix_nanos.rem_euclid(NANOS_PER_SEC) as i32,
        }),
        stream: match r.stream {
            LogStream::Stdout => pb::LogStream::Stdout as i32,
            LogStream::Stderr => pb::LogStream::Stderr as i32,
        },
        data: r.data,
    }
}

/// Opens the container's log files now (so a later removal cannot take them
/// away) and streams them as the request asks.
pub async fn open(entry: &Entry, req: pb::LogsRequest) -> Result<Out, Status> {
    let path: PathBuf = entry.dir.join(LOG_FILE);
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
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Err(e) = pump(old, cur, path, req.follow, req.tail, filter, life, &tx).await {
            let _ = tx
                .send(Err(Status::internal(format!("reading the log: {e}"))))
                .await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Splits complete lines off `buf`, leaving an unfinished tail.
fn take_records(buf: &mut Vec<u8>) -> Vec<Record> {
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last_nl + 1);
    let recs = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_record)
        .collect();
    *buf = rest;
    recs
}

/// Appends what `f` holds from its offset to its end onto `buf`.
///
/// The log is a local file that the monitor has just written, so a read is
/// served from the page cache in microseconds: it is done right here on the
/// async worker, which is cheaper than a hand-off to the blocking pool and
/// back (`tokio::fs` makes one per call, a follower several per container).
/// A long backlog is read in chunks with a yield in between, so other tasks
/// on this worker are not held up.
async fn read_new(f: &mut File, buf: &mut Vec<u8>, chunk: &mut [u8]) -> std::io::Result<()> {
    loop {
        let n = match f.read(chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if n == chunk.len() {
            tokio::task::yield_now().await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    old: Option<File>,
    mut cur: File,
    path: PathBuf,
    follow: bool,
    tail: Option<u32>,
    filter: Filter,
    mut life: tokio::sync::watch::Receiver<crate::container::Life>,
    tx: &mpsc::Sender<Result<pb::LogEntry, Status>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    if let Some(mut old) = old {
        read_new(&mut old, &mut buf, &mut chunk).await?;
    }
    read_new(&mut cur, &mut buf, &mut chunk).await?;
    let mut backlog: Vec<Record> = take_records(&mut buf)
        .into_iter()
        .filter(|r| filter.keep(r))
        .collect();
    if let Some(n) = tail {
        let skip = backlog.len().saturating_sub(n as usize);
        backlog.drain(..skip);
    }
    for r in backlog {
        if tx.send(Ok(to_entry(r))).await.is_err() {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        // Check for the end before reading: the monitor writes all output
        // before it reports the exit, so a read after seeing the exit gets
        // everything.
        let done = super::containers::finished(&life.borrow());
        read_new(&mut cur, &mut buf, &mut chunk).await?;
        for r in take_records(&mut buf) {
            if filter.keep(&r) && tx.send(Ok(to_entry(r))).await.is_err() {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
        // Rotated: finish the old file (done above), continue with the new.
        if let (Ok(now), Ok(ours)) = (std::fs::metadata(&path), cur.metadata()) {
            if now.ino() != ours.ino() {
                if let Ok(f) = File::open(&path) {
                    cur = f;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = life.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}
