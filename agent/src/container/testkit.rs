//! Fakes of the runtime's seams, for deterministic lifecycle tests: a
//! launcher whose processes exit when the test (or a signal) says, cgroups
//! kept in a set, and an event sink that records what it is given.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use berth_runtime::launch::CgroupPlacement;
use tokio::sync::{oneshot, watch};

use super::record::{Record, SpecRecord};
use super::restart::Policy;
use super::state::State;
use super::{Deps, Manager};
use crate::cgroup::{CgroupError, Cgroups, ContainerCgroup, Limits};
use crate::events::domain::{Action, Event, EventSink};
use crate::fsutil::Flusher;
use crate::image::ImageStore;
use crate::janitor::Janitor;
use crate::monitor::{
    BoxFuture, ExitRecord, LaunchSpec, Launched, Launcher, Prepared, Process, SpawnError,
};
use crate::netns_pool::NetnsPool;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_nanos() -> i64 {
    super::now_nanos()
}

/// What a test runs at each publication.
type Hook = Box<dyn Fn(&Event) + Send>;

/// Records events; remembers when each container's last STARTED and
/// EXITED were published, as the durable log does.
pub struct Recorder {
    events: watch::Sender<Vec<Event>>,
    runs: Mutex<HashMap<(String, &'static str), i64>>,
    /// Called with each event before it is recorded.
    hook: Mutex<Option<Hook>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder {
            events: watch::Sender::new(Vec::new()),
            runs: Mutex::new(HashMap::new()),
            hook: Mutex::new(None),
        })
    }

    /// A recorder that has seen `events` (a log that survived a crash).
    pub fn replaying(events: &[Event]) -> Arc<Self> {
        let r = Recorder::new();
        for ev in events {
            r.publish(ev.clone());
        }
        r
    }

    pub fn on_publish(&self, f: impl Fn(&Event) + Send + 'static) {
        *lock(&self.hook) = Some(Box::new(f));
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    pub fn count(&self, action: Action) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| e.action == action)
            .count()
    }

    /// Waits until `n` events of `action` have been published. Gives up
    /// (fails the test) after an hour of the test's paused clock, which
    /// passes at once when nothing else can happen.
    pub async fn until(&self, action: Action, n: usize) {
        let mut rx = self.events.subscribe();
        let seen = rx.wait_for(|evs| evs.iter().filter(|e| e.action == action).count() >= n);
        if tokio::time::timeout(std::time::Duration::from_secs(3600), seen)
            .await
            .is_err()
        {
            panic!("no {n} {action:?} events: {:?}", self.events());
        }
    }
}

impl EventSink for Recorder {
    fn publish(&self, ev: Event) -> u64 {
        if let Some(f) = &*lock(&self.hook) {
            f(&ev);
        }
        match ev.action {
            Action::Started => {
                lock(&self.runs).insert((ev.id.clone(), "started"), now_nanos());
            }
            Action::Exited => {
                lock(&self.runs).insert((ev.id.clone(), "exited"), now_nanos());
            }
            Action::Removed => lock(&self.runs).retain(|(id, _), _| *id != ev.id),
            _ => {}
        }
        let mut seq = 0;
        self.events.send_modify(|evs| {
            evs.push(ev);
            seq = evs.len() as u64;
        });
        seq
    }

    fn announced_since(&self, id: &str, action: Action, since: i64) -> bool {
        let key = match action {
            Action::Started => "started",
            Action::Exited => "exited",
            _ => return false,
        };
        lock(&self.runs)
            .get(&(id.to_string(), key))
            .is_some_and(|at| *at >= since)
    }
}

/// Directories whose file system the tests made "full" (see [`disk_full`]).
static FULL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes every write under `root` fail with ENOSPC (`full`), or work again.
/// Keyed on the directory, so tests running at once do not see each
/// other's full disks.
pub fn disk_full(root: &Path, full: bool) {
    let mut dirs = lock(&FULL);
    dirs.retain(|d| d != root);
    if full {
        dirs.push(root.to_path_buf());
    }
}

