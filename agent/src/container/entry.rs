//! One container in memory, and the transition function: the only writer
//! of a container's state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::{Op, Outcome};
use super::Manager;
use crate::crash;
use crate::events::domain::{Action, Event, Object};
use crate::fsutil::{Durability, Flusher};
use crate::monitor::{ExitRecord, Process};

/// File name of a container's record.
pub(super) const RECORD_FILE: &str = "container.json";

/// Where a container's current run stands, as Wait sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Not started, or running.
    Pending,
    /// Its process ended.
    Exited(ExitRecord),
    /// Removed; with the last exit if it ever ran.
    Removed(Option<ExitRecord>),
}

/// One container in memory.
pub struct Entry {
    /// Full id.
    pub id: String,
    /// Its directory under the state dir.
    pub dir: PathBuf,
    record: Mutex<Record>,
    /// Held by [`Manager::commit`] from deciding a transition until it is
    /// saved and announced, so two transitions (a client's and an exit,
    /// two kills) are saved and announced in the order they were decided
    /// and never write the record at once. Never held across an await, and
    /// the record's own lock is taken inside it only briefly: a snapshot
    /// subscription takes record locks under the event bus's lock.
    pub(super) transition: Mutex<()>,
    pub(super) life: watch::Sender<Life>,
    /// Serialises the lifecycle operations of clients (and of the restart
    /// policy) on this container. Exits are recorded without it.
    pub(super) ops: Arc<tokio::sync::Mutex<()>>,
    /// Held while the cgroup of a run that ended is released. The exit is
    /// announced first (Wait returns at once); whatever reuses the cgroup or
    /// the directory (the next start, removal) waits for this.
    pub(super) teardown: tokio::sync::Mutex<()>,
    /// The running process, to signal.
    pub(super) process: Mutex<Option<Arc<dyn Process>>>,
    flusher: Arc<Flusher>,
    /// Generation of the pending policy restart: a client's Start or Stop
    /// moves it on, and a restart timer of an older one does nothing.
    pub(super) restart_gen: AtomicU64,
}

/// How a transition is announced.
pub(super) enum Announce {
    /// Not at all (an adoption, a restart called off).
    Nothing,
    /// Saved, then announced: every transition but an exit.
    After(Action, Detail),
    /// A new name: saved, then announced with the name it replaces.
    Renamed(String),
    /// An exit: announced to the durable event log first (unless the log
    /// already has it), then saved (unless the container is removed at
    /// exit). A crash in between makes the next berthd see the exit again,
    /// and the log tells it that the exit was already announced.
    Exit(ExitRecord),
}

/// What an event carries beyond the container's identity.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Detail {
    /// The signal sent.
    pub signal: i32,
    /// Which restart, and after how long.
    pub restart: Option<(u32, std::time::Duration)>,
    /// How the process ended (a start that failed before exec).
    pub exit: Option<ExitRecord>,
}

impl Entry {
    pub(super) fn new(
        id: String,
        dir: PathBuf,
        rec: Record,
        life: Life,
        flusher: Arc<Flusher>,
    ) -> Self {
        Entry {
            id,
            dir,
            record: Mutex::new(rec),
            transition: Mutex::new(()),
            life: watch::Sender::new(life),
            ops: Arc::new(tokio::sync::Mutex::new(())),
            teardown: tokio::sync::Mutex::new(()),
            process: Mutex::new(None),
            flusher,
            restart_gen: AtomicU64::new(0),
        }
    }

