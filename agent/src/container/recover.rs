//! What berthd finds when it starts: loading the stored containers and
//! repairing what a crash left half-done.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::entry::{Announce, Detail, Entry, Life, RECORD_FILE};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::rootfs::Rootfs;
use super::state::{Op, State};
use super::{lost_exit, now_nanos, read_exit, read_json, restart, Manager};
use crate::events::domain::Action;
use crate::monitor;
use crate::sys;

impl Manager {
    /// Loads stored containers and repairs what a crash of berthd left
    /// half-done: directories without a record are removed; a container
    /// whose monitor said it started is treated as started; running
    /// containers are adopted again (or get the exit their monitor
    /// recorded); stale mounts and cgroups go; pending stop deadlines and
    /// restart policies are honoured again.
    pub(super) fn load(self: &Arc<Self>) -> Result<()> {
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| ContainerError::io(self.dir.display(), e))?;
        let mut known = HashSet::new();
        for de in rd.flatten() {
            let dir = de.path();
            let Some(id) = dir.file_name().map(|n| n.to_string_lossy().to_string()) else {
                continue;
            };
            if id.starts_with(".trash-") {
                // Where berthd before the trash directory put a removal
                // whose background delete a crash cut short.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            if id.starts_with('.') {
                continue;
            }
            let bytes = match std::fs::read(dir.join(RECORD_FILE)) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A create or remove cut short by a crash.
                    tracing::info!(%id, "removing a half-created or half-removed container");
                    let _ = Rootfs::under(&dir).unmount();
                    let _ = self.cgroups.remove(&id);
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                Err(e) => return Err(ContainerError::io(dir.display(), e)),
            };
            let rec: Record = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    self.quarantine(&dir, &id, &e.to_string());
                    continue;
                }
            };
            known.insert(rec.id.clone());
            if let Some(net) = &rec.net {
                let claimed = self.bridge_of(&rec.network).is_some_and(|b| b.claim(net));
                if !claimed {
                    tracing::warn!(
                        id = %rec.id,
                        "address {} is outside its network's subnet, taken twice, or its \
                         network is gone",
                        net.ip
                    );
                }
            }
            self.claim_connected(&rec);
            let life = match rec.exit {
                Some(x) if !rec.state.is_live() && rec.state != State::Created => Life::Exited(x),
                _ => Life::Pending,
            };
            let entry = Arc::new(Entry::new(
                rec.id.clone(),
                dir.clone(),
                rec.clone(),
                life,
                self.flusher.clone(),
            ));
            self.table().by_id.insert(rec.id.clone(), entry.clone());
            self.recover_execs(&entry);
            self.adopt_cut_short_start(&entry);
            if entry.snapshot().state.is_live() {
                self.announce_adopted_start(&entry);
                self.readopt(entry);
            } else {
                let _ = Rootfs::under(&dir).unmount();
                let _ = self.cgroups.remove(&rec.id);
                let rec = entry.snapshot();
                let start = match rec.state {
                    State::Restarting => true,
                    State::Exited => {
                        restart::at_agent_start(rec.spec.restart_policy, rec.stopped_by_user)
                    }
                    _ => false,
                };
                if start {
                    self.schedule_restart(entry, Duration::ZERO);
                } else if let (State::Exited, Some(exit)) = (rec.state, rec.exit) {
                    // A restart decided but not saved before a crash (or
                    // one of on-failure, which at_agent_start leaves out).
                    self.apply_restart_policy(&entry, &rec, exit);
                }
            }
        }
        self.cgroups.remove_others(&known);
        Ok(())
    }

    /// The monitor's own files say more than a record written before a
    /// crash: it writes running.json once the process runs. A run the
    /// record does not know is adopted, also one that has ended meanwhile:
    /// re-adopting finds its monitor gone and records the exit from
    /// exit.json.
    fn adopt_cut_short_start(&self, entry: &Entry) {
        let rec = entry.snapshot();
        if rec.state.is_live() {
            return;
        }
        let Some(r) = read_json::<monitor::RunningRecord>(&entry.dir.join(monitor::RUNNING_FILE))
        else {
            return;
        };
        if r.started_at_unix_nanos <= rec.started_at {
            return;
        }
        tracing::info!(id = %rec.id, "adopting a container whose start was cut short");
        // Read now, as a start reads it (the last start's would be stale).
        let ids = super::ids::of_started(&rec.spec, r.pid);
        let adopted = self.commit(
            entry,
            Op::Start,
            |x| {
                x.pid = r.pid;
                x.monitor_pid = r.monitor_pid;
                x.started_at = r.started_at_unix_nanos;
                x.started_ids = ids;
                x.start_count += 1;
            },
            Announce::Nothing,
        );
        if let Err(e) = adopted {
            tracing::warn!(id = %rec.id, "adopting: {e}");
        }
        entry.life.send_replace(Life::Pending);
    }

    /// A run whose start a crash kept from being announced (saved, or
    /// adopted from running.json, before STARTED was published) is
    /// announced now, before its exit: every EXITED has its STARTED.
    fn announce_adopted_start(&self, entry: &Entry) {
        let rec = entry.snapshot();
        if !self
            .events
            .announced_since(&rec.id, Action::Started, rec.started_at)
        {
            tracing::info!(id = %rec.id, "announcing a start a crash kept from being announced");
            self.announce(&rec, Action::Started, Detail::default());
        }
    }

    /// Moves an unreadable container directory aside, so the agent starts
    /// and a person can look at it.
    fn quarantine(&self, dir: &Path, id: &str, why: &str) {
        let qdir = self.dir.join(".quarantine");
        let to = qdir.join(format!("{id}-{}", now_nanos()));
        let moved = std::fs::create_dir_all(&qdir).and_then(|()| std::fs::rename(dir, &to));
        match moved {
            Ok(()) => tracing::error!(
                %id,
                "container record is corrupt ({why}); moved to {}",
                to.display()
            ),
            Err(e) => {
                tracing::error!(%id, "container record is corrupt ({why}); cannot move it aside: {e}")
            }
        }
    }

    /// Watches a container that was running when berthd went down, or
    /// records the exit that happened meanwhile.
    fn readopt(self: &Arc<Self>, entry: Arc<Entry>) {
        let rec = entry.snapshot();
        let exit_file = entry.dir.join(monitor::EXIT_FILE);
        let monitor = sys::pidfd_open(Pid::from_raw(rec.monitor_pid))
            .ok()
            .filter(|_| monitor::is_monitor_of(rec.monitor_pid, &entry.dir));
        let Some(monitor) = monitor else {
            // An exit.json older than this run is a previous run's.
            let exit = read_exit(&exit_file)
                .filter(|x| x.finished_at_unix_nanos >= rec.started_at)
                .unwrap_or_else(lost_exit);
            let mgr = self.clone();
            tokio::spawn(async move { mgr.finish_exit(&entry, exit).await });
            return;
        };
        if let Ok(fd) = monitor::Pidfd::open(Pid::from_raw(rec.pid)) {
            entry.set_process(Some(Arc::new(fd)));
        }
        tracing::info!(id = %entry.id, "re-adopted running container");
        if rec.stop_deadline > 0 {
            // A Stop was in progress when berthd went down: kill on time.
            let mgr = self.clone();
            let e = entry.clone();
            tokio::spawn(async move {
                let wait = (rec.stop_deadline - now_nanos()).max(0) as u64;
                tokio::time::sleep(Duration::from_nanos(wait)).await;
                // Only the run that was being stopped: it may have exited
                // and been started again meanwhile.
                let now = e.snapshot();
                if now.state.is_live() && now.started_at == rec.started_at {
                    let _ = mgr.kill(&e, Signal::SIGKILL);
                }
            });
        }
        let mgr = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sys::pidfd_exited(monitor).await {
                tracing::warn!(id = %entry.id, "waiting for the monitor: {e}");
            }
            let exit = read_exit(&exit_file).unwrap_or_else(lost_exit);
            mgr.finish_exit(&entry, exit).await;
        });
    }
}
