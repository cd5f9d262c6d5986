//! Containers: creation, lifecycle and bookkeeping.
//!
//! The [`Manager`] owns every container of the agent. Lifecycle operations on
//! one container are serialised by its `ops` lock; the transition rules live
//! in [`state`]; each change is persisted (atomically) before it is announced
//! as an event.

pub mod record;
pub mod rootfs;
pub mod spec;
pub mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::v1::{EventAction, ObjectType};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::cgroup::{CgroupHost, Limits};
use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::image::ImageStore;
use crate::runtime::{self, ExitRecord, LaunchSpec, SpawnError};
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
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
}

impl Entry {
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
        let json =
            serde_json::to_vec_pretty(rec).map_err(|e| Error::internal("encoding record", e))?;
        crate::fsutil::write_atomic(&self.dir.join(RECORD_FILE), &json)
            .map_err(|e| Error::internal(format!("saving container {}", self.id), e))
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
    events: Arc<EventBus>,
    log_max_bytes: u64,
    table: Mutex<Table>,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Manager {
    /// Opens the container store in `dir`, loading what a previous run left.
    pub fn open(
        dir: PathBuf,
        images: Arc<ImageStore>,
        cgroups: CgroupHost,
        events: Arc<EventBus>,
        log_max_bytes: u64,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::internal(dir.display(), e))?;
        let mgr = Arc::new(Manager {
            dir,
            images,
            cgroups,
            events,
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

    /// Loads stored containers. Containers that were running when the agent
    /// stopped are adopted again if their monitor lives, or get the exit
    /// their monitor recorded.
    fn load(self: &Arc<Self>) -> Result<()> {
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| Error::internal(self.dir.display(), e))?;
        for de in rd.flatten() {
            let dir = de.path();
            let rec: Record = match std::fs::read(dir.join(RECORD_FILE))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "skipping unreadable container record: {e}");
                    continue;
                }
            };
            let life = match rec.exit {
                Some(x) if rec.state == State::Exited => Life::Exited(x),
                _ => Life::Pending,
            };
            let entry = Arc::new(Entry {
                id: rec.id.clone(),
                dir: dir.clone(),
                record: Mutex::new(rec.clone()),
                life: watch::Sender::new(life),
                ops: tokio::sync::Mutex::new(()),
                pidfd: Mutex::new(None),
            });
            self.table().by_id.insert(rec.id.clone(), entry.clone());
            if rec.state == State::Running {
                self.readopt(entry);
            }
        }
        Ok(())
    }

    fn readopt(self: &Arc<Self>, entry: Arc<Entry>) {
        let rec = entry.snapshot();
        let exit_file = entry.dir.join(runtime::launch::EXIT_FILE);
        let monitor = sys::pidfd_open(Pid::from_raw(rec.monitor_pid))
            .ok()
            .filter(|_| monitor_cmdline_matches(rec.monitor_pid, &entry.dir));
        let Some(monitor) = monitor else {
            let exit = read_exit(&exit_file).unwrap_or(ExitRecord {
                exit_code: 255,
                signal: 0,
                oom_killed: false,
                finished_at_unix_nanos: now_nanos(),
            });
            let mgr = self.clone();
            tokio::spawn(async move { mgr.finish_exit(&entry, exit).await });
            return;
        };
        if let Ok(fd) = sys::pidfd_open(Pid::from_raw(rec.pid)) {
            *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fd));
        }
        tracing::info!(id = %entry.id, "re-adopted running container");
        let mgr = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sys::pidfd_exited(monitor).await {
                tracing::warn!(id = %entry.id, "waiting for the monitor: {e}");
            }
            let exit = read_exit(&exit_file).unwrap_or(ExitRecord {
                exit_code: 255,
                signal: 0,
                oom_killed: false,
                finished_at_unix_nanos: now_nanos(),
            });
            mgr.finish_exit(&entry, exit).await;
        });
    }

    /// Finds a container by full id, exact name, or unique id prefix.
    pub fn get(&self, key: &str) -> Result<Arc<Entry>> {
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "no container id or name given".into(),
            ));
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
            [] => Err(Error::NotFound(format!("no such container: {key}"))),
            _ => Err(Error::InvalidArgument(format!(
                "{key} matches {} containers: give more of the id",
                matches.len()
            ))),
        }
    }

    /// Like [`Manager::get`], but also finds recently removed containers by full id.
    pub fn get_or_removed(&self, key: &str) -> Result<Arc<Entry>> {
        match self.get(key) {
            Err(Error::NotFound(m)) => self
                .table()
                .tombstones
                .iter()
                .find(|e| e.id == key)
                .cloned()
                .ok_or(Error::NotFound(m)),
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

    fn publish(&self, rec: &Record, action: EventAction, f: impl FnOnce(&mut berth::v1::Event)) {
        let mut ev = berth::v1::Event {
            r#type: ObjectType::Container as i32,
            action: action as i32,
            id: rec.id.clone(),
            name: rec.name.clone(),
            labels: rec.spec.labels.clone().into_iter().collect(),
            image: rec.spec.image.clone(),
            ..Default::default()
        };
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
            return Err(Error::InvalidArgument(format!(
                "invalid hostname {:?}",
                spec.hostname
            )));
        }
        self.cgroups
            .check(&Limits::from(&spec.limits))
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        if spec.image.is_empty() {
            return Err(Error::InvalidArgument("no image given".into()));
        }
        let image = self.images.resolve(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(_) => {
                Error::NotFound(format!("no such image: {}", spec.image))
            }
            other => other.into(),
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
            spec,
        };
        let dir = self.dir.join(&id);
        let entry = Arc::new(Entry {
            id: id.clone(),
            dir: dir.clone(),
            record: Mutex::new(rec.clone()),
            life: watch::Sender::new(Life::Pending),
            ops: tokio::sync::Mutex::new(()),
            pidfd: Mutex::new(None),
        });
        {
            // Check and claim the name in one step, so two creates cannot
            // both get it.
            let mut table = self.table();
            if table.by_id.values().any(|e| e.lock_record().name == name) {
                return Err(Error::AlreadyExists(format!(
                    "the container name {name:?} is already in use"
                )));
            }
            table.by_id.insert(id.clone(), entry.clone());
        }
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir(&dir)?;
            Rootfs::under(&dir).create_dirs()?;
            std::fs::File::create(dir.join(LOG_FILE))?;
            Ok(())
        })()
        .map_err(|e| Error::internal("creating the container directory", e))
        .and_then(|()| entry.persist(&rec));
        if let Err(e) = made {
            self.table().by_id.remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.publish(&rec, EventAction::Created, |_| {});
        Ok(rec)
    }

    /// Starts a created or exited container and returns once it runs.
    pub async fn start(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Start)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let rootfs = Rootfs::under(&entry.dir);
        let cg = self
            .cgroups
            .create(&rec.id, &Limits::from(&rec.spec.limits))
            .map_err(|e| Error::internal("creating the cgroup", e))?;
        let cleanup = |mgr: &Manager| {
            let _ = rootfs.unmount();
            if let Err(e) = mgr.cgroups.remove(&rec.id) {
                tracing::warn!(id = %rec.id, "{e}");
            }
        };
        if let Err(e) = rootfs.mount(&rec.layer_dirs) {
            cleanup(self);
            return Err(Error::internal("preparing the root filesystem", e));
        }
        let launch = LaunchSpec {
            id: rec.id.clone(),
            rootfs: rootfs.merged.clone(),
            args: rec.args.clone(),
            env: rec.env.clone(),
            cwd: rec.cwd.clone(),
            user: rec.user.clone(),
            hostname: rec.hostname.clone(),
            cgroup_procs: cg.procs_files.clone(),
            oom_events: cg.oom_events.clone(),
            cgroup_version: self.cgroups.version(),
            cgroup_v1_controllers: self
                .cgroups
                .controllers()
                .iter()
                .filter(|c| c.as_str() != "cpuacct")
                .cloned()
                .collect(),
            log_path: entry.dir.join(LOG_FILE),
            log_max_bytes: self.log_max_bytes,
            exit_path: entry.dir.join(runtime::launch::EXIT_FILE),
        };
        let written = serde_json::to_vec(&launch)
            .map_err(std::io::Error::other)
            .and_then(|j| {
                let _ = std::fs::remove_file(&launch.exit_path);
                crate::fsutil::write_atomic(&entry.dir.join(runtime::launch::LAUNCH_FILE), &j)
            });
        if let Err(e) = written {
            cleanup(self);
            return Err(Error::internal("writing the launch spec", e));
        }
        match runtime::spawn(&entry.dir).await {
            Ok(running) => {
                match sys::pidfd_open(running.pid) {
                    Ok(fd) => {
                        *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fd))
                    }
                    // Already exited and reaped: the exit report follows.
                    Err(e) => tracing::debug!(id = %rec.id, "pidfd_open: {e}"),
                }
                entry.life.send_replace(Life::Pending);
                let started = entry.update(|r| {
                    r.state = State::Running;
                    r.pid = running.pid.as_raw();
                    r.monitor_pid = running.monitor_pid.as_raw();
                    r.started_at = now_nanos();
                    r.start_count += 1;
                })?;
                self.publish(&started, EventAction::Started, |_| {});
                let mgr = self.clone();
                let watched = entry.clone();
                let exit_file = launch.exit_path.clone();
                let mut reports = running.reports;
                tokio::spawn(async move {
                    let exit = match runtime::wait_exit(&mut reports).await {
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
                self.publish(&rec, EventAction::Exited, |ev| {
                    ev.exit = Some(exit_to_proto(&exit))
                });
                entry.life.send_replace(Life::Exited(exit));
                if rec.spec.auto_remove {
                    self.spawn_auto_remove(entry.clone());
                }
                Err(Error::FailedPrecondition(format!(
                    "cannot start container {}: {message}",
                    rec.name
                )))
            }
            Err(e @ SpawnError::Monitor(_)) => {
                cleanup(self);
                Err(Error::internal("starting the container", e))
            }
        }
    }

    /// Records an exit: releases the cgroup and mount, persists, announces.
    async fn finish_exit(self: &Arc<Self>, entry: &Arc<Entry>, exit: ExitRecord) {
        *entry.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = entry.snapshot().state.apply(Op::Exit) {
            // A duplicate report (e.g. adopted and reported at once): ignore.
            tracing::debug!(id = %entry.id, "{e}");
            return;
        }
        let id = entry.id.clone();
        let cg = self.cgroups.clone();
        let rootfs = Rootfs::under(&entry.dir);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = rootfs.unmount() {
                tracing::warn!(%id, "{e}");
            }
            if let Err(e) = cg.remove(&id) {
                tracing::warn!(%id, "{e}");
            }
        })
        .await;
        let rec = match entry.update(|r| {
            r.state = State::Exited;
            r.pid = 0;
            r.monitor_pid = 0;
            r.exit = Some(exit);
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(id = %entry.id, "{e}");
                entry.snapshot()
            }
        };
        self.publish(&rec, EventAction::Exited, |ev| {
            ev.exit = Some(exit_to_proto(&exit))
        });
        entry.life.send_replace(Life::Exited(exit));
        if rec.spec.auto_remove {
            self.spawn_auto_remove(entry.clone());
        }
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
        rec.state
            .apply(Op::Signal)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let fd = entry
            .pidfd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match fd {
            Some(fd) => match sys::pidfd_send_signal(&fd, sig as i32) {
                // ESRCH: it exited a moment ago; its exit is on the way.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                other => other.map_err(|e| Error::internal("sending the signal", e)),
            },
            None => Ok(()),
        }
    }

    /// Sends `sig` to a running container.
    pub fn kill(&self, entry: &Entry, sig: Signal) -> Result<()> {
        self.signal(entry, sig)?;
        self.publish(&entry.snapshot(), EventAction::Killed, |ev| {
            ev.signal = sig as i32
        });
        Ok(())
    }

    /// Stops a container: stop signal, up to `timeout` of grace, then
    /// SIGKILL. Returns the record and whether SIGKILL was needed. Runs to
    /// completion even if the caller goes away.
    pub async fn stop(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        timeout: Option<u32>,
    ) -> Result<(Record, bool)> {
        let mgr = self.clone();
        tokio::spawn(async move { mgr.stop_inner(&entry, timeout).await })
            .await
            .map_err(|e| Error::internal("stop task", e))?
    }

    async fn stop_inner(&self, entry: &Arc<Entry>, timeout: Option<u32>) -> Result<(Record, bool)> {
        let _ops = entry.ops.lock().await;
        let rec = entry.snapshot();
        if rec.state != State::Running {
            return Ok((rec, false));
        }
        let mut life = entry.life();
        let sig = Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM);
        let grace = Duration::from_secs(u64::from(timeout.unwrap_or(rec.stop_timeout)));
        self.publish(&rec, EventAction::Stopping, |ev| ev.signal = sig as i32);
        self.signal(entry, sig)?;
        let exited = |l: &Life| !matches!(l, Life::Pending);
        let mut killed = false;
        if tokio::time::timeout(grace, life.wait_for(exited))
            .await
            .is_err()
        {
            killed = true;
            self.signal(entry, Signal::SIGKILL)?;
            self.publish(&entry.snapshot(), EventAction::Killed, |ev| {
                ev.signal = Signal::SIGKILL as i32
            });
        }
        // SIGKILL cannot be ignored; the monitor reports promptly. The bound
        // only protects the caller from a kernel stuck in uninterruptible sleep.
        tokio::time::timeout(Duration::from_secs(60), life.wait_for(exited))
            .await
            .map_err(|_| Error::Internal("container did not exit after SIGKILL".into()))?
            .map_err(|_| Error::Internal("container vanished while stopping".into()))?;
        Ok((entry.snapshot(), killed))
    }

    /// Removes a container (killing it first with `force`).
    pub async fn remove(&self, entry: &Arc<Entry>, force: bool) -> Result<()> {
        let _ops = entry.ops.lock().await;
        if !self.table().by_id.contains_key(&entry.id) {
            return Err(Error::NotFound(format!("no such container: {}", entry.id)));
        }
        let rec = entry.snapshot();
        match rec.state.apply(Op::Remove { force }) {
            Err(e) => return Err(Error::FailedPrecondition(e.to_string())),
            Ok(Outcome::KillThenRemove) => {
                let mut life = entry.life();
                self.signal(entry, Signal::SIGKILL)?;
                self.publish(&rec, EventAction::Killed, |ev| {
                    ev.signal = Signal::SIGKILL as i32
                });
                tokio::time::timeout(
                    Duration::from_secs(60),
                    life.wait_for(|l| !matches!(l, Life::Pending)),
                )
                .await
                .map_err(|_| Error::Internal("container did not exit after SIGKILL".into()))?
                .map_err(|_| Error::Internal("container vanished".into()))?;
            }
            Ok(_) => {}
        }
        let rec = entry.snapshot();
        let dir = entry.dir.clone();
        let cg = self.cgroups.clone();
        let id = entry.id.clone();
        tokio::task::spawn_blocking(move || {
            let _ = Rootfs::under(&dir).unmount();
            let _ = cg.remove(&id);
            std::fs::remove_dir_all(&dir)
        })
        .await
        .map_err(|e| Error::internal("remove task", e))?
        .map_err(|e| Error::internal("removing the container directory", e))?;
        {
            let mut table = self.table();
            table.by_id.remove(&entry.id);
            table.tombstones.push_back(entry.clone());
            if table.tombstones.len() > TOMBSTONES {
                table.tombstones.pop_front();
            }
        }
        entry.life.send_replace(Life::Removed(rec.exit));
        self.publish(&rec, EventAction::Removed, |_| {});
        if self.images.resolve(&rec.image_id).is_err() {
            // Its image was force-removed earlier; its layers may now be free.
            let in_use = self.layers_in_use();
            if let Err(e) = self.images.gc(&in_use) {
                tracing::warn!("image gc: {e}");
            }
        }
        Ok(())
    }

    /// Waits for the container to exit (a created one: to start and exit).
    pub async fn wait(&self, entry: &Arc<Entry>) -> Result<(Record, ExitRecord)> {
        let mut life = entry.life();
        let l = *life
            .wait_for(|l| !matches!(l, Life::Pending))
            .await
            .map_err(|_| Error::Internal("container state lost".into()))?;
        match l {
            Life::Exited(x) | Life::Removed(Some(x)) => Ok((entry.snapshot(), x)),
            _ => Err(Error::NotFound(format!(
                "container {} was removed without having run",
                entry.id
            ))),
        }
    }
}

fn read_exit(path: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether `pid` is still the monitor of the container in `dir` (and not a
/// process that reused its pid).
fn monitor_cmdline_matches(pid: i32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
            args.contains(&runtime::MONITOR_ARG.as_bytes())
                && args.contains(&dir.as_os_str().as_encoded_bytes())
        })
        .unwrap_or(false)
}

/// Converts an exit record to its API form.
pub fn exit_to_proto(x: &ExitRecord) -> berth::v1::ExitStatus {
    berth::v1::ExitStatus {
        exit_code: x.exit_code,
        signal: x.signal,
        oom_killed: x.oom_killed,
        finished_at: Some(nanos_to_ts(x.finished_at_unix_nanos)),
    }
}

/// Unix nanoseconds to a protobuf timestamp.
pub fn nanos_to_ts(n: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: n.div_euclid(1_000_000_000),
        nanos: n.rem_euclid(1_000_000_000) as i32,
    }
}
