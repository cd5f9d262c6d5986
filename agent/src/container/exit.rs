//! Exit handling: recording how a run ended, releasing what it held, and
//! what comes next (removal at exit, or a restart by the policy).

use std::sync::Arc;
use std::time::Duration;

use super::entry::{Announce, Detail, Entry, Life};
use super::record::Record;
use super::rootfs::Rootfs;
use super::state::Op;
use super::{restart, Manager};
use crate::events::domain::Action;
use crate::monitor::ExitRecord;

impl Manager {
    /// Records an exit: announces and persists it (Wait returns here), then
    /// releases the cgroup before anything may reuse it.
    pub(super) async fn finish_exit(self: &Arc<Self>, entry: &Arc<Entry>, exit: ExitRecord) {
        let teardown = entry.teardown.lock().await;
        entry.set_process(None);
        let committed = self.commit(
            entry,
            Op::Exit,
            |r| {
                r.pid = 0;
                r.monitor_pid = 0;
                r.exit = Some(exit);
                r.stop_deadline = 0;
            },
            Announce::Exit(exit),
        );
        let rec = match committed {
            Ok(rec) => rec,
            Err(super::ContainerError::InvalidTransition { source, .. }) => {
                // A duplicate report (e.g. adopted and reported at once): ignore.
                tracing::debug!(id = %entry.id, "{source}");
                return;
            }
            Err(e) => {
                // Announced and recorded in memory; the disk is behind.
                tracing::error!(id = %entry.id, "{e}");
                entry.snapshot()
            }
        };
        entry.life.send_replace(Life::Exited(exit));
        let id = entry.id.clone();
        let cg = self.cgroups.clone();
        let rootfs = Rootfs::under(&entry.dir);
        let bridge = rec.net.as_ref().and_then(|_| self.bridge_of(&rec.network));
        let _ = tokio::task::spawn_blocking(move || {
            // Its published ports go before a restart can bind them again.
            if let Some(bridge) = bridge {
                bridge.unpublish(&id);
            }
            if let Err(e) = rootfs.unmount() {
                tracing::warn!(%id, "{e}");
            }
            if let Err(e) = cg.release(&id) {
                tracing::warn!(%id, "{e}");
            }
        })
        .await;
        // Its CNI attachment goes with its namespace (and before a restart
        // makes the next one).
        self.disconnect_cni(&entry.id).await;
        drop(teardown);
        if rec.spec.auto_remove {
            self.spawn_auto_remove(entry.clone());
            return;
        }
        self.apply_restart_policy(entry, &rec, exit);
    }

    /// Schedules the restart the container's policy asks for after `exit`
    /// (announced as RESTARTING), if any. Also run at agent start for an
    /// exited container: a crash between saving the exit and saving the
    /// restart must not lose the restart (the decision depends only on
    /// what the record holds, so taking it again gives the same answer).
    pub(super) fn apply_restart_policy(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        rec: &Record,
        exit: ExitRecord,
    ) {
        let uptime =
            Duration::from_nanos((exit.finished_at_unix_nanos - rec.started_at).max(0) as u64);
        let Some(r) = restart::after_exit(
            rec.spec.restart_policy,
            exit.exit_code,
            rec.stopped_by_user,
            rec.restart_count,
            rec.backoff,
            uptime,
        ) else {
            return;
        };
        let detail = Detail {
            restart: Some((rec.restart_count + 1, r.delay)),
            ..Detail::default()
        };
        let scheduled = self.commit(
            entry,
            Op::ScheduleRestart,
            |x| {
                x.restart_count += 1;
                x.backoff = r.backoff;
            },
            Announce::After(Action::Restarting, detail),
        );
        match scheduled {
            Ok(_) => self.schedule_restart(entry.clone(), r.delay),
            // A client started it again meanwhile: nothing to restart.
            Err(e @ super::ContainerError::InvalidTransition { .. }) => {
                tracing::debug!(id = %entry.id, "{e}")
            }
            // Announced, and restarting in memory: it must not hang there.
            Err(e) => {
                tracing::error!(id = %entry.id, "{e}");
                self.schedule_restart(entry.clone(), r.delay);
            }
        }
    }

    /// Removes a container that asked to be removed at exit.
    pub(super) fn spawn_auto_remove(self: &Arc<Self>, entry: Arc<Entry>) {
        let mgr = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mgr.remove(&entry, false).await {
                tracing::warn!(id = %entry.id, "auto-remove: {e}");
            }
        });
    }
}
