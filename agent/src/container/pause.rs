//! Pause and Resume: freezing and thawing a running container.

use std::sync::Arc;

use super::entry::{Announce, Detail, Entry};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::Op;
use super::Manager;
use crate::events::domain::Action;

impl Manager {
    /// Freezes a running container.
    pub async fn pause(&self, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Pause)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        self.cgroups
            .freeze(&rec.id)
            .map_err(|source| ContainerError::Cgroup {
                context: "freezing",
                source,
            })?;
        // Exits are recorded without the ops lock: one may have come.
        match self.commit(
            entry,
            Op::Pause,
            |_| {},
            Announce::After(Action::Paused, Detail::default()),
        ) {
            Err(ContainerError::InvalidTransition { .. }) => {
                let now = entry.snapshot();
                Err(ContainerError::EndedWhilePausing {
                    id: now.id,
                    state: now.state,
                })
            }
            other => other,
        }
    }

    /// Thaws a paused container.
    pub async fn resume(&self, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        self.thaw(entry)?;
        Ok(entry.snapshot())
    }

    /// Thaws a paused container; the caller holds its `ops` lock.
    pub(super) fn thaw(&self, entry: &Entry) -> Result<()> {
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Resume)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        self.cgroups
            .thaw(&rec.id)
            .map_err(|source| ContainerError::Cgroup {
                context: "thawing",
                source,
            })?;
        match self.commit(
            entry,
            Op::Resume,
            |_| {},
            Announce::After(Action::Resumed, Detail::default()),
        ) {
            // It exited meanwhile: thawed all the same, nothing to announce.
            Err(ContainerError::InvalidTransition { .. }) => Ok(()),
            other => other.map(drop),
        }
    }
}
