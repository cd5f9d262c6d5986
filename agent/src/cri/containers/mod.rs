//! A pod's containers through the CRI: berth containers that join the
//! pod's namespaces, created, started, stopped and removed by berth's one
//! container manager, so they share its records, event log, restarts of
//! berthd and `berthctl ps`.

pub mod config;
pub mod view;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use crate::container::record::PodJoin;
use crate::container::{Entry, ExecOptions, Manager};
use crate::cri::api_file::v1 as cri;
use crate::cri::pods::Pods;
use crate::error::capped;
use crate::exec::Streams;

/// The most output of each stream an ExecSync returns (containerd's cap).
pub const EXEC_SYNC_OUTPUT_MAX: usize = 16 * 1024 * 1024;

fn status(e: impl Into<crate::error::Error>) -> Status {
    e.into().into()
}

/// A pod container of this berthd, by id or unique id prefix. Containers
/// of berth's own API are not found here, so neither front end touches the
/// other's.
pub fn get(mgr: &Manager, id: &str) -> Result<Arc<Entry>, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("container_id is required"));
    }
    let entry = mgr.get(id).map_err(status)?;
    if entry.lock_record().spec.pod.is_none() {
        return Err(Status::not_found(format!(
            "no such CRI container: {} (it is one of berth's own API)",
            capped(id)
        )));
    }
    Ok(entry)
}

