//! Containers: creation, lifecycle and bookkeeping.
//!
//! The [`Manager`] owns every container of the agent. Each verb has a file
//! of its own: `create`, `start`, `stop` (stop, kill, signals), `pause`
//! (pause, resume), `update`, `remove`, `wait`, `exec` (a process in a
//! running container), `exit` (exit handling),
//! [`restart`] (the policy), `recover` (what a restart of berthd finds).
//! They all change a container's state through one transition function,
//! `Manager::commit` (in `entry.rs`), which checks the table in [`state`],
//! persists the record and announces the event, in that order (exits:
//! announced to the durable log, then persisted; see `exit.rs`). A record
//! the disk does not take (full) holds nothing up: it is saved again later
//! (`resave`), so a full disk never keeps a container from being stopped.
//! Lifecycle operations on one container are serialised by its `ops` lock;
//! exits are recorded without it, which the transition function's check
//! under the record's lock makes safe.

pub mod bounds;
mod cni;
mod connect;
mod connect_first;
mod copy;
mod create;
#[cfg(test)]
mod diskfull_tests;
mod entry;
pub mod error;
mod exec;
mod exec_durable;
mod exit;
mod hosts;
pub mod ids;
pub(crate) mod layer_quota;
mod mounts;
mod network;
mod pause;
#[cfg(test)]
mod privileged_tests;
mod propagation;
mod prune;
pub mod record;
mod recover;
mod remove;
mod rename;
mod resave;
pub mod restart;
pub mod rootfs;
pub mod secopts;
pub mod spec;
mod start;
pub mod state;
mod stop;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
mod update;
pub mod userns;
mod wait;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

pub use connect::ConnectRequest;
pub use copy::Access as CopyAccess;
pub use entry::{Entry, Life};
pub use error::{ContainerError, Result};
pub use exec::{Exec, ExecOptions};
pub use mounts::{MountKind, MountSpec, ResolvedMount, MOUNTS_MAX, TMPFS_SIZE_MAX};
pub use prune::{PruneFilter, Pruned};
pub use start::Attach as StartAttach;

use crate::cgroup::Cgroups;
use crate::events::domain::EventSink;
use crate::fsutil::Flusher;
use crate::image::ImageStore;
use crate::janitor::Janitor;
use crate::monitor::{ExitRecord, Launcher};
use crate::netns_pool::NetnsPool;
use crate::network::bridge::Bridge;
use crate::network::user::Networks;
use crate::seccomp::Seccomp;
use record::Record;

/// File name of a container's log.
pub const LOG_FILE: &str = "container.log";
/// How many removed containers stay waitable by id.
const TOMBSTONES: usize = 256;

struct Table {
    by_id: HashMap<String, Arc<Entry>>,
    tombstones: VecDeque<Arc<Entry>>,
}

/// Owns all containers of this agent.
pub struct Manager {
    dir: PathBuf,
    images: Arc<ImageStore>,
    cgroups: Arc<dyn Cgroups>,
    events: Arc<dyn EventSink>,
    launcher: Arc<dyn Launcher>,
    netns: NetnsPool,
    networks: Arc<Networks>,
    flusher: Arc<Flusher>,
    janitor: Arc<Janitor>,
    seccomp: Arc<Seccomp>,
    allow_privileged: bool,
    /// The writable-layer limit of a container created without one (0:
    /// none).
    default_storage_size: u64,
    volumes: Arc<crate::volume::VolumeStore>,
    default_network: crate::network::DefaultNetwork,
    /// The id ranges of `--userns auto` containers.
    id_ranges: userns::IdRanges,
    /// Whether this kernel runs them (read once, at start).
    userns_support: Result<(), String>,
    log_max_bytes: u64,
    table: Mutex<Table>,
    /// Records that could not be saved, to save again (see `resave.rs`).
    stale: Mutex<resave::Stale>,
    /// This manager, for the tasks it starts from `&self`.
    me: Weak<Manager>,
}