/// ENOSPC when `path` lies in a directory [`disk_full`] made full; called
/// where the manager writes a container's files.
pub fn disk_fault(path: &Path) -> std::io::Result<()> {
    if lock(&FULL).iter().any(|d| path.starts_with(d)) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

/// Cgroups as a set of names.
#[derive(Default)]
pub struct FakeCgroups {
    pub live: Mutex<HashSet<String>>,
    pub created: AtomicUsize,
}

impl Cgroups for FakeCgroups {
    fn version(&self) -> u32 {
        2
    }
    fn controllers(&self) -> &[String] {
        &[]
    }
    fn parent(&self) -> &str {
        "test"
    }
    fn limits_hold_unconfined(&self) -> bool {
        true
    }
    fn check(&self, _: &Limits) -> Result<(), CgroupError> {
        Ok(())
    }
    fn create(&self, id: &str, _: &Limits) -> Result<ContainerCgroup, CgroupError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        lock(&self.live).insert(id.to_string());
        Ok(ContainerCgroup {
            placement: CgroupPlacement::Unified(format!("/test/{id}")),
            oom_events: None,
        })
    }
    fn freeze(&self, _: &str) -> Result<(), CgroupError> {
        Ok(())
    }
    fn thaw(&self, _: &str) -> Result<(), CgroupError> {
        Ok(())
    }
    fn update(&self, _: &str, _: &Limits) -> Result<(), CgroupError> {
        Ok(())
    }
    fn kill(&self, _: &str) -> Result<(), CgroupError> {
        Ok(())
    }
    fn release(&self, id: &str) -> Result<(), CgroupError> {
        self.remove(id)
    }
    fn remove(&self, id: &str) -> Result<(), CgroupError> {
        lock(&self.live).remove(id);
        Ok(())
    }
    fn remove_others(&self, _: &HashSet<String>) {}
}

/// One run of a fake container process.
pub struct FakeRun {
    pub started_at: i64,
    pub signals: Mutex<Vec<i32>>,
    exit_tx: Mutex<Option<oneshot::Sender<ExitRecord>>>,
    exit_file: PathBuf,
    /// Signals that end it.
    exit_on: Vec<i32>,
}

impl FakeRun {
    /// Ends the run with `code`, as a monitor does: exit.json, then the report.
    pub fn exit(&self, code: i32) -> ExitRecord {
        let exit = ExitRecord {
            exit_code: code,
            signal: 0,
            oom_killed: false,
            finished_at_unix_nanos: now_nanos().max(self.started_at + 1),
        };
        if let Ok(json) = serde_json::to_vec(&exit) {
            let _ = std::fs::write(&self.exit_file, json);
        }
        if let Some(tx) = lock(&self.exit_tx).take() {
            let _ = tx.send(exit);
        }
        exit
    }
}

impl Process for FakeRun {
    fn signal(&self, signal: i32) -> std::io::Result<()> {
        lock(&self.signals).push(signal);
        if self.exit_on.contains(&signal) {
            self.exit(128 + signal);
        }
        Ok(())
    }
}

#[derive(Default)]
struct LauncherState {
    runs: Mutex<Vec<Arc<FakeRun>>>,
    exit_on: Mutex<Vec<i32>>,
    fail_exec: AtomicBool,
}

/// Starts fake processes.
#[derive(Default)]
pub struct FakeLauncher(Arc<LauncherState>);

impl FakeLauncher {
    pub fn runs(&self) -> Vec<Arc<FakeRun>> {
        lock(&self.0.runs).clone()
    }
    pub fn last(&self) -> Arc<FakeRun> {
        match self.runs().last() {
            Some(r) => r.clone(),
            None => panic!("nothing was launched"),
        }
    }
    /// Processes started from now on end at these signals.
    pub fn exit_on(&self, signals: &[i32]) {
        *lock(&self.0.exit_on) = signals.to_vec();
    }
}

struct FakePrepared(Arc<LauncherState>);

impl Launcher for FakeLauncher {
    fn prepare(&self, _dir: &Path) -> Result<Box<dyn Prepared>, SpawnError> {
        Ok(Box::new(FakePrepared(self.0.clone())))
    }
    fn refill(&self) {}
}

