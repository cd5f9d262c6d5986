//! Containers: creation, lifecycle and bookkeeping.
//!
//! The [`Manager`] owns every container of the agent. Lifecycle operations on
//! one container are serialised by its `ops` lock; the transition rules live
//! in [`state`]; each change is persisted (atomically) before it is announced
//! as an event.

pub mod error;
pub mod record;
pub mod restart;
pub mod rootfs;
pub mod spec;
pub mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::cgroup::{CgroupHost, Limits};
pub use error::{ContainerError, Result};

use crate::error::capped;
use crate::events::domain::{Action, Event, EventSink, Object};
use crate::fsutil::{Durability, Flusher};
use crate::image::ImageStore;
use crate::janitor::Janitor;
use crate::monitor::{self, ExitRecord, LaunchSpec, Monitors, SpawnError};
use crate::netns_pool::NetnsPool;
use crate::sys;
use record::{Record, SpecRecord};
use rootfs::Rootfs;
use state::{Op, Outcome, State};

/// File name of a container's record.
const RECORD_FILE: &str = "container.json";
/// File name of a container's log.
pub const LOG_FILE: &str = "container.log";
/// How many removed containers stay waitable by id.
const TOMBSTONES: usize = 256;

/// Where a container's current run stands, as Wait sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Not started, or running.
    Pending,
    /// Its process ended.
    Exited(ExitRecord),
    /// Removed; with the last exit if it ever ran.
    Removed(Option<ExitRecord>),
}

/// One container in memory.
pub struct Entry {
    /// Full id.
    pub id: String,
    /// Its directory under the state dir.
    pub dir: PathBuf,
    record: Mutex<Record>,
    life: watch::Sender<Life>,
    ops: tokio::sync::Mutex<()>,
    /// Held while the cgroup of a run that ended is released. The exit is
    /// announced first (Wait returns at once); whatever reuses the cgroup or
    /// the directory (the next start, removal) waits for this.
    teardown: tokio::sync::Mutex<()>,
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
    flusher: Arc<Flusher>,
    /// Generation of the pending policy restart: a client's Start or Stop
    /// moves it on, and a restart timer of an older one does nothing.
    restart_gen: AtomicU64,
}

impl Entry {
    fn new(id: String, dir: PathBuf, rec: Record, life: Life, flusher: Arc<Flusher>) -> Self {
        Entry {
            id,
            dir,
            record: Mutex::new(rec),
            life: watch::Sender::new(life),
            ops: tokio::sync::Mutex::new(()),
            teardown: tokio::sync::Mutex::new(()),
            pidfd: Mutex::new(None),
            flusher,
            restart_gen: AtomicU64::new(0),
        }
    }

    /// Calls off a pending policy restart (see [`Manager::schedule_restart`]).
    fn call_off_restart(&self) -> u64 {
        self.restart_gen.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A copy of the current record.
    pub fn snapshot(&self) -> Record {
        self.lock_record().clone()
    }

    fn lock_record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the container's runs and exits.
    pub fn life(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }

    fn persist(&self, rec: &Record) -> Result<()> {
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| ContainerError::io("encoding record", e.into()))?;
        // A container removed at exit needs no record that survives a power
        // loss; skipping the fsync keeps `run --rm` fast.
        let durability = if rec.spec.auto_remove {
            Durability::Volatile
        } else {
            Durability::Flushed
        };
        self.flusher
            .write(&self.dir.join(RECORD_FILE), &json, durability)
            .map_err(|e| ContainerError::io(format_args!("saving container {}", self.id), e))
    }

    /// Changes the record, persists it, and returns the new copy.
    fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        let mut rec = self.lock_record();
        f(&mut rec);
        self.persist(&rec)?;
        Ok(rec.clone())
    }
}

struct Table {
    by_id: HashMap<String, Arc<Entry>>,
    tombstones: VecDeque<Arc<Entry>>,
}

/// Owns all containers of this agent.
pub struct Manager {
    dir: PathBuf,
    images: Arc<ImageStore>,
    cgroups: CgroupHost,
    events: Arc<dyn EventSink>,
    monitors: Monitors,
    netns: NetnsPool,
    flusher: Arc<Flusher>,
    janitor: Arc<Janitor>,
    log_max_bytes: u64,
    table: Mutex<Table>,
}

