//! Rename: a container's name, in any state.

use std::sync::Arc;

use super::create::name_free;
use super::entry::{Announce, Entry};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::Op;
use super::{spec, Manager};

impl Manager {
    /// Gives the container `new_name` (checked as a created one's). A name
    /// another container has is refused and changes nothing; the container's
    /// own name is accepted as it is. The new name is saved and announced
    /// (with the old one), and the running containers of its user-defined
    /// network get /etc/hosts written again, so the new name resolves and
    /// the old one no longer does.
    pub async fn rename(&self, entry: &Arc<Entry>, new_name: &str) -> Result<Record> {
        spec::validate_name(new_name)?;
        // Serialised with the other verbs: a Remove that got here first has
        // taken the container away.
        let _ops = entry.ops.lock().await;
        if !self.exists(entry) {
            return Err(ContainerError::NotFound {
                key: entry.id.clone(),
            });
        }
        let old_name = {
            // The name is claimed under the table's lock, as Create claims
            // one, so a Create or another Rename cannot take it meanwhile.
            // Only memory changes here; `commit` below saves and announces
            // (it cannot run under the table's lock: announcing takes the
            // event bus's, under which snapshots take the table's).
            let table = self.table();
            name_free(&table, new_name, Some(&entry.id))?;
            let mut rec = entry.lock_record();
            std::mem::replace(&mut rec.name, new_name.to_string())
        };
        if old_name == new_name {
            return Ok(entry.snapshot());
        }
        let rec = self.commit(
            entry,
            Op::Rename,
            |r| r.name = new_name.to_string(),
            Announce::Renamed(old_name),
        )?;
        self.refresh_hosts(&rec.network);
        Ok(rec)
    }
}
