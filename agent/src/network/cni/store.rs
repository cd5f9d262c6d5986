//! The durable record of each container's CNI attachment: which network,
//! which interface, the published ports handed to the plugins and the ADD
//! result. Written (synced) after a successful ADD and deleted after its
//! DEL, so a berthd killed in between still runs the DEL (with the
//! `prevResult` the plugins need to release addresses and rules) when it
//! starts again, and inspect shows the addresses the plugins gave.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::conflist::RuntimeConfig;
use super::CniError;
use crate::fsutil::{write_atomic, WriteOptions};

/// One container's attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The container's id (`CNI_CONTAINERID`).
    pub container: String,
    /// The network's id.
    pub network: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// What the plugins were handed beyond their config.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The last plugin's ADD result, whole.
    pub result: Value,
}

/// The attachments' directory (`<state>/networks/cni/`), one 0600 JSON
/// file per container.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io(what: String, source: std::io::Error) -> CniError {
    CniError::Store { what, source }
}

/// A container id as a file name: 64 lowercase hex digits, nothing else.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// The store in `dir` (made, 0700, if missing).
    pub fn open(dir: PathBuf) -> Result<Store, CniError> {
        if !dir.exists() {
            crate::state_dir::create_private_dir(&dir)
                .map_err(|e| io(format!("creating {}", dir.display()), e))?;
        }
        Ok(Store { dir })
    }

    fn path(&self, container: &str) -> Result<PathBuf, CniError> {
        if !is_id(container) {
            return Err(CniError::Invalid(format!(
                "{:?} is not a container id",
                crate::error::capped(container)
            )));
        }
        Ok(self.dir.join(format!("{container}.json")))
    }

    /// Saves `a` (replacing an earlier one of its container).
    pub fn save(&self, a: &Attachment) -> Result<(), CniError> {
        let path = self.path(&a.container)?;
        let json = serde_json::to_vec_pretty(a)
            .map_err(|e| io("encoding a CNI attachment".into(), std::io::Error::other(e)))?;
        write_atomic(&path, &json, WriteOptions::synced().with_mode(0o600))
            .map_err(|e| io(format!("writing {}", path.display()), e))
    }

    /// Container `container`'s attachment, if one is stored.
    pub fn load(&self, container: &str) -> Result<Option<Attachment>, CniError> {
        let path = self.path(container)?;
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                io(
                    format!("reading {}", path.display()),
                    std::io::Error::other(e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()), e)),
        }
    }

    /// Forgets `container`'s attachment (none stored is fine).
    pub fn remove(&self, container: &str) -> Result<(), CniError> {
        let path = self.path(container)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored attachment; unreadable files are logged and skipped.
    pub fn all(&self) -> Vec<Attachment> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match self.load(id) {
                Ok(Some(a)) if a.container == id => all.push(a),
                Ok(_) => {}
                Err(e) => tracing::error!("CNI attachment {id}: {e}"),
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_and_only_ids_name_files() {
        let dir = std::env::temp_dir().join(format!("berth-cni-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(dir.clone()).unwrap();
        let id = "ab".repeat(32);
        let a = Attachment {
            container: id.clone(),
            network: "cd".repeat(32),
            ifname: "eth0".into(),
            runtime: RuntimeConfig::default(),
            result: serde_json::json!({"ips": [{"address": "10.0.0.2/24"}]}),
        };
        assert_eq!(s.load(&id).unwrap(), None);
        s.save(&a).unwrap();
        assert_eq!(s.load(&id).unwrap(), Some(a.clone()));
        assert_eq!(s.all(), vec![a]);
        s.remove(&id).unwrap();
        s.remove(&id).unwrap();
        assert!(s.all().is_empty());
        assert!(s.load("../x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
