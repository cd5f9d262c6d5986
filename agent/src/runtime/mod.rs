//! Starting container processes.
//!
//! berthd never forks its multi-threaded runtime. To start a container it
//! execs itself as a *monitor* (`berthd __monitor <dir>`), a small
//! single-threaded process that detaches from berthd, creates the container's
//! init process in new namespaces, keeps its log pipes, reaps it and records
//! how it ended. The container is the monitor's child, not berthd's, so it
//! survives a restart of berthd.
//!
//! berthd and its monitor talk over the monitor's stdout: one JSON line when
//! the container runs (or could not be started), one when it has exited.

pub mod caps;
pub mod init;
pub mod launch;
pub mod monitor;
pub mod user;

use std::path::Path;
use std::process::Stdio;

use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

pub use launch::{ExitRecord, LaunchSpec, MonitorReport};

/// The argument that switches `berthd` into monitor mode.
pub const MONITOR_ARG: &str = "__monitor";

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

/// Starts the monitor for the container whose launch spec is in `dir` and
/// waits until the container's process runs.
pub async fn spawn(dir: &Path) -> Result<Running, SpawnError> {
    let exe = std::env::current_exe()
        .map_err(|e| SpawnError::Monitor(format!("cannot find berthd's own binary: {e}")))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(launch::MONITOR_LOG))
        .map_err(|e| SpawnError::Monitor(format!("cannot open monitor log: {e}")))?;
    let mut child = tokio::process::Command::new(exe)
        .arg(MONITOR_ARG)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .env_clear()
        .spawn()
        .map_err(|e| SpawnError::Monitor(format!("cannot execute monitor: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SpawnError::Monitor("monitor has no stdout".into()))?;
    // The process we spawned only forks the real monitor and exits; reap it.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let mut reports = BufReader::new(stdout).lines();
    let line = reports
        .next_line()
        .await
        .map_err(|e| SpawnError::Monitor(format!("reading monitor report: {e}")))?
        .ok_or_else(|| {
            SpawnError::Monitor(format!(
                "monitor exited without a report (see {})",
                dir.join(launch::MONITOR_LOG).display()
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