    /// Calls off a pending policy restart (see `Manager::schedule_restart`).
    pub(super) fn call_off_restart(&self) -> u64 {
        self.restart_gen.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A copy of the current record.
    pub fn snapshot(&self) -> Record {
        self.lock_record().clone()
    }

    /// The name and state, without copying the whole record (stats reads
    /// them for every container at every sample).
    pub fn name_and_state(&self) -> (String, super::state::State) {
        let r = self.lock_record();
        (r.name.clone(), r.state)
    }

    pub(crate) fn lock_record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the container's runs and exits.
    pub fn life(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }

    pub(super) fn set_process(&self, p: Option<Arc<dyn Process>>) {
        *self.process.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// Saves `rec` as the container's record (atomically).
    pub(super) fn persist(&self, rec: &Record) -> Result<()> {
        #[cfg(test)]
        super::testkit::disk_fault(&self.dir)
            .map_err(|e| ContainerError::io(format_args!("saving container {}", self.id), e))?;
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| ContainerError::io("encoding record", e.into()))?;
        // A container removed at exit needs no record that survives a power
        // loss; skipping the fsync keeps `run --rm` fast.
        let durability = if rec.spec.auto_remove {
            Durability::Volatile
        } else {
            Durability::Flushed
        };
        self.flusher
            .write(&self.dir.join(RECORD_FILE), &json, durability)
            .map_err(|e| ContainerError::io(format_args!("saving container {}", self.id), e))
    }
}

/// The container's identity as an event.
pub(super) fn event(rec: &Record, action: Action) -> Event {
    let mut ev = Event::new(Object::Container, action, rec.id.clone());
    ev.name = rec.name.clone();
    ev.labels = rec.spec.labels.clone();
    ev.image = rec.spec.image.clone();
    ev
}

impl Manager {
    /// The transition function, the only writer of a container's state:
    /// checks `op` against the state table (under the record's lock, so an
    /// exit recorded meanwhile is seen), applies `change` and the new state
    /// in memory, then saves and announces in the order `announce` says.
    ///
    /// `change` sets the other fields; the state is the table's to set. A
    /// record that cannot be saved (a full disk) fails nothing: memory
    /// follows the container, which has changed (a signal sent, a process
    /// exited), the change is announced all the same, and the record is
    /// saved again once the disk takes it (see `resave.rs`). So stopping a
    /// container never waits on the disk. The only error is a transition
    /// the state table refuses, and then nothing has changed.
    pub(super) fn commit(
        &self,
        entry: &Entry,
        op: Op,
        change: impl FnOnce(&mut Record),
        announce: Announce,
    ) -> Result<Record> {
        let _transition = entry.transition.lock().unwrap_or_else(|e| e.into_inner());
        let rec = {
            let mut rec = entry.lock_record();
            let to = match rec.state.apply(op) {
                Ok(Outcome::To(to)) => to,
                Ok(Outcome::Stay | Outcome::Gone | Outcome::KillThenRemove) => rec.state,
                Err(e) => return Err(ContainerError::transition(&entry.id, e)),
            };
            change(&mut rec);
            rec.state = to;
            rec.clone()
        };
        let point = |stage: &str| crash::point(|| crash::transition_point(op.name(), stage));
        let save = |rec: &Record| {
            point("before-save");
            let saved = entry.persist(rec);
            point("saved");
            saved
        };
        let saved = match announce {
            Announce::Nothing => save(&rec),
            Announce::After(action, detail) => {
                let saved = save(&rec);
                self.announce(&rec, action, detail);
                point("announced");
                saved
            }
            Announce::Renamed(old_name) => {
                let saved = save(&rec);
                let mut ev = event(&rec, Action::Renamed);
                ev.old_name = old_name;
                self.events.publish(ev);
                point("announced");
                saved
            }
            Announce::Exit(exit) => {
                // Keyed on the run (its start), not on the finish time: a
                // run whose exit is re-read after a restart of berthd, or
                // made up as lost, is still announced once.
                if !self
                    .events
                    .announced_since(&rec.id, Action::Exited, rec.started_at)
                {
                    let mut ev = event(&rec, Action::Exited);
                    ev.exit = Some(exit);
                    self.events.publish(ev);
                }
                point("announced");
                // An auto-remove container is removed next; its record is
                // not rewritten for the moment in between. A crash before the
                // removal leaves it "running" on disk with its monitor gone,
                // and the next berthd takes the exit from exit.json and
                // removes it then.
                if rec.spec.auto_remove {
                    Ok(())
                } else {
                    save(&rec)
                }
            }
        };
        if let Err(e) = saved {
            tracing::error!(id = %entry.id, "{e}; saving it again when the disk has room");
            self.resave_later(&entry.id);
        }
        Ok(rec)
    }

    /// Announces what happened to a container without a change of state
    /// (a signal sent, a stop begun, a removal).
    pub(super) fn announce(&self, rec: &Record, action: Action, detail: Detail) {
        let mut ev = event(rec, action);
        ev.signal = detail.signal;
        ev.exit = detail.exit;
        if let Some((attempt, delay)) = detail.restart {
            ev.restart_attempt = attempt;
            ev.restart_delay = delay;
        }
        self.events.publish(ev);
    }
}
