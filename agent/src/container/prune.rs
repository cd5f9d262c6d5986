//! Prune: every container that is not running (or about to run again),
//! with its writable layer and logs, as `docker container prune`.

use std::collections::{BTreeMap, HashMap};

use super::error::{ContainerError, Result};
use super::record::Record;
use super::rootfs::Rootfs;
use super::state::State;
use super::{Manager, LOG_FILE};

/// Which containers a prune may remove, beyond their state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Labels each must have; an empty value matches any value.
    pub labels: HashMap<String, String>,
    /// Only containers created before this time (unix nanos).
    pub until: Option<i64>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Full ids of the removed containers.
    pub removed: Vec<String>,
    /// Apparent bytes of their writable layers and logs.
    pub reclaimed_bytes: u64,
}

impl PruneFilter {
    /// Whether a prune takes `rec`: created or exited (running, paused and
    /// restarting ones are kept), matching every filter, and none of a CRI
    /// pod's (kubelet garbage-collects those itself).
    pub fn takes(&self, rec: &Record) -> bool {
        rec.spec.pod.is_none() && self.takes_parts(rec.state, rec.created_at, &rec.spec.labels)
    }

    fn takes_parts(
        &self,
        state: State,
        created_at: i64,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        matches!(state, State::Created | State::Exited)
            && self.until.is_none_or(|t| created_at < t)
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v))
    }
}

impl Manager {
    /// Removes every container `filter` takes. One removed meanwhile, or
    /// started meanwhile, is skipped: a prune races other clients by nature.
    pub async fn prune(&self, filter: &PruneFilter) -> Result<Pruned> {
        let mut out = Pruned::default();
        for entry in self.entries() {
            if !filter.takes(&entry.snapshot()) {
                continue;
            }
            // Measured before the removal moves the directory away; a
            // container that is then not removed is not counted.
            let dir = entry.dir.clone();
            let bytes = tokio::task::spawn_blocking(move || container_bytes(&dir))
                .await
                .map_err(|source| ContainerError::Task {
                    context: "measuring a container",
                    source,
                })?;
            match self.remove(&entry, false).await {
                Ok(()) => {
                    out.removed.push(entry.id.clone());
                    out.reclaimed_bytes = out.reclaimed_bytes.saturating_add(bytes);
                }
                Err(ContainerError::NotFound { .. } | ContainerError::InvalidTransition { .. }) => {
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Apparent bytes of a container's writable layer and logs (the current
/// one and the rotated ones, `container.log*`).
fn container_bytes(dir: &std::path::Path) -> u64 {
    let logs: u64 = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(LOG_FILE))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .fold(0u64, u64::saturating_add);
    crate::fsutil::apparent_bytes(&Rootfs::under(dir).upper).saturating_add(logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rec(State, i64, BTreeMap<String, String>);

    fn rec(state: State, created_at: i64, labels: &[(&str, &str)]) -> Rec {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Rec(state, created_at, labels)
    }

    impl PruneFilter {
        fn takes_rec(&self, r: &Rec) -> bool {
            self.takes_parts(r.0, r.1, &r.2)
        }
    }

    #[test]
    fn only_created_and_exited_containers_are_taken() {
        let f = PruneFilter::default();
        assert!(f.takes_rec(&rec(State::Created, 1, &[])));
        assert!(f.takes_rec(&rec(State::Exited, 1, &[])));
        assert!(!f.takes_rec(&rec(State::Running, 1, &[])));
        assert!(!f.takes_rec(&rec(State::Paused, 1, &[])));
        assert!(!f.takes_rec(&rec(State::Restarting, 1, &[])));
    }

    #[test]
    fn labels_and_until_must_all_match() {
        let f = PruneFilter {
            labels: [
                ("app".to_string(), String::new()),
                ("tier".into(), "db".into()),
            ]
            .into(),
            until: Some(100),
        };
        assert!(f.takes_rec(&rec(State::Exited, 99, &[("app", "x"), ("tier", "db")])));
        assert!(!f.takes_rec(&rec(State::Exited, 100, &[("app", "x"), ("tier", "db")])));
        assert!(!f.takes_rec(&rec(State::Exited, 99, &[("app", "x"), ("tier", "web")])));
        assert!(!f.takes_rec(&rec(State::Exited, 99, &[("tier", "db")])));
    }

    #[test]
    fn a_container_counts_its_layer_and_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = Rootfs::under(dir.path());
        std::fs::create_dir_all(rootfs.upper.join("tmp")).expect("mkdir");
        std::fs::write(rootfs.upper.join("tmp/f"), vec![0u8; 1000]).expect("write");
        std::fs::write(dir.path().join(LOG_FILE), vec![0u8; 30]).expect("write");
        std::fs::write(dir.path().join(format!("{LOG_FILE}.1")), vec![0u8; 7]).expect("write");
        std::fs::write(dir.path().join("container.json"), vec![0u8; 500]).expect("write");
        assert_eq!(container_bytes(dir.path()), 1037);
    }
}
