//! Exec exits are never lost: each is announced once (EXEC_EXITED), also
//! when berthd was down as the exec ended or is restarted while it runs,
//! and stays readable (InspectExec) until its container is removed or
//! [`record::MAX_FINISHED`] newer execs of it have ended.
//!
//! The files are `crate::exec::record`'s; the helper writes the exit
//! itself, so what berthd does here is re-read, re-adopt and announce.

use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::entry::{event, Entry};
use super::record::Record;
use super::{lost_exit, Manager};
use crate::error::Result;
use crate::events::domain::{Action, Event, ExecInfo};
use crate::exec::record::{self, ExecRecord};
use crate::exec::ExecError;
use crate::monitor::ExitRecord;
use crate::sys;

/// An exec event of the container `rec`.
pub(super) fn exec_event(rec: &Record, action: Action, info: ExecInfo) -> Event {
    let mut ev = event(rec, action);
    ev.exec = Some(info);
    ev
}

fn info(x: &ExecRecord, exit: Option<ExitRecord>) -> ExecInfo {
    ExecInfo {
        exec_id: x.exec_id.clone(),
        command: x.command.clone(),
        truncated: x.truncated,
        exit,
    }
}

/// The helper of an exec recorded before a restart of berthd, if it still
/// runs: a pidfd of the process that has its recorded pid and start time.
fn adopt_helper(x: &ExecRecord) -> Option<std::os::fd::OwnedFd> {
    if x.helper_pid <= 0 || x.helper_start == 0 {
        return None;
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(x.helper_pid)).ok()?;
    // The start time read after the pidfd was opened, of a process still
    // alive after it was read, is that of the process the pidfd names.
    let same = crate::exec::start_time(x.helper_pid) == Some(x.helper_start)
        && sys::pidfd_send_signal(&pidfd, 0).is_ok();
    same.then_some(pidfd)
}

impl Manager {
    /// Exec `x` of container `rec` has ended with `exit`: announces
    /// EXEC_EXITED unless that was done already (by a berthd before a
    /// crash), hands the exit to the caller waiting on `tx`, then records
    /// it as announced and drops the oldest finished records past the
    /// bound (off the caller's path).
    pub(super) fn exec_exited(
        &self,
        rec: &Record,
        dir: PathBuf,
        mut x: ExecRecord,
        exit: ExitRecord,
        tx: Option<oneshot::Sender<ExitRecord>>,
    ) {
        if !self
            .events
            .exec_announced(&rec.id, &x.exec_id, Action::ExecExited)
        {
            self.events
                .publish(exec_event(rec, Action::ExecExited, info(&x, Some(exit))));
        }
        if let Some(tx) = tx {
            let _ = tx.send(exit);
        }
        x.exit = Some(exit);
        x.announced = true;
        // A removed container's directory is gone (moved to the trash):
        // writing fails there and nothing is made again.
        let write = move || {
            if let Err(e) = record::write(&dir, &x) {
                tracing::debug!(exec = %x.exec_id, "recording the exec's exit: {e}");
            }
            record::prune(&dir);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    /// At start: every exec of `entry` whose exit was not announced yet is
    /// announced now if it ended while berthd was down, or re-adopted (its
    /// helper's pidfd) and announced when it ends. An exec whose helper
    /// is gone without recording an exit (killed by hand) ended with 255,
    /// as a container whose monitor vanished.
    pub(super) fn recover_execs(self: &Arc<Self>, entry: &Arc<Entry>) {
        let dir = record::dir(&entry.dir);
        let (ids, orphans) = record::list(&dir);
        for id in orphans {
            // A helper started by a berthd that died before recording it:
            // nothing says what it ran, so there is nothing to announce.
            tracing::info!(id = %entry.id, exec = %id, "dropping the exit of an unrecorded exec");
            record::remove(&dir, &id);
        }
        let rec = entry.snapshot();
        for id in ids {
            let Some(x) = record::read(&dir, &id) else {
                tracing::warn!(id = %entry.id, exec = %id, "unreadable exec record; removing it");
                record::remove(&dir, &id);
                continue;
            };
            if x.announced {
                continue;
            }
            if !self
                .events
                .exec_announced(&rec.id, &id, Action::ExecStarted)
            {
                self.events
                    .publish(exec_event(&rec, Action::ExecStarted, info(&x, None)));
            }
            if let Some(exit) = x.exit.or_else(|| record::read_exit(&dir, &id)) {
                self.exec_exited(&rec, dir.clone(), x, exit, None);
                continue;
            }
            let Some(helper) = adopt_helper(&x) else {
                // It may have ended between the two looks.
                let exit = record::read_exit(&dir, &id).unwrap_or_else(lost_exit);
                self.exec_exited(&rec, dir.clone(), x, exit, None);
                continue;
            };
            tracing::info!(id = %entry.id, exec = %id, "re-adopted running exec");
            let (mgr, rec, dir) = (self.clone(), rec.clone(), dir.clone());
            tokio::spawn(async move {
                if let Err(e) = sys::pidfd_exited(helper).await {
                    tracing::warn!(exec = %x.exec_id, "waiting for the exec helper: {e}");
                }
                let exit = record::read_exit(&dir, &x.exec_id).unwrap_or_else(lost_exit);
                mgr.exec_exited(&rec, dir, x, exit, None);
            });
        }
    }

    /// The record of exec `exec_id`, with its exit once it has ended.
    /// Looks in each container's records: an exec lives as long as its
    /// container and is not indexed apart.
    pub fn inspect_exec(&self, exec_id: &str) -> Result<ExecRecord> {
        let not_found = || -> crate::error::Error {
            ExecError::NotFound {
                exec_id: exec_id.to_string(),
            }
            .into()
        };
        if !record::valid_id(exec_id) {
            return Err(not_found());
        }
        let dirs: Vec<PathBuf> = self
            .table()
            .by_id
            .values()
            .map(|e| record::dir(&e.dir))
            .collect();
        dirs.iter()
            .find_map(|d| record::read_full(d, exec_id))
            .ok_or_else(not_found)
    }
}
