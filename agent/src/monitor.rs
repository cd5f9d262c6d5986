//! berthd's side of the container monitors.
//!
//! berthd never forks its multi-threaded runtime. Each start of a container
//! runs one `berth-monitor` process (see the `berth_runtime` crate), a small
//! static binary that berthd carries inside its own (built by
//! `agent/build.rs`) and installs in its state directory at start. The
//! monitor creates the container's init and outlives berthd.
//!
//! berthd hands the monitor its [`LaunchSpec`] on stdin and reads its reports
//! from its stdout: one JSON line when the container runs (or could not be
//! started), one when it has exited.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::ChildStdout;

pub use berth_runtime::launch::{
    ExitRecord, LaunchSpec, MonitorReport, RunningRecord, EXIT_FILE, MONITOR_ARG, MONITOR_LOG,
    RUNNING_FILE,
};

/// The monitor binary, as built for this berthd.
static MONITOR_BINARY: &[u8] = include_bytes!(env!("BERTH_MONITOR_BIN"));
/// Its SHA-256, hex.
const MONITOR_SHA256: &str = env!("BERTH_MONITOR_SHA256");

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The monitor could not be executed or talked nonsense.
    #[error("container monitor: {0}")]
    Monitor(String),
    /// The container's process could not be set up or exec'd; `exit_code`
    /// is what a shell would report (127 not found, 126 not executable).
    #[error("{message}")]
    Exec {
        /// Human-readable reason.
        message: String,
        /// Shell-style exit code.
        exit_code: i32,
    },
}

/// A container whose process is running under its monitor.
pub struct Running {
    /// Host pid of the container's init process.
    pub pid: Pid,
    /// Host pid of the monitor.
    pub monitor_pid: Pid,
    /// Unix nanos of the start.
    pub started_at_unix_nanos: i64,
    /// The rest of the monitor's report stream: yields the exit record.
    pub reports: Lines<BufReader<ChildStdout>>,
}

/// A container process, as far as berthd acts on it.
pub trait Process: Send + Sync {
    /// Sends `signal` to the container's init. An error of kind ESRCH
    /// means it has just exited (its exit is on the way).
    fn signal(&self, signal: i32) -> std::io::Result<()>;

    /// A pidfd of the container's init of its own, for an exec to enter
    /// its namespaces by; `None` where there is none (fakes).
    fn pidfd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        None
    }
}

