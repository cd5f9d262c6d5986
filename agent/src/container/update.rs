//! Update: a container's limits (live when it runs) and restart policy.

use std::sync::Arc;

use super::entry::{Announce, Detail, Entry};
use super::error::{ContainerError, Result};
use super::record::{LimitsRecord, Record};
use super::state::Op;
use super::{restart, spec, Manager};
use crate::cgroup::Limits;
use crate::events::domain::Action;

impl Manager {
    /// Changes limits (live when it runs) and/or the restart policy. Zero
    /// or empty limit fields keep their value.
    pub async fn update(
        &self,
        entry: &Arc<Entry>,
        limits: Option<LimitsRecord>,
        policy: Option<restart::Policy>,
    ) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        // A Remove that got the ops lock first has taken the container
        // away (its directory is in the trash): nothing left to update.
        if !self.exists(entry) {
            return Err(ContainerError::NotFound {
                key: entry.id.clone(),
            });
        }
        let rec = entry.snapshot();
        let mut merged = rec.spec.limits.clone();
        if let Some(l) = &limits {
            merged.merge_from(l);
        }
        spec::validate_limits(&merged)?;
        self.cgroups
            .check(&Limits::from(&merged))
            .map_err(ContainerError::LimitUnsupported)?;
        if policy.is_some_and(|p| p != restart::Policy::No) && rec.spec.auto_remove {
            return Err(ContainerError::invalid(
                "restart_policy",
                "auto-remove and a restart policy exclude each other",
            ));
        }
        if rec.state.is_live() && limits.is_some() {
            self.cgroups
                .update(&rec.id, &Limits::from(&merged))
                .map_err(ContainerError::LimitRejected)?;
        }
        self.commit(
            entry,
            Op::Update,
            |r| {
                r.spec.limits = merged;
                if let Some(p) = policy {
                    r.spec.restart_policy = p;
                }
            },
            Announce::After(Action::Updated, Detail::default()),
        )
    }
}
