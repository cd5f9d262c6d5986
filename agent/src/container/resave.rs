//! Records that could not be saved (a full disk) are saved again once the
//! disk takes them. A transition never waits for the disk (see
//! `Manager::commit`): memory follows the container, and this keeps
//! trying to bring the disk up to date, so a berthd restarted after space
//! returned finds what happened meanwhile.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use super::Manager;

/// How often records that could not be saved are tried again.
pub(super) const RESAVE_EVERY: Duration = Duration::from_secs(1);

/// Containers whose record on disk is behind the one in memory.
#[derive(Default)]
pub(super) struct Stale {
    ids: HashSet<String>,
    /// Whether a task is retrying them.
    retrying: bool,
}

impl Manager {
    /// Notes that the record of container `id` could not be saved, and
    /// makes sure something tries again.
    pub(super) fn resave_later(&self, id: &str) {
        let mut stale = self.stale();
        stale.ids.insert(id.to_string());
        if stale.retrying {
            return;
        }
        // Outside a runtime (never in berthd) the next failure tries again.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        stale.retrying = true;
        rt.spawn(resave(self.me.clone()));
    }

    fn stale(&self) -> std::sync::MutexGuard<'_, Stale> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the record of container `id` on disk is behind memory.
    #[cfg(test)]
    pub(super) fn is_stale(&self, id: &str) -> bool {
        self.stale().ids.contains(id)
    }

    /// Saves each stale record again; returns whether none is left.
    fn resave_once(&self) -> bool {
        let ids: Vec<String> = self.stale().ids.iter().cloned().collect();
        for id in ids {
            let Some(entry) = self.table().by_id.get(&id).cloned() else {
                // Removed meanwhile: its record is gone with its directory.
                self.stale().ids.remove(&id);
                continue;
            };
            // Under the transition lock, as a commit saves: a commit that
            // fails to save marks the record stale again only after this.
            let _transition = entry.transition.lock().unwrap_or_else(|e| e.into_inner());
            match entry.persist(&entry.snapshot()) {
                Ok(()) => {
                    tracing::info!(%id, "container record saved again");
                    self.stale().ids.remove(&id);
                }
                Err(e) => tracing::debug!(%id, "still cannot save: {e}"),
            }
        }
        let mut stale = self.stale();
        if stale.ids.is_empty() {
            stale.retrying = false;
            return true;
        }
        false
    }
}

async fn resave(mgr: Weak<Manager>) {
    loop {
        tokio::time::sleep(RESAVE_EVERY).await;
        let Some(mgr) = mgr.upgrade() else {
            return;
        };
        if mgr.resave_once() {
            return;
        }
    }
}