/// What a [`Manager`] works with.
pub struct Deps {
    /// The image store.
    pub images: Arc<ImageStore>,
    /// The host's cgroup setup.
    pub cgroups: CgroupHost,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// How container monitors are started.
    pub monitors: Monitors,
    /// Network namespaces made ahead of time.
    pub netns: NetnsPool,
    /// Background durability of state files.
    pub flusher: Arc<Flusher>,
    /// Deletes removed containers' directories in the background.
    pub janitor: Arc<Janitor>,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Manager {
    /// Opens the container store in `dir`, loading what a previous run left.
    pub fn open(dir: PathBuf, deps: Deps, log_max_bytes: u64) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(dir.display(), e))?;
        let Deps {
            images,
            cgroups,
            events,
            monitors,
            netns,
            flusher,
            janitor,
        } = deps;
        let mgr = Arc::new(Manager {
            dir,
            images,
            cgroups,
            events,
            monitors,
            netns,
            flusher,
            janitor,
            log_max_bytes,
            table: Mutex::new(Table {
                by_id: HashMap::new(),
                tombstones: VecDeque::new(),
            }),
        });
        mgr.load()?;
        Ok(mgr)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cgroup setup in use.
    pub fn cgroups(&self) -> &CgroupHost {
        &self.cgroups
    }

