//! CRI pod sandboxes on disk: `<state>/cri/pods/<id>/pod.json`, written
//! durably before an RPC answers, and the pod's pinned namespaces in
//! `<state>/cri/pods/<id>/ns/` (see `sys::pin`). Loaded again when berthd
//! starts, so pods survive berthd's restarts like its containers.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::fsutil::{write_atomic, WriteOptions};
use crate::state_dir::FILE_MODE;

/// The record file in a pod's directory.
const RECORD_FILE: &str = "pod.json";

/// What berthd keeps of a pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// 64 hex digits.
    pub id: String,
    /// Metadata as kubelet gave it: name, uid, namespace, attempt.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// Its Kubernetes namespace.
    pub namespace: String,
    /// Which attempt at this pod it is.
    pub attempt: u32,
    /// Labels as given.
    pub labels: BTreeMap<String, String>,
    /// Annotations as given.
    pub annotations: BTreeMap<String, String>,
    /// The hostname of its UTS namespace.
    pub hostname: String,
    /// Where kubelet wants its containers' logs (relative log paths of
    /// containers are under it).
    pub log_directory: String,
    /// The runtime handler asked for ("" is berth's one runtime).
    pub runtime_handler: String,
    /// Unix nanos.
    pub created_at: i64,
    /// Ready (running) until StopPodSandbox.
    pub ready: bool,
    /// On the host's network (`namespace_options.network = NODE`).
    pub host_network: bool,
    /// The resolv.conf its containers get, when kubelet gave a DNS config.
    pub resolv_conf: Option<String>,
    /// The CNI network it was attached to (kept, so its DEL runs with the
    /// list its ADD ran, whatever the configuration directory says by then).
    #[serde(default)]
    pub cni: Option<crate::network::cni::Conflist>,
    /// Its addresses from the CNI result, IPv4 first ([] without one).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Its containers share one PID namespace (`namespace_options.pid =
    /// POD`), pinned as `ns/pid` and held by `pid_holder`.
    #[serde(default)]
    pub share_pid: bool,
    /// The host pid of the process holding that namespace (0: none).
    #[serde(default)]
    pub pid_holder: i32,
    /// kubelet's pod sysctls (`linux.sysctls`), checked, set in the pinned
    /// namespaces once the network is attached.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Its containers are in the host's PID namespace (`hostPID`).
    #[serde(default)]
    pub host_pid: bool,
    /// Its containers are in the host's IPC namespace (`hostIPC`).
    #[serde(default)]
    pub host_ipc: bool,
    /// It has a `/dev/shm` of its own (`ns/shm`, see `sys::pin::mount_shm`)
    /// for its containers; false for pods made before berth had one, whose
    /// containers keep theirs.
    #[serde(default)]
    pub shm: bool,
}

impl PodRecord {
    /// The key that two live pods may not share: Kubernetes' name,
    /// namespace, uid and attempt (as containerd reserves it).
    pub fn full_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// The pod sandboxes of this berthd.
pub struct PodStore {
    dir: PathBuf,
    pods: Mutex<HashMap<String, PodRecord>>,
}

impl PodStore {
    /// Opens (creating) `dir` and loads the pods a previous berthd left.
    /// A record that does not parse is skipped with a warning: one bad
    /// file must not keep every other pod from kubelet.
    pub fn open(dir: PathBuf) -> io::Result<PodStore> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::state_dir::DIR_MODE)
            .create(&dir)?;
        let mut pods = HashMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path().join(RECORD_FILE);
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PodRecord>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(rec) if entry.file_name().to_str() == Some(rec.id.as_str()) => {
                    pods.insert(rec.id.clone(), rec);
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "pod record of another id: skipped")
                }
                Err(e) => tracing::warn!(path = %path.display(), "pod record skipped: {e}"),
            }
        }
        Ok(PodStore {
            dir,
            pods: Mutex::new(pods),
        })
    }

    /// The pods, for reading (and for a check-then-insert under one lock).
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, PodRecord>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of pod `id`.
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether pod `id`'s directory has a record file (loadable or not).
    pub fn has_record(&self, id: &str) -> bool {
        std::fs::symlink_metadata(self.pod_dir(id).join(RECORD_FILE)).is_ok()
    }

    /// The directory of pod `id`'s pinned namespaces.
    pub fn ns_dir(&self, id: &str) -> PathBuf {
        self.pod_dir(id).join("ns")
    }

    /// Writes `rec` durably (the caller holds it in the map or is about to
    /// put it there).
    pub fn save(&self, rec: &PodRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        write_atomic(
            &self.pod_dir(&rec.id).join(RECORD_FILE),
            &bytes,
            WriteOptions {
                mode: Some(FILE_MODE),
                sync: true,
            },
        )
    }

    /// Deletes pod `id`'s directory (its pins released before).
    pub fn delete_dir(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.pod_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The state directory holding the pods.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str) -> PodRecord {
        PodRecord {
            id: id.into(),
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
            labels: BTreeMap::from([("app".into(), "web".into())]),
            annotations: BTreeMap::new(),
            hostname: "web".into(),
            log_directory: "/var/log/pods/x".into(),
            runtime_handler: String::new(),
            created_at: 1,
            ready: true,
            host_network: false,
            resolv_conf: None,
            cni: None,
            ips: Vec::new(),
            share_pid: false,
            pid_holder: 0,
            sysctls: BTreeMap::new(),
            host_pid: false,
            host_ipc: false,
            shm: false,
        }
    }

    #[test]
    fn pods_survive_a_reopen_and_bad_records_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pods");
        let store = PodStore::open(dir.clone()).unwrap();
        let id = "a".repeat(64);
        std::fs::create_dir_all(store.pod_dir(&id)).unwrap();
        store.save(&pod(&id)).unwrap();
        // A torn record and a record under another id's directory.
        std::fs::create_dir_all(dir.join("b".repeat(64))).unwrap();
        std::fs::write(dir.join("b".repeat(64)).join(RECORD_FILE), b"{").unwrap();
        std::fs::create_dir_all(dir.join("c".repeat(64))).unwrap();
        std::fs::write(
            dir.join("c".repeat(64)).join(RECORD_FILE),
            serde_json::to_vec(&pod(&id)).unwrap(),
        )
        .unwrap();
        let again = PodStore::open(dir).unwrap();
        let pods = again.lock();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods.get(&id), Some(&pod(&id)));
    }

    #[test]
    fn the_reserved_name_is_kubernetes_full_name() {
        assert_eq!(pod("x").full_name(), "web_default_u1_0");
    }
}
