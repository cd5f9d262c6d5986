//! Wait: for a container's run to end, or for its removal.

use std::sync::Arc;

use super::entry::{Entry, Life};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::Manager;
use crate::monitor::ExitRecord;

impl Manager {
    /// Waits for the container to exit (a created one: to start and exit),
    /// or with `removed`, to be removed.
    pub async fn wait(&self, entry: &Arc<Entry>, removed: bool) -> Result<(Record, ExitRecord)> {
        let mut life = entry.life();
        let l = *life
            .wait_for(|l| match l {
                Life::Removed(_) => true,
                Life::Exited(_) => !removed,
                Life::Pending => false,
            })
            .await
            .map_err(|_| ContainerError::Vanished {
                what: "container state lost",
            })?;
        match l {
            Life::Exited(x) | Life::Removed(Some(x)) => Ok((entry.snapshot(), x)),
            _ => Err(ContainerError::RemovedWithoutRun {
                id: entry.id.clone(),
            }),
        }
    }
}