/// The real container process: its init, by pidfd (never a reused pid).
pub struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid`.
    pub fn open(pid: Pid) -> std::io::Result<Self> {
        crate::sys::pidfd_open(pid).map(Pidfd)
    }
}

impl Process for Pidfd {
    fn signal(&self, signal: i32) -> std::io::Result<()> {
        crate::sys::pidfd_send_signal(&self.0, signal)
    }

    fn pidfd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        Some(self.0.try_clone())
    }
}

/// A boxed future that can move between threads.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A container process that started, as a [`Launcher`] reports it.
pub struct Launched {
    /// Host pid of the container's init.
    pub pid: i32,
    /// Host pid of its monitor.
    pub monitor_pid: i32,
    /// Unix nanos of the start.
    pub started_at_unix_nanos: i64,
    /// The process, to signal; `None` when it is already gone.
    pub process: Option<std::sync::Arc<dyn Process>>,
    /// Resolves with its exit; `None` when the monitor went away without
    /// reporting one (the exit file may then say).
    pub exit: BoxFuture<Option<ExitRecord>>,
}

/// Starts container processes: berthd's is [`Monitors`]; tests use fakes.
pub trait Launcher: Send + Sync {
    /// Gets a monitor ready for the container in `dir` (it waits for its
    /// launch spec while the caller makes the cgroup).
    fn prepare(&self, dir: &Path) -> Result<Box<dyn Prepared>, SpawnError>;

    /// Replaces what a start used, off the start's path.
    fn refill(&self);

    /// The binary that starts exec processes (`berth-monitor __exec`);
    /// `None` where there is none (fakes).
    fn exec_helper(&self) -> Option<&Path> {
        None
    }
}

/// A monitor that is ready and waits for its launch spec.
pub trait Prepared: Send {
    /// Hands over `spec` and resolves once the process runs (or could not
    /// be started).
    fn launch(self: Box<Self>, spec: LaunchSpec) -> BoxFuture<Result<Launched, SpawnError>>;
}

impl Launcher for Monitors {
    fn prepare(&self, dir: &Path) -> Result<Box<dyn Prepared>, SpawnError> {
        Ok(Box::new(self.start(dir)?))
    }

    fn refill(&self) {
        Monitors::refill(self)
    }

    fn exec_helper(&self) -> Option<&Path> {
        Some(&self.exe)
    }
}

impl Prepared for Starting {
    fn launch(self: Box<Self>, spec: LaunchSpec) -> BoxFuture<Result<Launched, SpawnError>> {
        Box::pin(async move {
            let mut running = Starting::launch(*self, &spec).await?;
            let process = match Pidfd::open(running.pid) {
                Ok(fd) => Some(std::sync::Arc::new(fd) as std::sync::Arc<dyn Process>),
                // Already exited and reaped: the exit report follows.
                Err(e) => {
                    tracing::debug!(id = %spec.id, "pidfd_open: {e}");
                    None
                }
            };
            Ok(Launched {
                pid: running.pid.as_raw(),
                monitor_pid: running.monitor_pid.as_raw(),
                started_at_unix_nanos: running.started_at_unix_nanos,
                process,
                exit: Box::pin(async move { wait_exit(&mut running.reports).await }),
            })
        })
    }
}

/// Starts monitors from the installed monitor binary.
///
/// It keeps a few spare monitors started ahead of time, each already
/// exec'd, initialised and waiting for a launch spec, so a container start
/// does not wait for a process to be spawned and for glibc to start up
/// (about 1 ms here). A start takes a spare, or spawns a monitor when none
/// is ready; [`Monitors::refill`] replaces what was taken, off the start's
/// path.
#[derive(Clone)]
pub struct Monitors {
    exe: PathBuf,
    spares: Arc<Spares>,
}

struct Spares {
    want: usize,
    ready: Mutex<Vec<Starting>>,
    refilling: AtomicBool,
}

impl Spares {
    fn full(&self) -> bool {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len() >= self.want
    }
}

impl std::fmt::Debug for Monitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitors")
            .field("exe", &self.exe)
            .field("spares", &self.spares.want)
            .finish()
    }
}

impl Monitors {
    /// Installs the embedded monitor binary as `<state_dir>/bin/berth-monitor`,
    /// unless exactly that binary is there already, and keeps up to `spares`
    /// monitors ready (see [`Monitors::refill`]). Monitors still running
    /// from an older binary keep it: the new one replaces it by rename.
    pub fn install(state_dir: &Path, spares: usize) -> std::io::Result<Self> {
        let dir = state_dir.join("bin");
        let exe = dir.join("berth-monitor");
        let spares = Arc::new(Spares {
            want: spares,
            ready: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
        });
        if file_sha256(&exe).is_ok_and(|d| d == MONITOR_SHA256) {
            return Ok(Monitors { exe, spares });
        }
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(".berth-monitor.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MONITOR_BINARY)?;
        // Read once; not worth 1.3 MB of berthd's resident memory.
        crate::sys::forget_resident_static(MONITOR_BINARY);
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &exe)?;
        Ok(Monitors { exe, spares })
    }

    /// The installed monitor binary.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// A monitor for the container in `dir`: a spare if one is ready, else
    /// a new one. It waits for its launch spec ([`Starting::launch`]), so
    /// the caller prepares the rest of the start (the cgroup) meanwhile.
    pub fn start(&self, dir: &Path) -> Result<Starting, SpawnError> {
        loop {
            let spare = self
                .spares
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let Some(mut spare) = spare else {
                return self.spawn(Some(dir));
            };
            // One that died waiting (killed by someone) is no use.
            let alive = spare
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if alive {
                spare.dir = dir.to_path_buf();
                return Ok(spare);
            }
        }
    }

    /// Starts spare monitors in the background until `spares` are ready.
    /// Call after a start has taken one, once the start is done, so the
    /// spawn does not compete with it.
    pub fn refill(&self) {
        let spares = self.spares.clone();
        // Most calls find the pool full (or a refill running): no task then.
        if spares.full() || spares.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            while !spares.full() {
                match this.spawn(None) {
                    Ok(s) => spares
                        .ready
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(s),
                    Err(e) => {
                        tracing::warn!("starting a spare container monitor: {e}");
                        break;
                    }
                }
            }
            spares.refilling.store(false, Ordering::Release);
        });
    }

    /// Spawns a monitor: for the container in `dir`, or a spare (`None`),
    /// which learns its container from the launch spec.
    fn spawn(&self, dir: Option<&Path>) -> Result<Starting, SpawnError> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg(MONITOR_ARG);
        if let Some(dir) = dir {
            cmd.arg(dir);
        }
        // The monitor creates its log in the container directory with its
        // first diagnostic; a run without one leaves no empty file.
        cmd.stderr(Stdio::null());
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env_clear()
            .spawn()
            .map_err(|e| {
                SpawnError::Monitor(format!("cannot execute {}: {e}", self.exe.display()))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.start_kill();
            reap(child);
            return Err(SpawnError::Monitor("monitor has no stdin or stdout".into()));
        };
        Ok(Starting {
            child: Some(child),
            pipes: Some((stdin, stdout)),
            dir: dir.map(Path::to_path_buf).unwrap_or_default(),
        })
    }
}

/// A monitor that waits for its launch spec. Dropped without
/// [`Starting::launch`], it is killed.
pub struct Starting {
    child: Option<tokio::process::Child>,
    pipes: Option<(tokio::process::ChildStdin, ChildStdout)>,
    dir: PathBuf,
}

impl Starting {
    /// Hands the monitor `spec` and waits until the container's process
    /// runs (or could not be started).
    pub async fn launch(mut self, spec: &LaunchSpec) -> Result<Running, SpawnError> {
        let input = serde_json::to_vec(spec)
            .map_err(|e| SpawnError::Monitor(format!("encoding the launch spec: {e}")))?;
        let monitor_pid = self
            .child
            .as_ref()
            .and_then(|c| c.id())
            .map(|p| p as i32)
            .unwrap_or(0);
        let Some((mut stdin, stdout)) = self.pipes.take() else {
            return Err(SpawnError::Monitor("monitor pipes already used".into()));
        };
        // From here on the monitor is on its own: it is this process's
        // child until it exits (or berthd does, when init adopts it).
        if let Some(child) = self.child.take() {
            reap(child);
        }
        stdin
            .write_all(&input)
            .await
            .map_err(|e| SpawnError::Monitor(format!("handing over the launch spec: {e}")))?;
        drop(stdin);
        let mut reports = BufReader::new(stdout).lines();
        let line = reports
            .next_line()
            .await
            .map_err(|e| SpawnError::Monitor(format!("reading monitor report: {e}")))?
            .ok_or_else(|| {
                SpawnError::Monitor(format!(
                    "monitor {monitor_pid} exited without a report (see {})",
                    self.dir.join(MONITOR_LOG).display()
                ))
            })?;
        match serde_json::from_str::<MonitorReport>(&line) {
            Ok(MonitorReport::Started {
                pid,
                monitor_pid,
                started_at_unix_nanos,
            }) => Ok(Running {
                pid: Pid::from_raw(pid),
                monitor_pid: Pid::from_raw(monitor_pid),
                started_at_unix_nanos,
                reports,
            }),
            Ok(MonitorReport::Failed { message, exit_code }) => {
                Err(SpawnError::Exec { message, exit_code })
            }
            Ok(MonitorReport::Exited(_)) => Err(SpawnError::Monitor(
                "monitor reported an exit before a start".into(),
            )),
            Err(e) => Err(SpawnError::Monitor(format!(
                "bad monitor report {line:?}: {e}"
            ))),
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            reap(child);
        }
    }
}

fn reap(mut child: tokio::process::Child) {
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Waits for the exit record that follows a successful start. `None` when the
/// monitor died without reporting (the caller then falls back to the exit file).
pub async fn wait_exit(reports: &mut Lines<BufReader<ChildStdout>>) -> Option<ExitRecord> {
    while let Ok(Some(line)) = reports.next_line().await {
        if let Ok(MonitorReport::Exited(rec)) = serde_json::from_str(&line) {
            return Some(rec);
        }
    }
    None
}

/// Whether `pid` is still the monitor of the container in `dir` (and not a
/// process that reused its pid): a monitor, by its command line, whose
/// working directory is `dir`. Monitors started by a berthd before spare
/// monitors existed did not change directory but name `dir` on their
/// command line; they may still run after an upgrade.
pub fn is_monitor_of(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    if !args.contains(&MONITOR_ARG.as_bytes()) {
        return false;
    }
    if args.contains(&dir.as_os_str().as_encoded_bytes()) {
        return true;
    }
    match (
        std::fs::metadata(format!("/proc/{pid}/cwd")),
        std::fs::metadata(dir),
    ) {
        (Ok(cwd), Ok(dir)) => cwd.dev() == dir.dev() && cwd.ino() == dir.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitors_of(dir: &Path) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| is_monitor_of(pid, dir))
            .collect()
    }

    /// Polls `cond` every 10 ms for up to 5 s; whether it became true.
    async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if cond() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        cond()
    }

    #[test]
    fn the_embedded_monitor_reads_back_intact_after_its_pages_are_dropped() {
        // The first install drops the blob's pages from this process; the
        // second must fault the same bytes back in from the executable.
        for _ in 0..2 {
            let state = tempfile::tempdir().unwrap();
            let monitors = Monitors::install(state.path(), 0).unwrap();
            assert_eq!(file_sha256(monitors.exe()).unwrap(), MONITOR_SHA256);
        }
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(MONITOR_BINARY)),
            MONITOR_SHA256
        );
    }

    #[tokio::test]
    async fn a_monitor_never_given_its_spec_is_killed() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("container");
        std::fs::create_dir(&dir).unwrap();
        let monitors = Monitors::install(state.path(), 0).unwrap();
        let starting = monitors.start(&dir).unwrap();
        // spawn returns once the child is in execve, not done with it.
        eventually(|| !monitors_of(&dir).is_empty()).await;
        assert_eq!(monitors_of(&dir).len(), 1, "the monitor waits for its spec");
        // Still there a moment later: it really waits.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(monitors_of(&dir).len(), 1, "the monitor waits for its spec");
        drop(starting);
        assert!(
            eventually(|| monitors_of(&dir).is_empty()).await,
            "an abandoned monitor is still running: {:?}",
            monitors_of(&dir)
        );
    }

    fn alive(pid: u32) -> bool {
        // A zombie has an empty command line.
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    }

    #[tokio::test]
    async fn spares_are_made_ahead_taken_by_a_start_and_killed_with_the_pool() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("container");
        std::fs::create_dir(&dir).unwrap();
        let monitors = Monitors::install(state.path(), 2).unwrap();
        monitors.refill();
        let ready = || monitors.spares.ready.lock().unwrap().len();
        eventually(|| ready() == 2).await;
        assert_eq!(ready(), 2, "two spares are started");
        let pid_of = |s: &Starting| s.child.as_ref().and_then(|c| c.id()).unwrap();
        let spares: Vec<u32> = monitors
            .spares
            .ready
            .lock()
            .unwrap()
            .iter()
            .map(pid_of)
            .collect();
        let taken = monitors.start(&dir).unwrap();
        assert!(spares.contains(&pid_of(&taken)), "a start takes a spare");
        assert_eq!(taken.dir, dir);
        assert_eq!(ready(), 1);
        drop(taken);
        drop(monitors);
        assert!(
            eventually(|| !spares.iter().any(|&p| alive(p))).await,
            "spares outlived their pool: {spares:?}"
        );
    }

    #[test]
    fn install_puts_the_embedded_binary_in_place_once() {
        let state = tempfile::tempdir().unwrap();
        let m = Monitors::install(state.path(), 0).unwrap();
        assert_eq!(m.exe(), state.path().join("bin/berth-monitor"));
        let meta = std::fs::metadata(m.exe()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(file_sha256(m.exe()).unwrap(), MONITOR_SHA256);
        // Statically linked: an ELF without a program interpreter.
        let elf = std::fs::read(m.exe()).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        const PT_INTERP: u32 = 3;
        assert!((0..phnum).all(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) != PT_INTERP
        }));

        // The same binary is left alone; anything else is replaced.
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(m.exe());
        Monitors::install(state.path(), 0).unwrap();
        assert_eq!(inode(m.exe()), before);
        std::fs::write(m.exe(), b"not the monitor").unwrap();
        Monitors::install(state.path(), 0).unwrap();
        assert_eq!(file_sha256(m.exe()).unwrap(), MONITOR_SHA256);
    }
}
