//! Volumes: directories of the agent's that containers mount, kept under
//! `<state>/volumes/<name>/` (mode 0700) as `_data` (what is mounted) and
//! `volume.json` (the record, 0600), as Docker's local driver lays them
//! out. They outlive containers and berthd restarts; which containers use
//! one is what the container records say (see `Manager::volume_users`),
//! so there is no reference count to drift.

pub mod error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use error::{Result, VolumeError};

use crate::fsutil::{write_atomic, WriteOptions};

/// The one driver.
pub const DRIVER: &str = "local";
/// The directory of a volume that containers mount.
const DATA: &str = "_data";
/// A volume's record.
const RECORD: &str = "volume.json";
/// The longest volume name.
pub const NAME_MAX: usize = 64;

/// A volume's persisted record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    /// Its name.
    pub name: String,
    /// "local".
    pub driver: String,
    /// Labels given at creation.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix nanos.
    pub created_at: i64,
    /// Made for an anonymous mount (`-v /dst`).
    #[serde(default)]
    pub anonymous: bool,
}

/// The volumes of one agent.
pub struct VolumeStore {
    dir: PathBuf,
    /// Serialises creations and removals, so a name is made or unmade once.
    lock: Mutex<()>,
}

/// Checks a volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most
/// [`NAME_MAX`] characters (Docker's rule, bounded).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (2..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName { name: name.into() })
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl VolumeStore {
    /// Opens (creating) the store in `dir`; leftovers of creations and
    /// removals a crash interrupted (`.new-*`, `.gone-*`) are deleted.
    pub fn open(dir: &Path) -> Result<Self> {
        match crate::state_dir::create_private_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(VolumeError::io(dir.display(), e)),
        }
        let entries = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir.display(), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".gone-") {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!("removing {}: {e}", entry.path().display());
                }
            }
        }
        Ok(VolumeStore {
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host directory containers mount for volume `name`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// Creates a volume. `name` empty: a generated one (64 hex digits).
    /// With `reuse`, an existing volume of that name is returned as it is
    /// (a container's mount of a named volume); otherwise it is
    /// [`VolumeError::Exists`]. The bool says whether it was created now.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
        reuse: bool,
    ) -> Result<(VolumeRecord, bool)> {
        let name = if name.is_empty() {
            crate::container::spec::new_id()
        } else {
            validate_name(name)?;
            name.to_string()
        };
        let _guard = self.lock();
        let path = self.dir.join(&name);
        if path.exists() {
            if reuse {
                return Ok((self.read(&name)?, false));
            }
            return Err(VolumeError::Exists { name });
        }
        let rec = VolumeRecord {
            name: name.clone(),
            driver: DRIVER.into(),
            labels,
            created_at: now_nanos(),
            anonymous,
        };
        // Made aside and renamed into place: a crash leaves no half volume.
        let tmp = self
            .dir
            .join(format!(".new-{}", &crate::container::spec::new_id()[..16]));
        let made = (|| -> std::io::Result<()> {
            crate::state_dir::create_private_dir(&tmp)?;
            std::fs::create_dir(tmp.join(DATA))?;
            let json = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
            write_atomic(
                &tmp.join(RECORD),
                &json,
                WriteOptions::synced().with_mode(0o600),
            )?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(VolumeError::io(format!("creating volume {name}"), e));
        }
        Ok((rec, true))
    }

    /// The record of volume `name`.
    pub fn get(&self, name: &str) -> Result<VolumeRecord> {
        validate_name(name).map_err(|_| VolumeError::NotFound { name: name.into() })?;
        self.read(name)
    }

    fn read(&self, name: &str) -> Result<VolumeRecord> {
        let path = self.dir.join(name).join(RECORD);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                VolumeError::io(
                    path.display(),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(VolumeError::NotFound { name: name.into() })
            }
            Err(e) => Err(VolumeError::io(path.display(), e)),
        }
    }

    /// Every volume, sorted by name (unreadable ones are logged and left
    /// out).
    pub fn list(&self) -> Result<Vec<VolumeRecord>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| VolumeError::io(self.dir.display(), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_err() {
                continue;
            }
            match self.read(&name) {
                Ok(rec) => out.push(rec),
                Err(VolumeError::NotFound { .. }) => {}
                Err(e) => tracing::warn!("volume {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes volume `name` and its data; returns the bytes its files
    /// took. The caller has made sure no container uses it.
    pub fn remove(&self, name: &str) -> Result<u64> {
        let gone = self.take(name)?;
        Ok(purge(&gone))
    }

    /// Takes volume `name` out of the store (renamed aside: the name is
    /// free at once, and a crash during a large deletion leaves no half
    /// volume behind); [`purge`] deletes what it returns.
    pub fn take(&self, name: &str) -> Result<PathBuf> {
        self.get(name)?;
        let _guard = self.lock();
        let path = self.dir.join(name);
        let gone = self
            .dir
            .join(format!(".gone-{}", &crate::container::spec::new_id()[..16]));
        std::fs::rename(&path, &gone)
            .map_err(|e| VolumeError::io(format!("removing volume {name}"), e))?;
        Ok(gone)
    }
}

/// Deletes a volume [`VolumeStore::take`] took; returns the bytes its
/// files took.
pub fn purge(gone: &Path) -> u64 {
    let bytes = crate::fsutil::apparent_bytes(&gone.join(DATA));
    if let Err(e) = std::fs::remove_dir_all(gone) {
        tracing::warn!("removing {}: {e}", gone.display());
    }
    bytes
}

/// Whether `labels` has every filter of `filters` ("key" or "key=value").
pub fn labels_match(labels: &BTreeMap<String, String>, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(f.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["ab", "data", "my_vol.1-x", &"a".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "-ab",
            ".ab",
            "a/b",
            "..",
            "a b",
            &"a".repeat(65),
            "é1",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_remove_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("volumes");
        let store = VolumeStore::open(&dir).unwrap();
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let (rec, created) = store.create("data", labels, false, false).unwrap();
        assert!(created);
        assert!(matches!(
            store.create("data", BTreeMap::new(), false, false),
            Err(VolumeError::Exists { .. })
        ));
        let (again, created) = store.create("data", BTreeMap::new(), false, true).unwrap();
        assert!(!created);
        assert_eq!(again, rec);
        std::fs::write(store.data_dir("data").join("f"), b"12345").unwrap();
        let (anon, _) = store.create("", BTreeMap::new(), true, false).unwrap();
        assert_eq!(anon.name.len(), 64);
        let store = VolumeStore::open(&dir).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        let mut want = vec!["data".to_string(), anon.name.clone()];
        want.sort();
        assert_eq!(names, want);
        assert_eq!(store.remove("data").unwrap(), 5);
        assert!(matches!(
            store.get("data"),
            Err(VolumeError::NotFound { .. })
        ));
        assert!(matches!(
            store.get("../x"),
            Err(VolumeError::NotFound { .. })
        ));
    }

    #[test]
    fn label_filters() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert!(labels_match(&labels, &[]));
        assert!(labels_match(&labels, &["a".into()]));
        assert!(labels_match(&labels, &["a=1".into()]));
        assert!(!labels_match(&labels, &["a=2".into()]));
        assert!(!labels_match(&labels, &["b".into()]));
    }
}
