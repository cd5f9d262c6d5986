//! The agent's event bus: one ordered, durable sequence of lifecycle events.
//!
//! Publishing assigns the next sequence number, appends the event to the
//! durable log and only then makes it visible, all under one lock, so
//! sequence order is publication order. Subscribers do not get pushed
//! events: each reads from its own cursor (recent events from memory, older
//! ones from the log files) and waits for the next sequence number when it
//! has caught up. A slow subscriber therefore only delays itself and never
//! loses anything still retained.
//!
//! Durability: every event is written to the log before it is published,
//! so it survives a crash of berthd; the log is fsynced in the background
//! at most [`SYNC_INTERVAL`] after an event (and at shutdown), so a crash of
//! the whole host can lose at most that much.

pub mod domain;
pub mod encoded;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use berth::v1::{Event, EventAction, ObjectType};
use tokio::sync::watch;

pub use domain::EventSink;
use encoded::Chunks;
pub use encoded::{EncodedEvent, StoredEvent};
use log::EventLog;

/// Events kept in memory for fast reads by subscribers that keep up.
const RECENT: usize = 4096;
/// How long after a change the log and the state files are flushed to
/// stable storage at the latest, plus the time of flushing (of the flush
/// under way when the change came, and its own).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// Ordered, durable publication of events.
pub struct EventBus {
    inner: Mutex<Inner>,
    published: watch::Sender<u64>,
    instance_id: String,
}

struct Inner {
    log: EventLog,
    recent: VecDeque<StoredEvent>,
    /// Where `recent` keeps its encodings.
    chunks: Chunks,
    /// Container id -> when its last STARTED and EXITED events were
    /// published, for containers not yet removed: a run's start or exit
    /// seen again (after a restart of berthd, or reported twice) is
    /// announced only once, and one a crash kept from being announced is
    /// announced then. Removal drops the entry, so this holds one entry per
    /// existing container, not one per event in the retained log.
    runs: HashMap<String, Announced>,
    /// Container id -> exec id -> which of EXEC_STARTED and EXEC_EXITED
    /// were published, for containers not yet removed: an exec's exit read
    /// again after a restart of berthd is announced once. Removal drops the
    /// container's entry.
    execs: HashMap<String, ContainerExecs>,
    /// When the oldest retained event was published, if older ones were
    /// retired (unix nanos; 0: the log is whole). A start older than that
    /// may have had its STARTED retired: it counts as announced.
    horizon: i64,
}

/// Why the events from some sequence number on cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Gap {
    /// It is older than what the log retains.
    Retired {
        /// Oldest sequence number still available.
        oldest: u64,
    },
    /// The event with this seq is not in the log: its write failed (the
    /// agent logged why) or its segment was deleted while being read.
    Missing {
        /// The seq that cannot be read.
        seq: u64,
    },
    /// The log could not be read.
    Unreadable(String),
}