/// What a [`Manager`] works with.
pub struct Deps {
    /// The image store.
    pub images: Arc<ImageStore>,
    /// Cgroup operations (berthd: the host's `CgroupHost`).
    pub cgroups: Arc<dyn Cgroups>,
    /// Where events go (berthd: the `EventBus`).
    pub events: Arc<dyn EventSink>,
    /// How container processes are started (berthd: `Monitors`).
    pub launcher: Arc<dyn Launcher>,
    /// Network namespaces made ahead of time.
    pub netns: NetnsPool,
    /// The default bridge and the user-defined networks (bridges made on
    /// the host at their first use).
    pub networks: Arc<Networks>,
    /// Background durability of state files.
    pub flusher: Arc<Flusher>,
    /// Deletes removed containers' directories in the background.
    pub janitor: Arc<Janitor>,
    /// Compiled seccomp profiles.
    pub seccomp: Arc<Seccomp>,
    /// Privileged containers are accepted (berthd's `--allow-privileged`).
    pub allow_privileged: bool,
    /// The volumes containers mount.
    pub volumes: Arc<crate::volume::VolumeStore>,
    /// The network of a spec that names none (berthd's `--default-network`).
    pub default_network: crate::network::DefaultNetwork,
    /// The writable-layer limit in bytes of a container created without
    /// one (berthd's `--default-storage-size`, checked at its start), 0 for
    /// none.
    pub default_storage_size: u64,
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The exit of a run whose monitor is gone without a trace of how it ended.
fn lost_exit() -> ExitRecord {
    ExitRecord {
        exit_code: 255,
        signal: 0,
        oom_killed: false,
        finished_at_unix_nanos: now_nanos(),
    }
}

impl Manager {
    /// Opens the container store in `dir`, loading what a previous run left
    /// (see `recover.rs`).
    pub fn open(dir: PathBuf, deps: Deps, log_max_bytes: u64) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(dir.display(), e))?;
        let Deps {
            images,
            cgroups,
            events,
            launcher,
            netns,
            networks,
            flusher,
            janitor,
            seccomp,
            allow_privileged,
            volumes,
            default_network,
            default_storage_size,
        } = deps;
        let mgr = Arc::new_cyclic(|me| Manager {
            dir,
            images,
            cgroups,
            events,
            launcher,
            netns,
            networks,
            flusher,
            janitor,
            seccomp,
            allow_privileged,
            default_storage_size,
            volumes,
            default_network,
            id_ranges: userns::IdRanges::from_host(),
            userns_support: userns::host_kernel_support(),
            log_max_bytes,
            table: Mutex::new(Table {
                by_id: HashMap::new(),
                tombstones: VecDeque::new(),
            }),
            stale: Mutex::new(resave::Stale::default()),
            me: me.clone(),
        });
        mgr.load()?;
        Ok(mgr)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cgroup setup in use.
    pub fn cgroups(&self) -> &dyn Cgroups {
        &*self.cgroups
    }

    /// Finds a container by full id, exact name, or unique id prefix.
    pub fn get(&self, key: &str) -> Result<Arc<Entry>> {
        if key.is_empty() {
            return Err(ContainerError::NoKey);
        }
        let table = self.table();
        if let Some(e) = table.by_id.get(key) {
            return Ok(e.clone());
        }
        if let Some(e) = table.by_id.values().find(|e| e.lock_record().name == key) {
            return Ok(e.clone());
        }
        let matches: Vec<&Arc<Entry>> = table
            .by_id
            .iter()
            .filter(|(id, _)| id.starts_with(key))
            .map(|(_, e)| e)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ContainerError::NotFound {
                key: key.to_string(),
            }),
            _ => Err(ContainerError::Ambiguous {
                key: key.to_string(),
                count: matches.len(),
            }),
        }
    }

    /// Like [`Manager::get`], but also finds recently removed containers by full id.
    pub fn get_or_removed(&self, key: &str) -> Result<Arc<Entry>> {
        match self.get(key) {
            Err(ContainerError::NotFound { key }) => self
                .table()
                .tombstones
                .iter()
                .find(|e| e.id == key)
                .cloned()
                .ok_or(ContainerError::NotFound { key }),
            other => other,
        }
    }

    /// Whether `entry` is still in the table (not removed).
    fn exists(&self, entry: &Entry) -> bool {
        self.table().by_id.contains_key(&entry.id)
    }

    /// All containers.
    pub fn list(&self) -> Vec<Record> {
        let entries: Vec<Arc<Entry>> = self.table().by_id.values().cloned().collect();
        let mut recs: Vec<Record> = entries.iter().map(|e| e.snapshot()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        recs
    }

    /// Every container's entry, newest first (without copying records).
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut es: Vec<Arc<Entry>> = self.table().by_id.values().cloned().collect();
        es.sort_by_cached_key(|e| std::cmp::Reverse(e.lock_record().created_at));
        es
    }

    /// Image layers (diff ids) used by containers.
    pub fn layers_in_use(&self) -> HashSet<String> {
        self.list().into_iter().flat_map(|r| r.layers).collect()
    }
}

fn read_exit(path: &Path) -> Option<ExitRecord> {
    read_json(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

impl Manager {
    /// The bridge a container of network `mode` is on: the default one,
    /// a user-defined network's, or none.
    pub(crate) fn bridge_of(&self, mode: &crate::network::Mode) -> Option<Arc<Bridge>> {
        match mode {
            crate::network::Mode::Bridge => Some(self.networks.default_bridge().clone()),
            crate::network::Mode::Network(id) => self.networks.bridge(id),
            _ => None,
        }
    }

    /// The default bridge and the user-defined networks.
    pub fn networks(&self) -> &Arc<Networks> {
        &self.networks
    }
}
