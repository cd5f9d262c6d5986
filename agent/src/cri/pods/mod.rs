//! CRI pod sandboxes: records (`store`), the mapping of kubelet's configs
//! (`sandbox`), and the operations that make, stop and remove them here.

pub mod sandbox;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use tonic::Status;

use crate::container::{Entry, Manager};
use crate::sys::pin;
pub use sandbox::Pods;
use store::{PodRecord, PodStore};

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

impl Pods {
    /// The pods under `dir` (`<state>/cri/pods`), with what a crash left
    /// half made cleaned up, and pods whose namespaces are gone (the host
    /// restarted) marked not ready.
    pub fn open(dir: PathBuf, mgr: Arc<Manager>) -> std::io::Result<Pods> {
        let store = PodStore::open(dir)?;
        for entry in std::fs::read_dir(store.dir())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !store.lock().contains_key(&name) {
                // Pinned but never recorded: RunPodSandbox did not answer.
                let ns = store.ns_dir(&name);
                if let Err(e) = pin::unpin(&ns).and_then(|()| store.delete_dir(&name)) {
                    tracing::warn!(pod = %name, "removing a half-made pod: {e}");
                }
            }
        }
        let lost: Vec<PodRecord> = store
            .lock()
            .values_mut()
            .filter(|p| p.ready && !pin::is_pinned(&store.ns_dir(&p.id).join("uts")))
            .map(|p| {
                p.ready = false;
                p.clone()
            })
            .collect();
        for p in lost {
            tracing::warn!(pod = %p.id, "the pod's namespaces are gone: not ready");
            if let Err(e) = store.save(&p) {
                tracing::warn!(pod = %p.id, "saving the pod: {e}");
            }
        }
        Ok(Pods { store, mgr })
    }

    /// The pod `id` (its full id, or a unique prefix as crictl passes).
    pub fn get(&self, id: &str) -> Result<PodRecord, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("pod_sandbox_id is required"));
        }
        let pods = self.store.lock();
        if let Some(p) = pods.get(id) {
            return Ok(p.clone());
        }
        let mut found = pods.values().filter(|p| p.id.starts_with(id));
        match (found.next(), found.next()) {
            (Some(p), None) => Ok(p.clone()),
            (Some(_), Some(_)) => Err(Status::invalid_argument(format!(
                "pod id prefix {:?} is ambiguous",
                crate::error::capped(id)
            ))),
            (None, _) => Err(Status::not_found(format!(
                "no such pod sandbox: {}",
                crate::error::capped(id)
            ))),
        }
    }

    /// Every pod.
    pub fn list(&self) -> Vec<PodRecord> {
        let mut pods: Vec<PodRecord> = self.store.lock().values().cloned().collect();
        pods.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        pods
    }

    /// The containers of pod `id`.
    pub fn containers_of(&self, id: &str) -> Vec<Arc<Entry>> {
        self.mgr
            .entries()
            .into_iter()
            .filter(|e| {
                e.lock_record()
                    .spec
                    .pod
                    .as_ref()
                    .is_some_and(|p| p.id == id)
            })
            .collect()
    }

    /// The directory of pod `id`'s pinned namespaces.
    pub fn ns_dir(&self, id: &str) -> PathBuf {
        self.store.ns_dir(id)
    }

    /// Makes the pod: its namespaces pinned, its record durable. Its name
    /// (metadata) is reserved first, so two runs of one pod cannot both
    /// succeed.
    pub async fn run(&self, rec: PodRecord) -> Result<String, Status> {
        {
            let mut pods = self.store.lock();
            if let Some(other) = pods.values().find(|p| p.full_name() == rec.full_name()) {
                return Err(Status::already_exists(format!(
                    "pod {:?} exists already as sandbox {}",
                    crate::error::capped(&rec.full_name()),
                    other.id
                )));
            }
            pods.insert(rec.id.clone(), rec.clone());
        }
        let ns = self.store.ns_dir(&rec.id);
        let made = {
            let ns = ns.clone();
            let hostname = rec.hostname.clone();
            let store_rec = rec.clone();
            let store = &self.store;
            let pinned = tokio::task::spawn_blocking(move || {
                if let Some(pod_dir) = ns.parent() {
                    crate::state_dir::create_private_dir(pod_dir)?;
                }
                crate::state_dir::create_private_dir(&ns)?;
                pin::pin_new(&ns, &hostname)
            })
            .await
            .map_err(|e| internal("pinning the pod's namespaces", e))
            .and_then(|r| r.map_err(|e| internal("pinning the pod's namespaces", e)));
            pinned.and_then(|()| {
                store
                    .save(&store_rec)
                    .map_err(|e| internal("saving the pod", e))
            })
        };
        if let Err(e) = made {
            let _ = pin::unpin(&ns);
            let _ = self.store.delete_dir(&rec.id);
            self.store.lock().remove(&rec.id);
            return Err(e);
        }
        tracing::info!(pod = %rec.id, name = %rec.full_name(), "pod sandbox ready");
        Ok(rec.id)
    }

    /// Stops every container of the pod (killed: kubelet has given them
    /// their grace already) and marks it not ready. The namespaces stay
    /// until the pod is removed.
    pub async fn stop(&self, id: &str) -> Result<(), Status> {
        let pod = self.get(id)?;
        for entry in self.containers_of(&pod.id) {
            if entry.snapshot().state.is_live() {
                if let Err(e) = self.mgr.stop(entry.clone(), Some(0)).await {
                    return Err(crate::error::Error::from(e).into());
                }
            }
        }
        let mut pods = self.store.lock();
        if let Some(p) = pods.get_mut(&pod.id) {
            if p.ready {
                p.ready = false;
                self.store
                    .save(p)
                    .map_err(|e| internal("saving the pod", e))?;
            }
        }
        Ok(())
    }

    /// Removes the pod and every container of it; a pod already gone is
    /// not an error (kubelet retries removals).
    pub async fn remove(&self, id: &str) -> Result<(), Status> {
        let pod = match self.get(id) {
            Ok(p) => p,
            Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in self.containers_of(&pod.id) {
            super::containers::remove_entry(&self.mgr, &entry).await?;
        }
        let ns = self.store.ns_dir(&pod.id);
        tokio::task::spawn_blocking(move || pin::unpin(&ns))
            .await
            .map_err(|e| internal("releasing the pod's namespaces", e))?
            .map_err(|e| internal("releasing the pod's namespaces", e))?;
        self.store
            .delete_dir(&pod.id)
            .map_err(|e| internal("removing the pod's directory", e))?;
        self.store.lock().remove(&pod.id);
        tracing::info!(pod = %pod.id, "pod sandbox removed");
        Ok(())
    }
}