/// The events of `evs` from `from` on up to the first missing seq; a
/// [`Gap::Missing`] when `from` itself is missing.
fn unbroken(from: u64, mut evs: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, Gap> {
    if evs.first().is_some_and(|e| e.seq != from) {
        return Err(Gap::Missing { seq: from });
    }
    let run = evs
        .windows(2)
        .position(|w| w[1].seq != w[0].seq + 1)
        .map_or(evs.len(), |i| i + 1);
    evs.truncate(run);
    Ok(evs)
}

/// When a container's last STARTED and EXITED events were published (unix
/// nanos, 0: never).
#[derive(Debug, Default, Clone, Copy)]
struct Announced {
    started: i64,
    exited: i64,
}

/// Which events of an exec were published.
#[derive(Debug, Default, Clone, Copy)]
struct ExecSeen {
    started: bool,
    exited: bool,
}

/// Ended execs remembered per container. An ended exec's own record says
/// it was announced a moment after its EXEC_EXITED; this only covers a
/// crash in between, so the oldest ended ones can be forgotten, which
/// bounds the memory of a container that runs execs for months (a probe).
const ENDED_EXECS_KEPT: usize = 1024;

/// The exec events of one container.
#[derive(Debug, Default)]
struct ContainerExecs {
    seen: HashMap<String, ExecSeen>,
    /// Ended execs, oldest first (at most [`ENDED_EXECS_KEPT`]).
    ended: VecDeque<String>,
}

/// Keeps `execs` up to date with one more event.
fn track_exec(execs: &mut HashMap<String, ContainerExecs>, ev: &Event) {
    if ev.r#type != ObjectType::Container as i32 {
        return;
    }
    if ev.action == EventAction::Removed as i32 {
        execs.remove(&ev.id);
        return;
    }
    let started = ev.action == EventAction::ExecStarted as i32;
    if !started && ev.action != EventAction::ExecExited as i32 {
        return;
    }
    let Some(x) = &ev.exec else { return };
    let c = execs.entry(ev.id.clone()).or_default();
    let seen = c.seen.entry(x.exec_id.clone()).or_default();
    if started {
        seen.started = true;
    } else if !seen.exited {
        seen.exited = true;
        c.ended.push_back(x.exec_id.clone());
        if c.ended.len() > ENDED_EXECS_KEPT {
            if let Some(old) = c.ended.pop_front() {
                c.seen.remove(&old);
            }
        }
    }
}

/// When `ev` was published (unix nanos; 0: unknown).
fn event_time(ev: &Event) -> i64 {
    ev.time
        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
        .unwrap_or(0)
}

/// Keeps `runs` up to date with one more event.
fn track_run(runs: &mut HashMap<String, Announced>, ev: &Event) {
    if ev.r#type != ObjectType::Container as i32 {
        return;
    }
    let at = event_time(ev);
    if ev.action == EventAction::Removed as i32 {
        runs.remove(&ev.id);
    } else if ev.action == EventAction::Started as i32 {
        runs.entry(ev.id.clone()).or_default().started = at;
    } else if ev.action == EventAction::Exited as i32 {
        runs.entry(ev.id.clone()).or_default().exited = at;
    }
}