/// Makes the log file kubelet reads at the pod container's `log_path`
/// (mode 0640, as containerd's) if it is not there, with its directory,
/// so that it exists when CreateContainer and ReopenContainerLog answer;
/// the monitor appends to it. A symlink there is refused (ELOOP).
///
/// A container made by a berthd from before logs were written in place
/// (`log_in_place` false) has its monitor write berth's own log file: for
/// it the symlink to that file is made again instead, as that berthd did.
fn make_log(entry: &Entry, pod: Option<&PodJoin>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(pod) = pod.filter(|p| !p.log_path.is_empty()) else {
        return Ok(());
    };
    let path = Path::new(&pod.log_path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !pod.log_in_place {
        let target = entry.dir.join(crate::container::LOG_FILE);
        unlink_legacy_link(entry, &pod.log_path);
        return match std::os::unix::fs::symlink(target, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        };
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // 0640 whatever berthd's umask, when it is new (empty).
    if file.metadata()?.len() == 0 {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    }
    Ok(())
}

/// Removes the log symlink an earlier berthd made at `log_path`, if it is
/// still there and still points at this container's own log file.
fn unlink_legacy_link(entry: &Entry, log_path: &str) {
    let ours = entry.dir.join(crate::container::LOG_FILE);
    if std::fs::read_link(log_path).is_ok_and(|t| t == ours) {
        let _ = std::fs::remove_file(log_path);
    }
}

/// Force-removes a pod's container (and the log link of one made by an
/// earlier berthd).
pub async fn remove_entry(mgr: &Manager, entry: &Arc<Entry>) -> Result<(), Status> {
    let rec = entry.snapshot();
    match mgr.remove(entry, true).await {
        Ok(()) | Err(crate::container::ContainerError::NotFound { .. }) => {}
        Err(e) => return Err(status(e)),
    }
    // The log file itself stays: it is kubelet's to rotate and remove
    // with the pod's log directory, as with containerd.
    if let Some(p) = rec.spec.pod {
        if !p.log_path.is_empty() {
            unlink_legacy_link(entry, &p.log_path);
        }
    }
    Ok(())
}

impl Pods {
    /// CreateContainer: in a ready pod.
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String, Status> {
        let pod = self.get(pod_id)?;
        let _lock = self.lock_pod(&pod.id).await;
        let pod = self.get(&pod.id)?;
        if !pod.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let spec = config::spec_of(config, &pod, &self.ns_dir(&pod.id))?;
        let join = spec.pod.clone();
        let rec = self.mgr.create(spec).map_err(|e| match e {
            crate::container::ContainerError::NameInUse { name } => Status::already_exists(
                format!("container {:?} exists already in this pod", capped(&name)),
            ),
            e => status(e),
        })?;
        let entry = self.mgr.get(&rec.id).map_err(status)?;
        if let Err(e) = make_log(&entry, join.as_ref()) {
            let mgr = self.mgr.clone();
            let entry = entry.clone();
            tokio::spawn(async move { mgr.remove(&entry, true).await });
            return Err(Status::internal(format!(
                "making the log file {:?}: {e}",
                capped(join.as_ref().map_or("", |p| p.log_path.as_str()))
            )));
        }
        Ok(rec.id)
    }

    /// StartContainer: a created container of a ready pod (CRI
    /// containers run once: created, running, exited).
    pub async fn start_container(&self, id: &str) -> Result<(), Status> {
        let entry = get(&self.mgr, id)?;
        let pod_id = entry
            .lock_record()
            .spec
            .pod
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let _lock = self.lock_pod(&pod_id).await;
        if !self.get(&pod_id)?.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let state = entry.snapshot().state;
        if state != crate::container::state::State::Created {
            return Err(Status::failed_precondition(format!(
                "container {} is {}, not created: a CRI container starts once",
                entry.id,
                state.as_str()
            )));
        }
        let join = entry.lock_record().spec.pod.clone();
        make_log(&entry, join.as_ref())
            .map_err(|e| Status::internal(format!("making the log file: {e}")))?;
        self.mgr.start(&entry).await.map_err(status)?;
        Ok(())
    }

    /// StopContainer: the stop signal, `timeout` seconds of grace, then
    /// SIGKILL. Stopping a container that is not running is no error.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let entry = match get(&self.mgr, id) {
            Ok(e) => e,
            Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !entry.snapshot().state.is_live() {
            return Ok(());
        }
        let grace = u32::try_from(timeout.max(0)).unwrap_or(u32::MAX);
        match self.mgr.stop(entry, Some(grace)).await {
            Ok(_) | Err(crate::container::ContainerError::InvalidTransition { .. }) => Ok(()),
            Err(e) => Err(status(e)),
        }
    }

    /// UpdateContainerResources: the new limits, live when it runs. As
    /// berth's own update, a zero field keeps its value (a limit is not
    /// lifted to "none" by this call).
    pub async fn update_resources(
        &self,
        id: &str,
        linux: Option<cri::LinuxContainerResources>,
    ) -> Result<(), Status> {
        let entry = get(&self.mgr, id)?;
        let Some(linux) = linux else {
            return Ok(());
        };
        let limits = config::limits(linux)?;
        self.mgr
            .update(&entry, Some(limits), None)
            .await
            .map_err(status)?;
        Ok(())
    }

    /// RemoveContainer; one already gone is no error.
    pub async fn remove_container(&self, id: &str) -> Result<(), Status> {
        match get(&self.mgr, id) {
            Ok(entry) => remove_entry(&self.mgr, &entry).await,
            Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// ReopenContainerLog: kubelet renamed the log away to rotate it; a new
    /// file is made at its path, which the monitor takes over (see
    /// [`make_log`]).
    pub fn reopen_log(&self, id: &str) -> Result<(), Status> {
        let entry = get(&self.mgr, id)?;
        let rec = entry.snapshot();
        if !rec.state.is_live() {
            return Err(Status::failed_precondition("the container is not running"));
        }
        // The monitor sees the path name another file at its first output
        // a second or more after its last look, and writes there from then
        // on (see monitor/src/log.rs); what it wrote until then is in the
        // renamed file.
        make_log(&entry, rec.spec.pod.as_ref())
            .map_err(|e| Status::internal(format!("reopening the log: {e}")))
    }

    /// ExecSync: runs `cmd` in the container, and returns its output (each
    /// stream capped) and exit code; past `timeout` seconds (0: none) the
    /// process is killed and DEADLINE_EXCEEDED returned.
    pub async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, Status> {
        let entry = get(&self.mgr, &req.container_id)?;
        let exec = self
            .mgr
            .exec(
                &entry,
                ExecOptions {
                    argv: req.cmd,
                    ..ExecOptions::default()
                },
            )
            .await
            .map_err(Status::from)?;
        let Streams::Pipes { stdout, stderr, .. } = exec.streams else {
            return Err(Status::internal("an exec without a terminal got one"));
        };
        let control = Arc::new(exec.control);
        // A client that goes away (a cancel, its own deadline) takes the
        // command with it, as a timeout does.
        let mut guard = KillOnDrop(Some(control.clone()));
        let run = async {
            let (out, err) = tokio::join!(read_capped(&stdout), read_capped(&stderr));
            let exit = exec
                .exit
                .await
                .map_err(|_| Status::internal("the exec's exit was lost"))?;
            Ok::<_, Status>((out?, err?, exit))
        };
        let (stdout, stderr, exit) = if req.timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(req.timeout.unsigned_abs()), run).await {
                Ok(r) => r?,
                Err(_) => {
                    control.kill_now();
                    return Err(Status::deadline_exceeded(format!(
                        "the command did not end within {} s",
                        req.timeout
                    )));
                }
            }
        } else {
            run.await?
        };
        guard.0 = None;
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: if exit.signal != 0 {
                128 + exit.signal
            } else {
                exit.exit_code
            },
        })
    }
}

/// Kills an ExecSync's process when dropped armed.
struct KillOnDrop(Option<Arc<crate::exec::Control>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.kill_now();
        }
    }
}

/// Reads `io` to its end, keeping the first [`EXEC_SYNC_OUTPUT_MAX`] bytes
/// (the rest is read and dropped, so the process is never blocked).
async fn read_capped(io: &crate::exec::fdio::FdIo) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = io
            .read(&mut buf)
            .await
            .map_err(|e| Status::internal(format!("reading the exec's output: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        let room = EXEC_SYNC_OUTPUT_MAX.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}