    /// Loads stored containers and repairs what a crash of berthd left
    /// half-done: directories without a record are removed; a container
    /// whose monitor said it started is treated as started; running
    /// containers are adopted again (or get the exit their monitor
    /// recorded); stale mounts and cgroups go; pending stop deadlines and
    /// restart policies are honoured again.
    fn load(self: &Arc<Self>) -> Result<()> {
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| ContainerError::io(self.dir.display(), e))?;
        let mut known = HashSet::new();
        for de in rd.flatten() {
            let dir = de.path();
            let Some(id) = dir.file_name().map(|n| n.to_string_lossy().to_string()) else {
                continue;
            };
            if id.starts_with(".trash-") {
                // Where berthd before the trash directory put a removal
                // whose background delete a crash cut short.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            if id.starts_with('.') {
                continue;
            }
            let bytes = match std::fs::read(dir.join(RECORD_FILE)) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A create or remove cut short by a crash.
                    tracing::info!(%id, "removing a half-created or half-removed container");
                    let _ = Rootfs::under(&dir).unmount();
                    let _ = self.cgroups.remove(&id);
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                Err(e) => return Err(ContainerError::io(dir.display(), e)),
            };
            let mut rec: Record = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    self.quarantine(&dir, &id, &e.to_string());
                    continue;
                }
            };
            known.insert(rec.id.clone());
            // The monitor's own files say more than a record written before
            // a crash: it writes running.json once the process runs. A run
            // the record does not know is adopted, also one that has ended
            // meanwhile: re-adopting finds its monitor gone and records the
            // exit from exit.json.
            if !rec.state.is_live() {
                if let Some(r) =
                    read_json::<monitor::RunningRecord>(&dir.join(monitor::RUNNING_FILE))
                {
                    if r.started_at_unix_nanos > rec.started_at {
                        tracing::info!(id = %rec.id, "adopting a container whose start was cut short");
                        rec.state = State::Running;
                        rec.pid = r.pid;
                        rec.monitor_pid = r.monitor_pid;
                        rec.started_at = r.started_at_unix_nanos;
                        rec.start_count += 1;
                    }
                }
            }
            let life = match rec.exit {
                Some(x) if !rec.state.is_live() && rec.state != State::Created => Life::Exited(x),
                _ => Life::Pending,
            };
            let entry = Arc::new(Entry::new(
                rec.id.clone(),
                dir.clone(),
                rec.clone(),
                life,
                self.flusher.clone(),
            ));
            self.table().by_id.insert(rec.id.clone(), entry.clone());
            if rec.state.is_live() {
                self.readopt(entry);
            } else {
                let _ = Rootfs::under(&dir).unmount();
                let _ = self.cgroups.remove(&rec.id);
                let start = match rec.state {
                    State::Restarting => true,
                    State::Exited => {
                        restart::at_agent_start(rec.spec.restart_policy, rec.stopped_by_user)
                    }
                    _ => false,
                };
                if start {
                    self.schedule_restart(entry, Duration::ZERO);
                }
            }
        }
        self.cgroups.remove_others(&known);
        Ok(())
    }

    /// Moves an unreadable container directory aside, so the agent starts
    /// and a person can look at it.
    fn quarantine(&self, dir: &Path, id: &str, why: &str) {
        let qdir = self.dir.join(".quarantine");
        let to = qdir.join(format!("{id}-{}", now_nanos()));
        let moved = std::fs::create_dir_all(&qdir).and_then(|()| std::fs::rename(dir, &to));
        match moved {
            Ok(()) => tracing::error!(
                %id,
                "container record is corrupt ({why}); moved to {}",
                to.display()
            ),
            Err(e) => {
                tracing::error!(%id, "container record is corrupt ({why}); cannot move it aside: {e}")
            }
        }
    }

    fn readopt(self: &Arc<Self>, entry: Arc<Entry>) {
        let rec = entry.snapshot();
        let exit_file = entry.dir.join(monitor::EXIT_FILE);
        let monitor = sys::pidfd_open(Pid::from_raw(rec.monitor_pid))
            .ok()
            .filter(|_| monitor::is_monitor_of(rec.monitor_pid, &entry.dir));
        let lost = || ExitRecord {
            exit_code: 255,
            signal: 0,
            oom_killed: false,
            finished_at_unix_nanos: now_nanos(),
        };
        let Some(monitor) = monitor else {
            // An exit.json older than this run is a previous run's.
            let exit = read_exit(&exit_file)
                .filter(|x| x.finished_at_unix_nanos >= rec.started_at)
                .unwrap_or_else(lost);
            let mgr = self.clone();
            tokio::spawn(async move { mgr.finish_exit(&entry, exit).await });
            return;
        };
        if let Ok(fd) = sys::pidfd_open(Pid::from_raw(rec.pid)) {
            *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fd));
        }
        tracing::info!(id = %entry.id, "re-adopted running container");
        if rec.stop_deadline > 0 {
            // A Stop was in progress when berthd went down: kill on time.
            let mgr = self.clone();
            let e = entry.clone();
            tokio::spawn(async move {
                let wait = (rec.stop_deadline - now_nanos()).max(0) as u64;
                tokio::time::sleep(Duration::from_nanos(wait)).await;
                // Only the run that was being stopped: it may have exited
                // and been started again meanwhile.
                let now = e.snapshot();
                if now.state.is_live() && now.started_at == rec.started_at {
                    let _ = mgr.kill(&e, Signal::SIGKILL);
                }
            });
        }
        let mgr = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sys::pidfd_exited(monitor).await {
                tracing::warn!(id = %entry.id, "waiting for the monitor: {e}");
            }
            let exit = read_exit(&exit_file).unwrap_or_else(lost);
            mgr.finish_exit(&entry, exit).await;
        });
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

    /// All containers.
    pub fn list(&self) -> Vec<Record> {
        let entries: Vec<Arc<Entry>> = self.table().by_id.values().cloned().collect();
        let mut recs: Vec<Record> = entries.iter().map(|e| e.snapshot()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        recs
    }

    /// Image layers (diff ids) used by containers.
    pub fn layers_in_use(&self) -> HashSet<String> {
        self.list().into_iter().flat_map(|r| r.layers).collect()
    }

    fn publish(&self, rec: &Record, action: Action, f: impl FnOnce(&mut Event)) {
        let mut ev = Event::new(Object::Container, action, rec.id.clone());
        ev.name = rec.name.clone();
        ev.labels = rec.spec.labels.clone();
        ev.image = rec.spec.image.clone();
        f(&mut ev);
        self.events.publish(ev);
    }

    /// Creates a container (state Created). Nothing is left behind on error.
    pub fn create(&self, spec: SpecRecord) -> Result<Record> {
        spec::validate_limits(&spec.limits)?;
        if !spec.name.is_empty() {
            spec::validate_name(&spec.name)?;
        }
        if spec.hostname.len() > 64
            || !spec
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(ContainerError::invalid(
                "hostname",
                format!("invalid hostname {:?}", capped(&spec.hostname)),
            ));
        }
        self.cgroups
            .check(&Limits::from(&spec.limits))
            .map_err(ContainerError::LimitUnsupported)?;
        if spec.image.is_empty() {
            return Err(ContainerError::invalid("image", "no image given"));
        }
        if spec.auto_remove && spec.restart_policy != restart::Policy::No {
            return Err(ContainerError::invalid(
                "restart_policy",
                "auto-remove and a restart policy exclude each other",
            ));
        }
        let image = self.images.resolve(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(_) => ContainerError::ImageNotFound {
                image: spec.image.clone(),
            },
            other => ContainerError::Image(other),
        })?;
        let eff = spec::merge(&spec, &image.config)?;
        let id = spec::new_id();
        let name = if spec.name.is_empty() {
            spec::generate_name()
        } else {
            spec.name.clone()
        };
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            hostname: if spec.hostname.is_empty() {
                id[..12].to_string()
            } else {
                spec.hostname.clone()
            },
            image_id: image.id.clone(),
            layers: image.layers.clone(),
            layer_dirs: self.images.layer_dirs(&image),
            state: State::Created,
            pid: 0,
            monitor_pid: 0,
            created_at: now_nanos(),
            started_at: 0,
            exit: None,
            args: eff.args,
            env: eff.env,
            cwd: eff.cwd,
            user: eff.user,
            stop_signal: eff.stop_signal,
            stop_timeout: eff.stop_timeout,
            start_count: 0,
            restart_count: 0,
            backoff: 0,
            stopped_by_user: false,
            stop_deadline: 0,
            spec,
        };
        let dir = self.dir.join(&id);
        let entry = Arc::new(Entry::new(
            id.clone(),
            dir.clone(),
            rec.clone(),
            Life::Pending,
            self.flusher.clone(),
        ));
        {
            // Check and claim the name in one step, so two creates cannot
            // both get it.
            let mut table = self.table();
            if table.by_id.values().any(|e| e.lock_record().name == name) {
                return Err(ContainerError::NameInUse { name });
            }
            table.by_id.insert(id.clone(), entry.clone());
        }
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir(&dir)?;
            Rootfs::under(&dir).create_dirs()?;
            std::fs::File::create(dir.join(LOG_FILE))?;
            Ok(())
        })()
        .map_err(|e| ContainerError::io("creating the container directory", e))
        .and_then(|()| entry.persist(&rec));
        if let Err(e) = made {
            self.table().by_id.remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        if !rec.spec.auto_remove {
            self.flusher.queue(&self.dir);
        }
        self.publish(&rec, Action::Created, |_| {});
        Ok(rec)
    }

    /// Starts a created or exited container (through the API) and returns
    /// once it runs. Resets the restart policy's counters.
    pub async fn start(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        self.start_locked(entry, true).await
    }

    /// Starts the container; the caller holds its `ops` lock.
    async fn start_locked(self: &Arc<Self>, entry: &Arc<Entry>, by_user: bool) -> Result<Record> {
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Start)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        if by_user {
            entry.call_off_restart();
        }
        // The previous run's cgroup must be gone before this run makes it anew.
        drop(entry.teardown.lock().await);
        // The monitor execs and initialises while the cgroup is made; it
        // waits for the launch spec (and is killed if none comes).
        let starting = self
            .monitors
            .start(&entry.dir)
            .map_err(ContainerError::Launch)?;
        let cg = self
            .cgroups
            .create(&rec.id, &Limits::from(&rec.spec.limits))
            .map_err(|source| ContainerError::Cgroup {
                context: "creating the cgroup",
                source,
            })?;
        let cleanup = |mgr: &Manager| {
            if let Err(e) = mgr.cgroups.remove(&rec.id) {
                tracing::warn!(id = %rec.id, "{e}");
            }
        };
        // Held until the monitor has reported: the init opens it by path.
        let netns = self.netns.take();
        let launch = match self.launch_spec(entry, &rec, &cg, netns.as_ref()) {
            Ok(spec) => spec,
            Err(e) => {
                cleanup(self);
                return Err(ContainerError::io("the container's paths", e));
            }
        };
        // What a previous run left must not be taken for this run's.
        for stale in [monitor::EXIT_FILE, monitor::RUNNING_FILE] {
            if let Err(e) = std::fs::remove_file(entry.dir.join(stale)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    cleanup(self);
                    return Err(ContainerError::io(format_args!("removing {stale}"), e));
                }
            }
        }
        let spawned = starting.launch(&launch).await;
        drop(netns);
        // Replace the monitor this start used, now that it is done with it.
        self.monitors.refill();
        match spawned {
            Ok(running) => {
                match sys::pidfd_open(running.pid) {
                    Ok(fd) => {
                        *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fd))
                    }
                    // Already exited and reaped: the exit report follows.
                    Err(e) => tracing::debug!(id = %rec.id, "pidfd_open: {e}"),
                }
                entry.life.send_replace(Life::Pending);
                let saved = entry.update(|r| {
                    r.state = State::Running;
                    r.pid = running.pid.as_raw();
                    r.monitor_pid = running.monitor_pid.as_raw();
                    r.started_at = running.started_at_unix_nanos;
                    r.start_count += 1;
                    r.stop_deadline = 0;
                    if by_user {
                        r.stopped_by_user = false;
                        r.restart_count = 0;
                        r.backoff = 0;
                    }
                });
                // The container runs whatever the disk says: it stays
                // watched, and a restarted berthd adopts it from the
                // monitor's running.json.
                let started = saved.unwrap_or_else(|e| {
                    tracing::error!(id = %rec.id, "{e}");
                    entry.snapshot()
                });
                self.publish(&started, Action::Started, |_| {});
                let mgr = self.clone();
                let watched = entry.clone();
                let exit_file = PathBuf::from(&launch.exit_path);
                let mut reports = running.reports;
                tokio::spawn(async move {
                    let exit = match monitor::wait_exit(&mut reports).await {
                        Some(x) => x,
                        None => read_exit(&exit_file).unwrap_or(ExitRecord {
                            exit_code: 255,
                            signal: 0,
                            oom_killed: false,
                            finished_at_unix_nanos: now_nanos(),
                        }),
                    };
                    mgr.finish_exit(&watched, exit).await;
                });
                Ok(started)
            }
            Err(SpawnError::Exec { message, exit_code }) => {
                cleanup(self);
                let exit = ExitRecord {
                    exit_code,
                    signal: 0,
                    oom_killed: false,
                    finished_at_unix_nanos: now_nanos(),
                };
                let rec = entry.update(|r| {
                    r.state = State::Exited;
                    r.exit = Some(exit);
                })?;
                self.publish(&rec, Action::Exited, |ev| ev.exit = Some(exit));
                entry.life.send_replace(Life::Exited(exit));
                if rec.spec.auto_remove {
                    self.spawn_auto_remove(entry.clone());
                }
                Err(ContainerError::CannotExec {
                    id: rec.id.clone(),
                    name: rec.name.clone(),
                    message,
                    exit_code,
                })
            }
            Err(e @ SpawnError::Monitor(_)) => {
                cleanup(self);
                Err(ContainerError::Launch(e))
            }
        }
    }

    /// What the monitor needs to start `rec`'s container in `cg`.
    fn launch_spec(
        &self,
        entry: &Entry,
        rec: &Record,
        cg: &crate::cgroup::ContainerCgroup,
        netns: Option<&crate::netns_pool::Spare>,
    ) -> std::io::Result<LaunchSpec> {
        let path = |p: &Path| crate::fsutil::utf8_path(p);
        Ok(LaunchSpec {
            id: rec.id.clone(),
            dir: path(&entry.dir)?,
            rootfs: Rootfs::under(&entry.dir).launch(&rec.layer_dirs)?,
            args: rec.args.clone(),
            env: rec.env.clone(),
            cwd: rec.cwd.clone(),
            user: rec.user.clone(),
            hostname: rec.hostname.clone(),
            netns: netns.map(|ns| ns.path()),
            cgroup: cg.placement.clone(),
            oom_events: cg.oom_events.clone(),
            cgroup_version: self.cgroups.version(),
            cgroup_v1_controllers: self
                .cgroups
                .controllers()
                .iter()
                .filter(|c| c.as_str() != "cpuacct")
                .cloned()
                .collect(),
            log_path: path(&entry.dir.join(LOG_FILE))?,
            log_max_bytes: self.log_max_bytes,
            exit_path: path(&entry.dir.join(monitor::EXIT_FILE))?,
        })
    }

    /// Records an exit: persists and announces it (Wait returns here), then
    /// releases the cgroup before anything may reuse it.
    async fn finish_exit(self: &Arc<Self>, entry: &Arc<Entry>, exit: ExitRecord) {
        let teardown = entry.teardown.lock().await;
        *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = entry.snapshot().state.apply(Op::Exit) {
            // A duplicate report (e.g. adopted and reported at once): ignore.
            tracing::debug!(id = %entry.id, "{e}");
            return;
        }
        let rec = {
            let mut r = entry.lock_record();
            r.state = State::Exited;
            r.pid = 0;
            r.monitor_pid = 0;
            r.exit = Some(exit);
            r.stop_deadline = 0;
            r.clone()
        };
        // The event goes to the durable log before the record is saved: a
        // crash in between makes the next berthd see the exit again, and the
        // log tells it that the exit was already announced.
        if !self
            .events
            .exit_announced(&rec.id, exit.finished_at_unix_nanos)
        {
            self.publish(&rec, Action::Exited, |ev| ev.exit = Some(exit));
        }
        // An auto-remove container is removed next; its record is not
        // rewritten for the moment in between. A crash before the removal
        // leaves it "running" on disk with its monitor gone, and the next
        // berthd takes the exit from exit.json and removes it then.
        if !rec.spec.auto_remove {
            if let Err(e) = entry.persist(&rec) {
                tracing::error!(id = %entry.id, "{e}");
            }
        }
        entry.life.send_replace(Life::Exited(exit));
        let id = entry.id.clone();
        let cg = self.cgroups.clone();
        let rootfs = Rootfs::under(&entry.dir);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = rootfs.unmount() {
                tracing::warn!(%id, "{e}");
            }
            if let Err(e) = cg.release(&id) {
                tracing::warn!(%id, "{e}");
            }
        })
        .await;
        drop(teardown);
        if rec.spec.auto_remove {
            self.spawn_auto_remove(entry.clone());
            return;
        }
        let uptime =
            Duration::from_nanos((exit.finished_at_unix_nanos - rec.started_at).max(0) as u64);
        if let Some(r) = restart::after_exit(
            rec.spec.restart_policy,
            exit.exit_code,
            rec.stopped_by_user,
            rec.restart_count,
            rec.backoff,
            uptime,
        ) {
            let scheduled = entry.snapshot().state.apply(Op::ScheduleRestart).is_ok()
                && entry
                    .update(|x| {
                        x.state = State::Restarting;
                        x.restart_count += 1;
                        x.backoff = r.backoff;
                    })
                    .is_ok();
            if scheduled {
                let rec = entry.snapshot();
                self.publish(&rec, Action::Restarting, |ev| {
                    ev.restart_attempt = rec.restart_count;
                    ev.restart_delay = r.delay;
                });
                self.schedule_restart(entry.clone(), r.delay);
            }
        }
    }

    /// Starts a RESTARTING container after `delay`, unless a client has
    /// started, stopped or removed it meanwhile.
    fn schedule_restart(self: &Arc<Self>, entry: Arc<Entry>, delay: Duration) {
        let mgr = self.clone();
        let gen = entry.call_off_restart();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ops = entry.ops.lock().await;
            let state = entry.snapshot().state;
            let gone = !mgr.table().by_id.contains_key(&entry.id);
            let called_off = entry.restart_gen.load(Ordering::SeqCst) != gen;
            if gone || called_off || !matches!(state, State::Restarting | State::Exited) {
                return;
            }
            if let Err(e) = mgr.start_locked(&entry, false).await {
                tracing::warn!(id = %entry.id, "restart failed: {e}");
                // Nothing else would start it: it is exited, not restarting
                // (a client's Start tries again).
                let _ = entry.update(|r| {
                    if r.state == State::Restarting {
                        r.state = State::Exited;
                    }
                });
            }
        });
    }

    fn spawn_auto_remove(self: &Arc<Self>, entry: Arc<Entry>) {
        let mgr = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mgr.remove(&entry, false).await {
                tracing::warn!(id = %entry.id, "auto-remove: {e}");
            }
        });
    }

    fn signal(&self, entry: &Entry, sig: Signal) -> Result<()> {
        let rec = entry.snapshot();
        signalable(&rec)?;
        let fd = entry
            .pidfd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(fd) = fd {
            match sys::pidfd_send_signal(&fd, sig as i32) {
                // ESRCH: it exited a moment ago; its exit is on the way.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                other => other.map_err(|e| ContainerError::io("sending the signal", e))?,
            }
        }
        if rec.state == State::Paused && is_fatal(sig, rec.stop_signal) {
            // Frozen processes (v1 freezer) only act on a signal once thawed.
            self.thaw(entry)?;
        }
        Ok(())
    }

    /// [`Manager::signal`] for Stop and forced Remove: a container that
    /// exited by itself meanwhile has done what they ask for.
    fn signal_unless_exited(&self, entry: &Entry, sig: Signal) -> Result<()> {
        match self.signal(entry, sig) {
            Err(ContainerError::InvalidTransition { .. }) if !entry.snapshot().state.is_live() => {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `sig` to a running container. SIGKILL or the stop signal count
    /// as a stop through the API for the restart policy.
    pub fn kill(&self, entry: &Entry, sig: Signal) -> Result<()> {
        let rec = entry.snapshot();
        // Refused before anything is saved: a failed Kill changes nothing.
        signalable(&rec)?;
        if is_fatal(sig, rec.stop_signal) {
            entry.update(|r| r.stopped_by_user = true)?;
        }
        self.signal(entry, sig)?;
        self.publish(&entry.snapshot(), Action::Killed, |ev| {
            ev.signal = sig as i32
        });
        Ok(())
    }

    /// Stops a container: stop signal, up to `timeout` of grace, then
    /// SIGKILL. Returns the record and whether SIGKILL was needed. Runs to
    /// completion even if the caller goes away, and the deadline is saved so
    /// a restarted berthd still kills on time.
    pub async fn stop(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        timeout: Option<u32>,
    ) -> Result<(Record, bool)> {
        let mgr = self.clone();
        tokio::spawn(async move { mgr.stop_inner(&entry, timeout).await })
            .await
            .map_err(|source| ContainerError::Task {
                context: "stop task",
                source,
            })?
    }

    async fn stop_inner(&self, entry: &Arc<Entry>, timeout: Option<u32>) -> Result<(Record, bool)> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        match rec.state.apply(Op::Stop) {
            Ok(Outcome::To(to)) => {
                // A pending restart is called off.
                entry.call_off_restart();
                let rec = entry.update(|r| {
                    r.state = to;
                    r.stopped_by_user = true;
                })?;
                return Ok((rec, false));
            }
            Ok(_) if !rec.state.is_live() => return Ok((rec, false)),
            Ok(_) => {}
            Err(e) => return Err(ContainerError::transition(&rec.id, e)),
        }
        let mut life = entry.life();
        let sig = Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM);
        let grace = Duration::from_secs(u64::from(timeout.unwrap_or(rec.stop_timeout)));
        let deadline = now_nanos() + grace.as_nanos() as i64;
        entry.update(|r| {
            r.stopped_by_user = true;
            r.stop_deadline = deadline;
        })?;
        self.publish(&rec, Action::Stopping, |ev| ev.signal = sig as i32);
        self.signal_unless_exited(entry, sig)?;
        let exited = |l: &Life| !matches!(l, Life::Pending);
        let mut killed = false;
        if tokio::time::timeout(grace, life.wait_for(exited))
            .await
            .is_err()
        {
            killed = true;
            self.signal_unless_exited(entry, Signal::SIGKILL)?;
            self.publish(&entry.snapshot(), Action::Killed, |ev| {
                ev.signal = Signal::SIGKILL as i32
            });
        }
        // SIGKILL cannot be ignored; the monitor reports promptly. The bound
        // only protects the caller from a kernel stuck in uninterruptible sleep.
        tokio::time::timeout(Duration::from_secs(60), life.wait_for(exited))
            .await
            .map_err(|_| ContainerError::NoExitAfterKill {
                id: entry.id.clone(),
            })?
            .map_err(|_| ContainerError::Vanished {
                what: "container vanished while stopping",
            })?;
        Ok((entry.snapshot(), killed))
    }

    /// Freezes a running container.
    pub async fn pause(&self, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Pause)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        self.cgroups
            .freeze(&rec.id)
            .map_err(|source| ContainerError::Cgroup {
                context: "freezing",
                source,
            })?;
        // Exits are recorded without the ops lock: one may have come.
        let rec = entry.update(|r| {
            if r.state == State::Running {
                r.state = State::Paused;
            }
        })?;
        if rec.state != State::Paused {
            return Err(ContainerError::EndedWhilePausing {
                id: rec.id.clone(),
                state: rec.state,
            });
        }
        self.publish(&rec, Action::Paused, |_| {});
        Ok(rec)
    }

    /// Thaws a paused container.
    pub async fn resume(&self, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        self.thaw(entry)?;
        Ok(entry.snapshot())
    }

    fn thaw(&self, entry: &Entry) -> Result<()> {
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Resume)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        self.cgroups
            .thaw(&rec.id)
            .map_err(|source| ContainerError::Cgroup {
                context: "thawing",
                source,
            })?;
        let rec = entry.update(|r| {
            if r.state == State::Paused {
                r.state = State::Running;
            }
        })?;
        if rec.state == State::Running {
            self.publish(&rec, Action::Resumed, |_| {});
        }
        Ok(())
    }

    /// Changes limits (live when it runs) and/or the restart policy. Zero
    /// or empty limit fields keep their value.
    pub async fn update(
        &self,
        entry: &Arc<Entry>,
        limits: Option<record::LimitsRecord>,
        policy: Option<restart::Policy>,
    ) -> Result<Record> {
        let _ops = entry.ops.lock().await;
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
        let rec = entry.update(|r| {
            r.spec.limits = merged;
            if let Some(p) = policy {
                r.spec.restart_policy = p;
            }
        })?;
        self.publish(&rec, Action::Updated, |_| {});
        Ok(rec)
    }

    /// Removes a container (killing it first with `force`).
    pub async fn remove(&self, entry: &Arc<Entry>, force: bool) -> Result<()> {
        let _ops = entry.ops.lock().await;
        if !self.table().by_id.contains_key(&entry.id) {
            return Err(ContainerError::NotFound {
                key: entry.id.clone(),
            });
        }
        let rec = entry.snapshot();
        match rec.state.apply(Op::Remove { force }) {
            Err(e) => return Err(ContainerError::transition(&rec.id, e)),
            Ok(Outcome::KillThenRemove) => {
                let mut life = entry.life();
                entry.update(|r| r.stopped_by_user = true)?;
                self.signal_unless_exited(entry, Signal::SIGKILL)?;
                self.publish(&rec, Action::Killed, |ev| {
                    ev.signal = Signal::SIGKILL as i32
                });
                tokio::time::timeout(
                    Duration::from_secs(60),
                    life.wait_for(|l| !matches!(l, Life::Pending)),
                )
                .await
                .map_err(|_| ContainerError::NoExitAfterKill {
                    id: entry.id.clone(),
                })?
                .map_err(|_| ContainerError::Vanished {
                    what: "container vanished",
                })?;
            }
            Ok(_) => {}
        }
        let _teardown = entry.teardown.lock().await;
        let rec = entry.snapshot();
        let dir = entry.dir.clone();
        let id = entry.id.clone();
        let (cg, janitor) = (self.cgroups.clone(), self.janitor.clone());
        tokio::task::spawn_blocking(move || {
            let _ = Rootfs::under(&dir).unmount();
            let _ = cg.remove(&id);
            // Gone by name at once; its files are deleted in the background.
            janitor.discard(&dir, &id)
        })
        .await
        .map_err(|source| ContainerError::Task {
            context: "remove task",
            source,
        })?
        .map_err(|e| ContainerError::io("removing the container directory", e))?;
        if !rec.spec.auto_remove {
            self.flusher.queue(&self.dir);
        }
        {
            let mut table = self.table();
            table.by_id.remove(&entry.id);
            table.tombstones.push_back(entry.clone());
            if table.tombstones.len() > TOMBSTONES {
                table.tombstones.pop_front();
            }
        }
        entry.life.send_replace(Life::Removed(rec.exit));
        self.publish(&rec, Action::Removed, |_| {});
        if self.images.resolve(&rec.image_id).is_err() {
            // Its image was force-removed earlier; its layers may now be free.
            let in_use = self.layers_in_use();
            if let Err(e) = self.images.gc(&in_use) {
                tracing::warn!("image gc: {e}");
            }
        }
        Ok(())
    }

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

fn read_exit(path: &Path) -> Option<ExitRecord> {
    read_json(path)
}

/// Whether `sig` ends the container (SIGKILL or its stop signal).
/// Whether the container's state lets it be signalled.
fn signalable(rec: &Record) -> Result<()> {
    rec.state
        .apply(Op::Signal)
        .map(drop)
        .map_err(|e| ContainerError::transition(&rec.id, e))
}

fn is_fatal(sig: Signal, stop_signal: i32) -> bool {
    sig == Signal::SIGKILL || sig as i32 == stop_signal
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
