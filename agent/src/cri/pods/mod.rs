//! CRI pod sandboxes: records (`store`), the mapping of kubelet's configs
//! (`sandbox`), and the operations that make, stop and remove them here.

pub mod network;
pub mod sandbox;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use tonic::Status;

use crate::container::{Entry, Manager};
use crate::cri::api_file::v1 as cri;
use crate::cri::unsupported::not_supported;
use crate::events::domain::{Action, Event, EventSink, Object};
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
    pub fn open(
        dir: PathBuf,
        mgr: Arc<Manager>,
        cni_conf_dir: PathBuf,
        events: Arc<dyn EventSink>,
    ) -> std::io::Result<Pods> {
        let cni_dir = dir
            .parent()
            .map_or_else(|| dir.join("cni"), |p| p.join("cni"));
        let store = PodStore::open(dir)?;
        let cni = crate::network::cni::Cni {
            dirs: mgr.networks().cni().dirs.clone(),
            store: crate::network::cni::Store::open(cni_dir).map_err(std::io::Error::other)?,
        };
        for entry in std::fs::read_dir(store.dir())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Pinned but never recorded: RunPodSandbox did not answer. A
            // record that exists but did not load is kept (and logged by
            // the store): its containers and network are still there.
            if !store.lock().contains_key(&name) && !store.has_record(&name) {
                let ns = store.ns_dir(&name);
                let cleaned = pin::kill_pid_namespace(&ns)
                    .and_then(|()| pin::unpin(&ns))
                    .and_then(|()| store.delete_dir(&name));
                if let Err(e) = cleaned {
                    tracing::warn!(pod = %name, "removing a half-made pod: {e}");
                }
            }
        }
        let lost: Vec<PodRecord> = store
            .lock()
            .values_mut()
            .filter(|p| {
                let ns = store.ns_dir(&p.id);
                p.ready
                    && (!pin::is_pinned(&ns.join("uts"))
                        || p.share_pid && !pin::holder_alive(&ns, p.pid_holder))
            })
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
        Ok(Pods {
            store,
            mgr,
            cni_conf_dir,
            cni,
            events,
            locks: Default::default(),
            creating: Default::default(),
        })
    }

    /// Announces `action` of pod `p` on berth's event log.
    fn announce(&self, p: &PodRecord, action: Action) {
        let mut ev = Event::new(Object::Pod, action, p.id.clone());
        ev.name = p.full_name();
        ev.labels = p.labels.clone();
        self.events.publish(ev);
    }

    /// Like [`Pods::get`], but a pod that is gone is `None`: stopping or
    /// removing it again succeeds (kubelet retries, as critest checks).
    fn find(&self, id: &str) -> Result<Option<PodRecord>, Status> {
        match self.get(id) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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

    /// The pod network's configuration now, or why there is none.
    pub fn network_config(&self) -> Result<(PathBuf, crate::network::cni::Conflist), String> {
        network::load(&self.cni_conf_dir)
    }

    /// Makes the pod: its namespaces pinned, attached to the CNI network
    /// (unless it is on the host's, or there is no CNI configuration: then
    /// it has loopback only), its record durable. Its name (metadata) is
    /// reserved first, so two runs of one pod cannot both succeed. The
    /// caller runs it in a task of its own: a client that gives up must
    /// not leave it half done (see `runtime.rs`).
    pub async fn run(
        &self,
        mut rec: PodRecord,
        ports: Vec<cri::PortMapping>,
    ) -> Result<String, Status> {
        // What the network needs is checked before anything is made.
        let network = match (rec.host_network, self.network_config()) {
            (true, _) => None,
            (false, Ok((_, list))) => {
                let runtime = network::port_mappings(&list, &ports)?;
                Some((list, runtime))
            }
            (false, Err(why)) if ports.iter().any(|p| p.host_port > 0) => {
                return Err(not_supported(&format!(
                    "port mappings (hostPort) without a pod network ({why})"
                )))
            }
            (false, Err(_)) => None,
        };
        rec.cni = network.as_ref().map(|(list, _)| list.clone());
        let name = rec.full_name();
        {
            // The name is reserved, the pod not yet listed: nothing sees a
            // pod that is half made.
            let pods = self.store.lock();
            let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = pods.values().find(|p| p.full_name() == name) {
                return Err(Status::already_exists(format!(
                    "pod {:?} exists already as sandbox {}",
                    crate::error::capped(&name),
                    other.id
                )));
            }
            if !creating.insert(name.clone()) {
                return Err(Status::already_exists(format!(
                    "pod {:?} is being made already",
                    crate::error::capped(&name)
                )));
            }
        }
        let ns = self.store.ns_dir(&rec.id);
        let made = self.make(&mut rec, &ns, network).await;
        if let Err(e) = made {
            if let Some(list) = &rec.cni {
                if let Err(e) = network::detach(&self.cni, list, &rec.id, &ns.join("net")).await {
                    tracing::warn!(pod = %rec.id, "undoing a pod's network: {e}");
                }
            }
            let _ = pin::kill_holder(&ns, rec.pid_holder);
            let _ = pin::kill_pid_namespace(&ns);
            // Never remove_dir_all into what is still mounted (the pins,
            // the pod's /dev/shm): a leftover is cleaned at the next start.
            if pin::unpin(&ns).is_ok() {
                let _ = self.store.delete_dir(&rec.id);
            }
            self.creating
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            return Err(e);
        }
        self.store.lock().insert(rec.id.clone(), rec.clone());
        self.creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        self.announce(&rec, Action::Created);
        tracing::info!(pod = %rec.id, name = %rec.full_name(), ips = ?rec.ips, "pod sandbox ready");
        Ok(rec.id)
    }

    /// The steps of [`Pods::run`] that may fail once the name is reserved.
    /// The record is saved not ready before the ADD, so a crash in between
    /// leaves a pod kubelet sees and removes (its DEL run then).
    async fn make(
        &self,
        rec: &mut PodRecord,
        ns: &std::path::Path,
        network: Option<(
            crate::network::cni::Conflist,
            crate::network::cni::RuntimeConfig,
        )>,
    ) -> Result<(), Status> {
        let pin_dir = ns.to_path_buf();
        let hostname = rec.hostname.clone();
        let share_pid = rec.share_pid;
        // With the host's IPC namespace, its containers bind the host's
        // /dev/shm instead.
        let shm = !rec.host_ipc;
        rec.shm = shm;
        rec.pid_holder = tokio::task::spawn_blocking(move || {
            if let Some(pod_dir) = pin_dir.parent() {
                crate::state_dir::create_private_dir(pod_dir)?;
            }
            crate::state_dir::create_private_dir(&pin_dir)?;
            pin::pin_new(&pin_dir, &hostname)?;
            if shm {
                pin::mount_shm(&pin_dir)?;
            }
            if share_pid {
                start_pid_holder(&pin_dir)
            } else {
                Ok(0)
            }
        })
        .await
        .map_err(|e| internal("pinning the pod's namespaces", e))?
        .map_err(|e| internal("pinning the pod's namespaces", e))?;
        if let Some((list, runtime)) = network {
            rec.ready = false;
            self.store
                .save(rec)
                .map_err(|e| internal("saving the pod", e))?;
            rec.ips = network::attach(&self.cni, &list, &rec.id, &ns.join("net"), runtime).await?;
            rec.ready = true;
        }
        // After the network, as containerd (its pause container's start)
        // does: a sysctl may name an interface the CNI plugins made.
        if !rec.sysctls.is_empty() {
            let dir = ns.to_path_buf();
            let sysctls: Vec<(String, String)> = rec
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            tokio::task::spawn_blocking(move || pin::write_sysctls(&dir, &sysctls))
                .await
                .map_err(|e| internal("setting the pod's sysctls", e))?
                .map_err(|e| {
                    let why = format!("setting the pod's sysctls: {e}");
                    if e.kind() == std::io::ErrorKind::InvalidInput {
                        Status::invalid_argument(why)
                    } else {
                        Status::internal(why)
                    }
                })?;
        }
        self.store
            .save(rec)
            .map_err(|e| internal("saving the pod", e))
    }

    /// Stops every container of the pod (killed: kubelet has given them
    /// their grace already) and marks it not ready. The namespaces stay
    /// until the pod is removed; its `/dev/shm` (the memory its containers
    /// left there) goes now.
    pub async fn stop(&self, id: &str) -> Result<(), Status> {
        let Some(pod) = self.find(id)? else {
            return Ok(());
        };
        let _lock = self.lock_pod(&pod.id).await;
        let pod = self.get(&pod.id)?;
        if pod.ready {
            // Not ready first: a crash from here on restarts it not ready,
            // and no container is created or started in it meanwhile. The
            // event follows, so a subscriber reading the pod's status for
            // it (GetContainerEvents' STOPPED) sees it not ready.
            self.update(&pod.id, |p| p.ready = false)?;
            self.announce(&pod, Action::Stopping);
        }
        for entry in self.containers_of(&pod.id) {
            if entry.snapshot().state.is_live() {
                match self.mgr.stop(entry.clone(), Some(0)).await {
                    // Ended or removed meanwhile: stopped all the same.
                    Ok(_)
                    | Err(
                        crate::container::ContainerError::InvalidTransition { .. }
                        | crate::container::ContainerError::NotFound { .. },
                    ) => {}
                    Err(e) => return Err(crate::error::Error::from(e).into()),
                }
            }
        }
        if pod.shm {
            pin::release_shm(&self.store.ns_dir(&pod.id))
                .map_err(|e| internal("unmounting the pod's /dev/shm", e))?;
        }
        // The pod's PID namespace ends with its holder, as a pause
        // container's does at the stop.
        if pod.share_pid {
            pin::kill_holder(&self.store.ns_dir(&pod.id), pod.pid_holder)
                .map_err(|e| internal("stopping the pod's PID holder", e))?;
        }
        // The network goes at the stop, as containerd's: the addresses are
        // free for other pods while kubelet keeps this one around. Once
        // DELed, the record says so, and the removal runs no second DEL.
        if let Some(list) = &pod.cni {
            network::detach(
                &self.cni,
                list,
                &pod.id,
                &self.store.ns_dir(&pod.id).join("net"),
            )
            .await?;
            self.update(&pod.id, |p| {
                p.cni = None;
                p.ips.clear();
            })?;
        }
        Ok(())
    }

    /// Changes pod `id`'s record with `f` and saves it durably.
    fn update(&self, id: &str, f: impl FnOnce(&mut PodRecord)) -> Result<(), Status> {
        let mut pods = self.store.lock();
        if let Some(p) = pods.get_mut(id) {
            f(p);
            self.store
                .save(p)
                .map_err(|e| internal("saving the pod", e))?;
        }
        Ok(())
    }

    /// Serialises the calls that change pod `id` or its containers (stop,
    /// remove, create, start): a container is never created or started in
    /// a pod that is being stopped or removed.
    pub async fn lock_pod(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Locks of removed pods go once nobody holds them.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Removes the pod and every container of it; a pod already gone is
    /// not an error (kubelet retries removals).
    pub async fn remove(&self, id: &str) -> Result<(), Status> {
        let Some(pod) = self.find(id)? else {
            return Ok(());
        };
        let _lock = self.lock_pod(&pod.id).await;
        let Some(pod) = self.find(&pod.id)? else {
            return Ok(());
        };
        for entry in self.containers_of(&pod.id) {
            super::containers::remove_entry(&self.mgr, &entry).await?;
        }
        if let Some(list) = &pod.cni {
            network::detach(
                &self.cni,
                list,
                &pod.id,
                &self.store.ns_dir(&pod.id).join("net"),
            )
            .await?;
        }
        let ns = self.store.ns_dir(&pod.id);
        let holder = pod.pid_holder;
        tokio::task::spawn_blocking(move || {
            pin::kill_holder(&ns, holder)?;
            pin::unpin(&ns)
        })
        .await
        .map_err(|e| internal("releasing the pod's namespaces", e))?
        .map_err(|e| internal("releasing the pod's namespaces", e))?;
        self.store
            .delete_dir(&pod.id)
            .map_err(|e| internal("removing the pod's directory", e))?;
        self.store.lock().remove(&pod.id);
        self.announce(&pod, Action::Removed);
        tracing::info!(pod = %pod.id, "pod sandbox removed");
        Ok(())
    }
}

/// Starts the holder of a pod's PID namespace (`berthd __pod-pause`, the
/// running binary, so no image or other program is needed) and pins its
/// namespace in `ns`; the holder's host pid.
fn start_pid_holder(ns: &std::path::Path) -> std::io::Result<i32> {
    let pod_dir = ns.parent().unwrap_or(ns);
    // The running binary, also once a newer one replaced its file.
    let out = std::process::Command::new("/proc/self/exe")
        .arg(pin::POD_PAUSE_ARG)
        .arg(pod_dir)
        .current_dir(pod_dir)
        .stdin(std::process::Stdio::null())
        .output()?;
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            std::io::Error::other(format!(
                "the PID holder did not start: {}",
                crate::error::capped(String::from_utf8_lossy(&out.stderr).trim())
            ))
        })?;
    if let Err(e) = pin::pin_pid(ns, pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        return Err(e);
    }
    Ok(pid)
}
