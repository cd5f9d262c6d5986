//! Start: a created or exited container's process, under a monitor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::entry::{Announce, Detail, Entry, Life};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::rootfs::Rootfs;
use super::state::Op;
use super::{lost_exit, now_nanos, read_exit, secopts, Manager};
use crate::cgroup::Limits;
use crate::events::domain::Action;
use crate::monitor::{self, ExitRecord, LaunchSpec, SpawnError};

impl Manager {
    /// Starts a created or exited container (through the API) and returns
    /// once it runs. Resets the restart policy's counters.
    pub async fn start(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        self.start_locked(entry, true, None).await
    }

    /// Starts the container for a client that attaches as soon as it runs
    /// ([`Attach`]): its monitor holds the output until the client
    /// connects, so the client sees all of it.
    pub async fn start_attached(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        attach: Attach,
    ) -> Result<Record> {
        let _ops = entry.ops.lock().await;
        self.start_locked(entry, true, Some(attach)).await
    }

    /// Starts the container; the caller holds its `ops` lock.
    pub(super) async fn start_locked(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        by_user: bool,
        attach: Option<Attach>,
    ) -> Result<Record> {
        // A Remove that got the ops lock first has taken the container
        // away: a start now would run a process for a container that no
        // longer exists, in a directory already in the trash.
        if !self.exists(entry) {
            return Err(ContainerError::NotFound {
                key: entry.id.clone(),
            });
        }
        let rec = entry.snapshot();
        rec.state
            .apply(Op::Start)
            .map_err(|e| ContainerError::transition(&rec.id, e))?;
        if by_user {
            entry.call_off_restart();
        }
        // Checked again at each start, not only at Create: a container
        // created while berthd allowed privileged ones must not come back
        // privileged (by hand or by its restart policy) once the operator
        // restarted berthd without --allow-privileged.
        if rec.spec.privileged && !self.allow_privileged {
            return Err(ContainerError::PrivilegedNotAllowed);
        }
        // Host devices as they are now (they may have changed since Create).
        let (devices, device_access) = secopts::devices(&rec.spec)?;
        if rec.spec.privileged {
            tracing::warn!(id = %rec.id, name = %rec.name, "starting a privileged container");
        }
        // Before anything is made: joining a container that is not
        // running fails here, and changes nothing.
        let netns = self.network_namespace(&rec)?;
        super::create::check_net_sysctls_off_host(&rec.spec, &netns)?;
        // On the bridge: veth, address and published ports, before the
        // init runs; taken down again (the ports by the guard, the veth
        // with the namespace) if this start fails.
        let (bound, unpublish) = self.connect_bridge(&rec, &netns).await?.unzip();
        // The previous run's cgroup must be gone before this run makes it anew.
        drop(entry.teardown.lock().await);
        // On a CNI network: the list's ADD, after the previous run's DEL
        // (in its teardown); DEL'd again unless this start succeeds.
        let cni = self.connect_cni(entry, &rec, &netns).await?;
        let launch_rec = cni.as_ref().map(|c| c.for_launch(&rec));
        // The monitor execs and initialises while the cgroup is made; it
        // waits for the launch spec (and is killed if none comes).
        let starting = self
            .launcher
            .prepare(&entry.dir)
            .map_err(ContainerError::Launch)?;
        let cg = self
            .cgroups
            .create(
                &rec.id,
                &Limits {
                    devices: device_access,
                    ..Limits::from(&rec.spec.limits)
                },
            )
            .map_err(|source| ContainerError::Cgroup {
                context: "creating the cgroup",
                source,
            })?;
        let cleanup = |mgr: &Manager| {
            if let Err(e) = mgr.cgroups.remove(&rec.id) {
                tracing::warn!(id = %rec.id, "{e}");
            }
        };
        // `netns` is held until the monitor has reported: the init opens it
        // by path.
        let launch_rec = launch_rec.as_ref().unwrap_or(&rec);
        let launch = match self.launch_spec(entry, launch_rec, &cg, &netns, devices, attach) {
            Ok(spec) => spec,
            Err(e) => {
                cleanup(self);
                return Err(ContainerError::io("the container's paths", e));
            }
        };
        // What a previous run left must not be taken for this run's.
        if let Err(e) = std::fs::remove_file(entry.dir.join(monitor::RUNNING_FILE)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                cleanup(self);
                return Err(ContainerError::io(
                    format_args!("removing {}", monitor::RUNNING_FILE),
                    e,
                ));
            }
        }
        // Room for the exit record, taken now: the monitor writes the exit
        // into it in place, which a full disk cannot refuse, so the exit
        // code survives a full disk and a restart of berthd. A disk too full
        // for this refuses the start before anything runs.
        if let Err(e) = reserve_exit_file(&entry.dir.join(monitor::EXIT_FILE)) {
            cleanup(self);
            return Err(ContainerError::io(
                format_args!("reserving room for {}", monitor::EXIT_FILE),
                e,
            ));
        }
        let exit_file = PathBuf::from(&launch.exit_path);
        let spawned = starting.launch(launch).await;
        drop(netns);
        // Replace the monitor this start used, now that it is done with it.
        self.launcher.refill();
        match spawned {
            Ok(running) => {
                if let Some(guard) = unpublish {
                    guard.disarm();
                }
                if let Some(guard) = cni {
                    guard.disarm();
                }
                entry.set_process(running.process);
                entry.life.send_replace(Life::Pending);
                // The init has exec'd: its identity is the user spec's.
                let ids = super::ids::of_started(&rec.spec, running.pid);
                let saved = self.commit(
                    entry,
                    Op::Start,
                    |r| {
                        r.pid = running.pid;
                        r.monitor_pid = running.monitor_pid;
                        r.started_at = running.started_at_unix_nanos;
                        r.started_ids = ids;
                        r.start_count += 1;
                        r.stop_deadline = 0;
                        if let (Some(net), Some(ports)) = (r.net.as_mut(), bound) {
                            net.ports = ports;
                        }
                        if by_user {
                            r.stopped_by_user = false;
                            r.restart_count = 0;
                            r.backoff = 0;
                        }
                    },
                    Announce::After(Action::Started, Detail::default()),
                );
                // The container runs whatever the disk says: it stays
                // watched, and a restarted berthd adopts it from the
                // monitor's running.json.
                let started = saved.unwrap_or_else(|e| {
                    tracing::error!(id = %rec.id, "{e}");
                    entry.snapshot()
                });
                let mgr = self.clone();
                let watched = entry.clone();
                let reported = running.exit;
                tokio::spawn(async move {
                    let exit = match reported.await {
                        Some(x) => x,
                        None => read_exit(&exit_file).unwrap_or_else(lost_exit),
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
                let detail = Detail {
                    exit: Some(exit),
                    ..Detail::default()
                };
                // Recorded in memory and announced even when the record
                // cannot be saved: Wait and auto-remove must see the exit.
                let rec = match self.commit(
                    entry,
                    Op::ExecFailed,
                    |r| r.exit = Some(exit),
                    Announce::After(Action::Exited, detail),
                ) {
                    Ok(rec) => rec,
                    Err(e @ ContainerError::Io { .. }) => {
                        tracing::error!(id = %entry.id, "{e}");
                        entry.snapshot()
                    }
                    Err(e) => return Err(e),
                };
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
        netns: &crate::network::Netns,
        devices: Vec<berth_runtime::launch::DeviceNode>,
        attach: Option<Attach>,
    ) -> std::io::Result<LaunchSpec> {
        let path = |p: &Path| crate::fsutil::utf8_path(p);
        let seccomp = self
            .seccomp
            .program_file(&rec.spec.seccomp, &secopts::capability_names(&rec.spec))
            .map_err(std::io::Error::other)?;
        let log_file = rec.spec.log_file(&entry.dir);
        Ok(LaunchSpec {
            id: rec.id.clone(),
            dir: path(&entry.dir)?,
            rootfs: Rootfs::under(&entry.dir).launch(&rec.layer_dirs)?,
            args: rec.args.clone(),
            env: rec.env.clone(),
            cwd: rec.cwd.clone(),
            user: rec.user.clone(),
            hostname: rec.hostname.clone(),
            netns: netns.path(),
            host_network: netns.is_host(),
            // A pod's container enters the pod's pinned namespaces.
            ipcns: match &rec.spec.pod {
                Some(p) if p.host_ipc => None,
                _ => pod_ns(rec, "ipc")?,
            },
            utsns: pod_ns(rec, "uts")?,
            pidns: match &rec.spec.pod {
                Some(p) if p.share_pid => pod_ns(rec, "pid")?,
                _ => None,
            },
            resolv_conf: Some(
                match rec.spec.pod.as_ref().and_then(|p| p.resolv_conf.clone()) {
                    Some(pods) => pods,
                    None => crate::network::resolv::for_container(&rec.network, &rec.spec.dns),
                },
            ),
            hosts_extra: self.hosts_lines(rec),
            capabilities: secopts::capabilities(&rec.spec),
            read_only_rootfs: rec.spec.read_only_rootfs,
            allow_privilege_escalation: rec.spec.allow_privilege_escalation,
            strict_groups: rec.spec.strict_groups,
            privileged: rec.spec.privileged,
            devices,
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
            log_path: path(&log_file)?,
            log_max_bytes: self.log_max_bytes,
            // kubelet's log (a CRI container's), not berth's own.
            log_group_readable: log_file != entry.dir.join(super::LOG_FILE),
            exit_path: path(&entry.dir.join(monitor::EXIT_FILE))?,
            seccomp: seccomp.map(|p| path(&p)).transpose()?,
            userns: rec.userns,
            mounts: rec.mounts.iter().map(|m| m.launch()).collect(),
            open_stdin: rec.spec.open_stdin,
            tty: rec.spec.tty,
            terminal_size: attach.map_or((0, 0), |a| a.terminal_size),
            // Only a monitor that serves the attach socket holds output.
            await_attach: attach.is_some() && (rec.spec.open_stdin || rec.spec.tty),
            oom_score_adj: rec.spec.oom_score_adj,
            sysctls: rec
                .spec
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            groups: rec.spec.group_add.clone(),
            masked_paths: rec.spec.masked_paths.clone(),
            readonly_paths: rec.spec.readonly_paths.clone(),
            host_ipc: rec.spec.pod.as_ref().is_some_and(|p| p.host_ipc),
            host_pid: rec.spec.pod.as_ref().is_some_and(|p| p.host_pid),
        })
    }
}

/// The path of `rec`'s pod's pinned namespace `kind`, for a pod's
/// container; checked pinned now, so a pod removed meanwhile fails the
/// start clearly instead of joining an empty file.
fn pod_ns(rec: &Record, kind: &str) -> std::io::Result<Option<String>> {
    let Some(pod) = &rec.spec.pod else {
        return Ok(None);
    };
    let path = pod.ns_dir.join(kind);
    if !crate::sys::pin::is_pinned(&path) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the {kind} namespace of pod {} is gone", pod.id),
        ));
    }
    crate::fsutil::utf8_path(&path).map(Some)
}

/// A client that attaches to a start as soon as the container runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attach {
    /// The terminal's first size (rows, columns); (0, 0) for 24x80.
    pub terminal_size: (u16, u16),
}

/// Bytes kept for a run's exit record: its JSON takes about 110.
pub(super) const EXIT_RESERVE: usize = 512;

/// Makes `path` a file of [`EXIT_RESERVE`] spaces (which reads as no exit
/// record), its blocks allocated for the monitor to overwrite in place.
fn reserve_exit_file(path: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    super::testkit::disk_fault(path)?;
    let f = std::fs::File::create(path)?;
    let written = std::io::Write::write_all(&mut &f, &[b' '; EXIT_RESERVE]);
    if written.is_err() {
        // A short reserve would be taken for a whole one.
        let _ = std::fs::remove_file(path);
    }
    written
}
