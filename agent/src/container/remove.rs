//! Remove: a container's record, directory and cgroup (killing it first
//! when forced).

use std::sync::Arc;

use nix::sys::signal::Signal;

use super::entry::{Announce, Detail, Entry, Life};
use super::error::{ContainerError, Result};
use super::rootfs::Rootfs;
use super::state::{Op, Outcome};
use super::stop::KILL_GRACE;
use super::{Manager, TOMBSTONES};
use crate::events::domain::Action;

impl Manager {
    /// Removes a container (killing it first with `force`), and its
    /// anonymous volumes if it was an auto-remove one.
    pub async fn remove(&self, entry: &Arc<Entry>, force: bool) -> Result<()> {
        self.remove_with_volumes(entry, force, false).await
    }

    /// Removes a container (killing it first with `force`); with `volumes`
    /// (`rm -v`) or for an auto-remove container, also its anonymous
    /// volumes no other container uses. Named volumes and bind sources are
    /// never touched.
    pub async fn remove_with_volumes(
        &self,
        entry: &Arc<Entry>,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let _ops = entry.ops.lock().await;
        if !self.exists(entry) {
            return Err(ContainerError::NotFound {
                key: entry.id.clone(),
            });
        }
        let rec = entry.snapshot();
        match rec.state.apply(Op::Remove { force }) {
            Err(e) => return Err(ContainerError::transition(&rec.id, e)),
            Ok(Outcome::KillThenRemove) => {
                let mut life = entry.life();
                self.commit(
                    entry,
                    Op::Remove { force },
                    |r| r.stopped_by_user = true,
                    Announce::Nothing,
                )?;
                self.signal_unless_exited(entry, Signal::SIGKILL)?;
                let detail = Detail {
                    signal: Signal::SIGKILL as i32,
                    ..Detail::default()
                };
                self.announce(&rec, Action::Killed, detail);
                tokio::time::timeout(KILL_GRACE, life.wait_for(|l| !matches!(l, Life::Pending)))
                    .await
                    .map_err(|_| ContainerError::NoExitAfterKill {
                        id: entry.id.clone(),
                    })?
                    .map_err(|_| ContainerError::Vanished {
                        what: "container vanished",
                    })?;
            }
            Ok(_) => {}
        }
        let _teardown = entry.teardown.lock().await;
        let rec = entry.snapshot();
        let dir = entry.dir.clone();
        let id = entry.id.clone();
        let (cg, janitor) = (self.cgroups.clone(), self.janitor.clone());
        let bounded = rec.spec.storage_size_bytes > 0;
        tokio::task::spawn_blocking(move || {
            let _ = Rootfs::under(&dir).unmount();
            if bounded {
                if let Err(e) = super::layer_quota::release(&Rootfs::under(&dir)) {
                    tracing::warn!(%id, "clearing the writable layer's quota: {e}");
                }
            }
            let _ = cg.remove(&id);
            // Gone by name at once; its files are deleted in the background.
            janitor.discard(&dir, &id)
        })
        .await
        .map_err(|source| ContainerError::Task {
            context: "remove task",
            source,
        })?
        .map_err(|e| ContainerError::io("removing the container directory", e))?;
        if !rec.spec.auto_remove {
            self.flusher.queue(&self.dir);
        }
        if let (Some(net), Some(bridge)) = (&rec.net, self.bridge_of(&rec.network)) {
            bridge.release(&entry.id, net).await;
        }
        self.release_connected(&rec).await;
        self.disconnect_cni(&entry.id).await;
        {
            let mut table = self.table();
            table.by_id.remove(&entry.id);
            table.tombstones.push_back(entry.clone());
            if table.tombstones.len() > TOMBSTONES {
                table.tombstones.pop_front();
            }
        }
        entry.life.send_replace(Life::Removed(rec.exit));
        // Its record is gone with its directory: a removal is announced,
        // not saved.
        self.announce(&rec, Action::Removed, Detail::default());
        // Running containers on its network forget its name.
        self.refresh_hosts(&rec.network);
        for a in &rec.connected {
            self.refresh_hosts(&crate::network::Mode::Network(a.network.clone()));
        }
        if volumes || rec.spec.auto_remove {
            self.remove_anonymous_volumes(&rec.mounts);
        }
        if self.images.resolve(&rec.image_id).is_err() {
            // Its image was force-removed earlier; its layers may now be free.
            let in_use = self.layers_in_use();
            if let Err(e) = self.images.gc(&in_use) {
                tracing::warn!("image gc: {e}");
            }
        }
        Ok(())
    }
}