impl EventBus {
    /// Opens the log in `dir` (keeping at most `retain` events); events
    /// published from now on carry `instance_id`.
    pub fn open(dir: &Path, retain: u64, instance_id: String) -> std::io::Result<Self> {
        let opened = EventLog::open(dir, retain)?;
        let mut runs = HashMap::new();
        let mut execs = HashMap::new();
        for ev in &opened.events {
            track_run(&mut runs, ev);
            track_exec(&mut execs, ev);
        }
        let mut chunks = Chunks::default();
        let skip = opened.events.len().saturating_sub(RECENT);
        let recent: VecDeque<StoredEvent> = opened.events[skip..]
            .iter()
            .map(|ev| chunks.store(ev))
            .collect();
        let last = opened.log.next_seq() - 1;
        let horizon = match opened.events.first() {
            Some(ev) if ev.seq > 1 => event_time(ev),
            _ => 0,
        };
        Ok(EventBus {
            inner: Mutex::new(Inner {
                log: opened.log,
                recent,
                chunks,
                runs,
                execs,
                horizon,
            }),
            published: watch::Sender::new(last),
            instance_id,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update under the lock is a single step that leaves Inner
        // consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps `ev` (already in its wire form) with the next sequence
    /// number, the time and the instance id, logs it and publishes it.
    /// Returns its sequence number. The runtime publishes through
    /// [`EventSink`] instead.
    pub fn publish(&self, mut ev: Event) -> u64 {
        let mut inner = self.lock();
        let seq = inner.log.next_seq();
        ev.seq = seq;
        ev.time = Some(prost_types::Timestamp::from(SystemTime::now()));
        ev.instance_id = self.instance_id.clone();
        let stored = inner.chunks.store(&ev);
        if let Err(e) = inner.log.append(seq, stored.encoded.bytes()) {
            // The event is still delivered from memory; a subscriber that
            // later needs it from disk gets an error rather than a silent gap.
            tracing::error!(seq, "appending to the event log: {e}");
        }
        crate::crash::point(|| {
            let action = EventAction::try_from(ev.action).map_or("UNKNOWN", |a| a.as_str_name());
            crate::crash::event_point(action.trim_start_matches("EVENT_ACTION_"))
        });
        track_run(&mut inner.runs, &ev);
        track_exec(&mut inner.execs, &ev);
        inner.recent.push_back(stored);
        if inner.recent.len() > RECENT {
            inner.recent.pop_front();
        }
        self.published.send_replace(seq);
        seq
    }

    /// Whether a STARTED or EXITED event (`action`) of container `id` was
    /// published at or after `since` (unix nanos): given the start of a
    /// run, whether that run's start or exit was announced. A start older
    /// than the retained log counts as announced (its STARTED may have been
    /// retired; announcing it again would double it), an exit never does
    /// (one lost would be worse). Every other action: false.
    pub fn announced_since(&self, id: &str, action: EventAction, since: i64) -> bool {
        let inner = self.lock();
        if action == EventAction::Started && since < inner.horizon {
            return true;
        }
        let Some(run) = inner.runs.get(id).copied() else {
            return false;
        };
        drop(inner);
        let at = match action {
            EventAction::Started => run.started,
            EventAction::Exited => run.exited,
            _ => return false,
        };
        at != 0 && at >= since
    }

    /// Whether EXEC_STARTED or EXEC_EXITED (`action`) of exec `exec_id` of
    /// container `id` is in the retained log. Every other action: false.
    pub fn exec_announced(&self, id: &str, exec_id: &str, action: EventAction) -> bool {
        let inner = self.lock();
        let Some(seen) = inner.execs.get(id).and_then(|c| c.seen.get(exec_id)) else {
            return false;
        };
        match action {
            EventAction::ExecStarted => seen.started,
            EventAction::ExecExited => seen.exited,
            _ => false,
        }
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().log.next_seq()
    }

    /// Runs `f` while no event can be published; `f` gets the sequence
    /// number of the last published event (for snapshots).
    pub fn at_position<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let inner = self.lock();
        f(inner.log.next_seq() - 1)
    }

    /// Follows the sequence number of the last published event.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Up to `max` consecutive events from seq `from` on, oldest first,
    /// ending before the first seq that is missing (the next read from there
    /// reports it). Empty when `from` is in the future.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<StoredEvent>, Gap> {
        let plan = {
            let inner = self.lock();
            let oldest = inner.log.oldest();
            if from < oldest {
                return Err(Gap::Retired { oldest });
            }
            if from >= inner.log.next_seq() {
                return Ok(Vec::new());
            }
            if inner.recent.front().is_some_and(|e| e.seq <= from) {
                // Reopened from a log with holes, the cache has them too.
                let i = inner.recent.partition_point(|e| e.seq < from);
                let evs = inner.recent.range(i..).take(max).cloned().collect();
                return unbroken(from, evs);
            }
            inner.log.plan(from)
        };
        let evs = log::read_from(&plan, from, max).map_err(|e| Gap::Unreadable(e.to_string()))?;
        match unbroken(from, evs) {
            Ok(evs) if !evs.is_empty() => Ok(evs),
            Ok(_) | Err(Gap::Missing { .. }) => {
                // Retention may have deleted the planned segments meanwhile.
                let oldest = self.lock().log.oldest();
                Err(if from < oldest {
                    Gap::Retired { oldest }
                } else {
                    Gap::Missing { seq: from }
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Flushes the log to stable storage. Publishing goes on meanwhile: the
    /// fsync (milliseconds on a busy disk) runs without the bus lock.
    /// Returns false when it failed: the log is still to be synced, and
    /// the caller should try again later.
    pub fn sync(&self) -> bool {
        let file = match self.lock().log.take_dirty() {
            Ok(Some(f)) => f,
            Ok(None) => return true,
            Err(e) => {
                tracing::error!("syncing the event log: {e}");
                return false;
            }
        };
        if let Err(e) = file.sync_data() {
            self.lock().log.mark_dirty();
            tracing::error!("syncing the event log: {e}");
            return false;
        }
        true
    }
}

/// The runtime's events go to the bus in their wire form: converted here,
/// at the boundary, and stored encoded.
impl EventSink for EventBus {
    fn publish(&self, ev: domain::Event) -> u64 {
        EventBus::publish(self, wire::event_to_proto(ev))
    }

    fn announced_since(&self, id: &str, action: domain::Action, since: i64) -> bool {
        EventBus::announced_since(self, id, wire::action_to_proto(action), since)
    }

    fn exec_announced(&self, id: &str, exec_id: &str, action: domain::Action) -> bool {
        EventBus::exec_announced(self, id, exec_id, wire::action_to_proto(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> Event {
        Event {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sequence_continues_across_reopen_and_replays_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::open(dir.path(), 100_000, "a".into()).unwrap();
        for n in 0..(RECENT + 10) {
            bus.publish(ev(&format!("e{n}")));
        }
        bus.sync();
        drop(bus);
        let bus = EventBus::open(dir.path(), 100_000, "b".into()).unwrap();
        let seq = bus.publish(ev("after"));
        assert_eq!(seq, RECENT as u64 + 11);
        // Seq 1 is no longer in memory: it comes from the log file.
        let first = bus.read(1, 2).unwrap();
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(first[0].encoded.decode_event().unwrap().instance_id, "a");
        let last = bus.read(seq, 10).unwrap();
        assert_eq!(last[0].encoded.decode_event().unwrap().instance_id, "b");
        assert!(bus.read(seq + 1, 10).unwrap().is_empty());
    }

    fn seqs(evs: &[StoredEvent]) -> Vec<u64> {
        evs.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn an_event_the_log_lacks_ends_a_replay_with_missing() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::open(dir.path(), 100_000, "a".into()).unwrap();
        for n in 0..10 {
            bus.publish(ev(&format!("e{n}")));
        }
        bus.lock().log.fail_writes().unwrap();
        assert_eq!(bus.publish(ev("lost")), 11);
        assert_eq!(bus.publish(ev("next")), 12, "no two events share a seq");
        for n in 0..4 {
            bus.publish(ev(&format!("f{n}")));
        }
        // Live (from memory), the lost event is still there.
        assert_eq!(
            seqs(&bus.read(1, 100).unwrap()),
            (1..=16).collect::<Vec<_>>()
        );
        bus.sync();
        drop(bus);
        // Reopened, the cache comes from the log, hole and all...
        let bus = EventBus::open(dir.path(), 100_000, "b".into()).unwrap();
        let check = |bus: &EventBus| {
            assert_eq!(
                seqs(&bus.read(1, 100).unwrap()),
                (1..=10).collect::<Vec<_>>()
            );
            assert_eq!(bus.read(11, 100).err(), Some(Gap::Missing { seq: 11 }));
            assert_eq!(seqs(&bus.read(12, 3).unwrap()), vec![12, 13, 14]);
        };
        check(&bus);
        // ... and once they have left the cache, from the log itself.
        for n in 0..RECENT {
            bus.publish(ev(&format!("g{n}")));
        }
        check(&bus);
    }

    #[test]
    fn exec_exits_are_remembered_across_a_reopen_until_removal() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::open(dir.path(), 100_000, "a".into()).unwrap();
        let exec = |action: EventAction, exec_id: &str| Event {
            r#type: ObjectType::Container as i32,
            action: action as i32,
            id: "c1".into(),
            exec: Some(berth::v1::ExecEvent {
                exec_id: exec_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        bus.publish(exec(EventAction::ExecStarted, "e1"));
        bus.publish(exec(EventAction::ExecExited, "e1"));
        bus.publish(exec(EventAction::ExecStarted, "e2"));
        drop(bus);
        let bus = EventBus::open(dir.path(), 100_000, "b".into()).unwrap();
        assert!(bus.exec_announced("c1", "e1", EventAction::ExecExited));
        assert!(bus.exec_announced("c1", "e2", EventAction::ExecStarted));
        assert!(!bus.exec_announced("c1", "e2", EventAction::ExecExited));
        assert!(!bus.exec_announced("c2", "e1", EventAction::ExecExited));
        // The oldest ended execs are forgotten past the bound.
        for n in 0..ENDED_EXECS_KEPT {
            bus.publish(exec(EventAction::ExecExited, &format!("x{n}")));
        }
        assert!(!bus.exec_announced("c1", "e1", EventAction::ExecExited));
        assert!(bus.exec_announced("c1", "e2", EventAction::ExecStarted));
        bus.publish(Event {
            r#type: ObjectType::Container as i32,
            action: EventAction::Removed as i32,
            id: "c1".into(),
            ..Default::default()
        });
        assert!(!bus.exec_announced("c1", "e2", EventAction::ExecStarted));
    }

    #[test]
    fn starts_and_exits_are_remembered_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::open(dir.path(), 100_000, "a".into()).unwrap();
        let container = |action: EventAction| Event {
            r#type: ObjectType::Container as i32,
            action: action as i32,
            id: "c1".into(),
            ..Default::default()
        };
        let before = now_nanos();
        bus.publish(container(EventAction::Started));
        bus.publish(container(EventAction::Exited));
        drop(bus);
        let bus = EventBus::open(dir.path(), 100_000, "b".into()).unwrap();
        // The run that started before both events: announced.
        assert!(bus.announced_since("c1", EventAction::Started, before));
        assert!(bus.announced_since("c1", EventAction::Exited, before));
        // A run that started later: not.
        let later = now_nanos() + 1_000_000_000;
        assert!(!bus.announced_since("c1", EventAction::Exited, later));
        assert!(!bus.announced_since("c2", EventAction::Exited, 0));
        // Removal forgets it, and so does a reopened log.
        bus.publish(container(EventAction::Removed));
        assert!(!bus.announced_since("c1", EventAction::Exited, before));
        assert!(bus.lock().runs.is_empty());
        drop(bus);
        let bus = EventBus::open(dir.path(), 100_000, "c".into()).unwrap();
        assert!(!bus.announced_since("c1", EventAction::Exited, before));
        assert!(bus.lock().runs.is_empty());
    }

    /// A start whose STARTED the log has retired counts as announced (a
    /// restart of berthd must not announce a long-running container's start
    /// again); an exit never does.
    #[test]
    fn a_start_older_than_the_log_counts_as_announced() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::open(dir.path(), 10_000, "a".into()).unwrap();
        let before = now_nanos();
        bus.publish(Event {
            r#type: ObjectType::Container as i32,
            action: EventAction::Started as i32,
            id: "c1".into(),
            ..Default::default()
        });
        for _ in 0..25_000 {
            bus.publish(Event {
                r#type: ObjectType::Image as i32,
                action: EventAction::Imported as i32,
                id: "i".into(),
                ..Default::default()
            });
        }
        drop(bus);
        let bus = EventBus::open(dir.path(), 10_000, "b".into()).unwrap();
        assert!(bus.lock().horizon > before, "nothing was retired");
        assert!(bus.announced_since("c1", EventAction::Started, before));
        assert!(!bus.announced_since("c1", EventAction::Exited, before));
        assert!(!bus.announced_since("c1", EventAction::Started, now_nanos()));
    }

    fn now_nanos() -> i64 {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    }
}
