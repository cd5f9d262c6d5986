//! Stop, Kill and signals.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::entry::{Announce, Detail, Entry, Life};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::{Op, Outcome};
use super::{now_nanos, Manager};
use crate::events::domain::Action;

/// How long a SIGKILLed container may take to be reported. SIGKILL cannot
/// be ignored and the monitor reports promptly: the bound only protects the
/// caller from a kernel stuck in uninterruptible sleep.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(60);

impl Manager {
    /// Sends `sig` to the container's process (thawing a paused one for a
    /// fatal signal, which frozen processes only act on once thawed).
    /// SIGKILL goes to every process of its cgroup, thawed first whatever
    /// the record says: a container may have frozen its own cgroup through
    /// a cgroupfs it mounted, and frozen processes do not die.
    fn signal(&self, entry: &Entry, sig: Signal) -> Result<()> {
        let rec = entry.snapshot();
        signalable(&rec)?;
        if sig == Signal::SIGKILL {
            // The init is killed by pidfd below all the same: a cgroup that
            // cannot be killed must not keep the container alive.
            if let Err(e) = self.cgroups.kill(&rec.id) {
                tracing::warn!(id = %rec.id, "killing the cgroup: {e}");
            }
        }
        let process = entry
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(p) = process {
            match p.signal(sig as i32) {
                // ESRCH: it exited a moment ago; its exit is on the way.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                other => other.map_err(|e| ContainerError::io("sending the signal", e))?,
            }
        }
        // SIGKILL thawed the cgroup already; the state says Paused until
        // the exit, which follows at once.
        if sig != Signal::SIGKILL
            && rec.state == super::state::State::Paused
            && is_fatal(sig, rec.stop_signal)
        {
            self.thaw(entry)?;
        }
        Ok(())
    }

    /// [`Manager::signal`] for Stop and forced Remove: a container that
    /// exited by itself meanwhile has done what they ask for.
    pub(super) fn signal_unless_exited(&self, entry: &Entry, sig: Signal) -> Result<()> {
        match self.signal(entry, sig) {
            Err(ContainerError::InvalidTransition { .. }) if !entry.snapshot().state.is_live() => {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `sig` to a running container. SIGKILL or the stop signal count
    /// as a stop through the API for the restart policy.
    pub fn kill(&self, entry: &Entry, sig: Signal) -> Result<()> {
        let rec = entry.snapshot();
        // Refused before anything is saved: a failed Kill changes nothing.
        signalable(&rec)?;
        if is_fatal(sig, rec.stop_signal) {
            // In memory before the signal, for the exit it causes; saving
            // it never holds the signal up (see `Manager::commit`).
            self.commit(
                entry,
                Op::Signal,
                |r| r.stopped_by_user = true,
                Announce::Nothing,
            )?;
        }
        self.signal(entry, sig)?;
        let detail = Detail {
            signal: sig as i32,
            ..Detail::default()
        };
        self.announce(&entry.snapshot(), Action::Killed, detail);
        Ok(())
    }

    /// Stops a container: stop signal, up to `timeout` of grace, then
    /// SIGKILL. Returns the record and whether SIGKILL was needed. Runs to
    /// completion even if the caller goes away, and the deadline is saved so
    /// a restarted berthd still kills on time.
    pub async fn stop(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        timeout: Option<u32>,
    ) -> Result<(Record, bool)> {
        let mgr = self.clone();
        tokio::spawn(async move { mgr.stop_inner(&entry, timeout).await })
            .await
            .map_err(|source| ContainerError::Task {
                context: "stop task",
                source,
            })?
    }

    async fn stop_inner(&self, entry: &Arc<Entry>, timeout: Option<u32>) -> Result<(Record, bool)> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        match rec.state.apply(Op::Stop) {
            Ok(Outcome::To(_)) => {
                // A pending restart is called off.
                entry.call_off_restart();
                let rec = self.commit(
                    entry,
                    Op::Stop,
                    |r| r.stopped_by_user = true,
                    Announce::Nothing,
                )?;
                return Ok((rec, false));
            }
            Ok(_) if !rec.state.is_live() => return Ok((rec, false)),
            Ok(_) => {}
            Err(e) => return Err(ContainerError::transition(&rec.id, e)),
        }
        let mut life = entry.life();
        let sig = Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM);
        let grace = Duration::from_secs(u64::from(timeout.unwrap_or(rec.stop_timeout)));
        let deadline = now_nanos() + grace.as_nanos() as i64;
        let stopping = self.commit(
            entry,
            Op::Stop,
            |r| {
                r.stopped_by_user = true;
                r.stop_deadline = deadline;
            },
            Announce::Nothing,
        )?;
        if !stopping.state.is_live() {
            // It exited since the check (and may be waiting for a restart,
            // which a stop calls off): it is stopped.
            entry.call_off_restart();
            return Ok((stopping, false));
        }
        let detail = Detail {
            signal: sig as i32,
            ..Detail::default()
        };
        self.announce(&rec, Action::Stopping, detail);
        self.signal_unless_exited(entry, sig)?;
        let exited = |l: &Life| !matches!(l, Life::Pending);
        let mut killed = false;
        if tokio::time::timeout(grace, life.wait_for(exited))
            .await
            .is_err()
        {
            killed = true;
            self.signal_unless_exited(entry, Signal::SIGKILL)?;
            let detail = Detail {
                signal: Signal::SIGKILL as i32,
                ..Detail::default()
            };
            self.announce(&entry.snapshot(), Action::Killed, detail);
        }
        tokio::time::timeout(KILL_GRACE, life.wait_for(exited))
            .await
            .map_err(|_| ContainerError::NoExitAfterKill {
                id: entry.id.clone(),
            })?
            .map_err(|_| ContainerError::Vanished {
                what: "container vanished while stopping",
            })?;
        Ok((entry.snapshot(), killed))
    }
}

/// Whether the container's state lets it be signalled.
fn signalable(rec: &Record) -> Result<()> {
    rec.state
        .apply(Op::Signal)
        .map(drop)
        .map_err(|e| ContainerError::transition(&rec.id, e))
}

/// Whether `sig` ends the container (SIGKILL or its stop signal).
fn is_fatal(sig: Signal, stop_signal: i32) -> bool {
    sig == Signal::SIGKILL || sig as i32 == stop_signal
}