impl Prepared for FakePrepared {
    fn launch(self: Box<Self>, spec: LaunchSpec) -> BoxFuture<Result<Launched, SpawnError>> {
        let state = self.0;
        Box::pin(async move {
            if state.fail_exec.load(Ordering::SeqCst) {
                return Err(SpawnError::Exec {
                    message: "exec: no such file".into(),
                    exit_code: 127,
                });
            }
            let (tx, rx) = oneshot::channel();
            let run = Arc::new(FakeRun {
                started_at: now_nanos(),
                signals: Mutex::new(Vec::new()),
                exit_tx: Mutex::new(Some(tx)),
                exit_file: PathBuf::from(&spec.exit_path),
                exit_on: lock(&state.exit_on).clone(),
            });
            lock(&state.runs).push(run.clone());
            Ok(Launched {
                // No such process: recovery finds the monitor gone.
                pid: 0,
                monitor_pid: 0,
                started_at_unix_nanos: run.started_at,
                process: Some(run as Arc<dyn Process>),
                exit: Box::pin(async move { rx.await.ok() }),
            })
        })
    }
}

/// A manager on a state directory of its own, with fakes.
pub struct Harness {
    pub root: PathBuf,
    pub launcher: Arc<FakeLauncher>,
    pub cgroups: Arc<FakeCgroups>,
    pub events: Arc<Recorder>,
    pub mgr: Arc<Manager>,
}

impl Harness {
    /// Opens (recovers) the containers under `root`.
    pub fn open(root: &Path, events: Arc<Recorder>) -> Harness {
        let launcher = Arc::new(FakeLauncher::default());
        let cgroups = Arc::new(FakeCgroups::default());
        let deps = Deps {
            images: Arc::new(ImageStore::open(&root.join("images")).expect("image store")),
            cgroups: cgroups.clone(),
            events: events.clone(),
            launcher: launcher.clone(),
            netns: NetnsPool::start(0).expect("no netns pool"),
            networks: Arc::new(
                crate::network::user::Networks::open(
                    root.join("networks"),
                    Arc::new(crate::network::bridge::Bridge::new(
                        crate::network::bridge::Config::new("berth-test0", "10.199.0.0/16")
                            .expect("bridge config"),
                    )),
                    events.clone(),
                )
                .expect("networks"),
            ),
            flusher: Arc::new(Flusher::new()),
            janitor: Arc::new(Janitor::start(root.join("trash")).expect("janitor")),
            seccomp: Arc::new(
                crate::seccomp::Seccomp::open(&root.join("seccomp")).expect("seccomp"),
            ),
            allow_privileged: false,
            // No bridge in unit tests: the fakes launch nothing.
            default_network: crate::network::DefaultNetwork::None,
            default_storage_size: 0,
            volumes: Arc::new(
                crate::volume::VolumeStore::open(&root.join("volumes")).expect("volumes"),
            ),
        };
        let mgr = Manager::open(root.join("containers"), deps, 1 << 20).expect("open");
        Harness {
            root: root.to_path_buf(),
            launcher,
            cgroups,
            events,
            mgr,
        }
    }

    pub fn record_path(&self, id: &str) -> PathBuf {
        self.root
            .join("containers")
            .join(id)
            .join(super::entry::RECORD_FILE)
    }
}

/// Writes a created container's record and directory under `root`, as
/// Create leaves them; returns its id.
pub fn put_container(root: &Path, name: &str, policy: Policy) -> String {
    let id = format!(
        "{:0>64}",
        name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let dir = root.join("containers").join(&id);
    super::rootfs::Rootfs::under(&dir)
        .create_dirs()
        .expect("container dirs");
    std::fs::write(dir.join(super::LOG_FILE), b"").expect("log");
    let rec = Record {
        id: id.clone(),
        name: name.into(),
        spec: SpecRecord {
            image: "busybox".into(),
            name: name.into(),
            restart_policy: policy,
            ..SpecRecord::default()
        },
        image_id: "sha256:none".into(),
        layers: Vec::new(),
        layer_dirs: Vec::new(),
        state: State::Created,
        pid: 0,
        monitor_pid: 0,
        created_at: now_nanos(),
        started_at: 0,
        started_ids: None,
        exit: None,
        args: vec!["sh".into()],
        env: Vec::new(),
        cwd: "/".into(),
        user: String::new(),
        hostname: name.into(),
        network: Default::default(),
        net: None,
        connected: Vec::new(),
        stop_signal: libc::SIGTERM,
        stop_timeout: 10,
        start_count: 0,
        restart_count: 0,
        backoff: 0,
        stopped_by_user: false,
        stop_deadline: 0,
        userns: None,
        mounts: Vec::new(),
    };
    let json = serde_json::to_vec_pretty(&rec).expect("record json");
    std::fs::write(dir.join(super::entry::RECORD_FILE), json).expect("record");
    id
}
