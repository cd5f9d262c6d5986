//! Exec: another process in a running container (the process plumbing is
//! `crate::exec`'s). It takes what the container's init got (env, user,
//! working directory, capabilities, seccomp filter, namespaces, cgroup)
//! unless the exec overrides the env, user or working directory.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::bounds::{self, ARGS_MAX, ENV_MAX, USER_MAX, WORKING_DIR_MAX};
use super::error::ContainerError;
use super::exec_durable::exec_event;
use super::state::State;
use super::{secopts, Entry, Manager};
use crate::error::{Error, Result};
use crate::events::domain::{Action, ExecInfo};
use crate::exec::record::{self, ExecRecord};
use crate::exec::{self as plumbing, ExecError, Streams};
use crate::monitor::ExitRecord;

/// What an exec runs, and how (validated by [`Manager::exec`]).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command; at least one entry.
    pub argv: Vec<String>,
    /// "KEY=VALUE" laid over the container's environment.
    pub env: Vec<String>,
    /// User spec; empty: the container's.
    pub user: String,
    /// Working directory (absolute); empty: the container's.
    pub working_dir: String,
    /// A terminal.
    pub tty: bool,
    /// A pipe for stdin (without a terminal); else /dev/null.
    pub attach_stdin: bool,
    /// The terminal's initial size (rows, columns); 0: 24 by 80.
    pub terminal_size: (u16, u16),
    /// Every capability berthd holds.
    pub privileged: bool,
}

/// An exec that runs.
pub struct Exec {
    /// Its id (64 hex).
    pub id: String,
    /// Its host pid.
    pub pid: i32,
    /// Its pipes or terminal.
    pub streams: Streams,
    /// Its signals and terminal size; dropped, the process is killed.
    pub control: plumbing::Control,
    /// How it ended, once it has (the exit is recorded and announced
    /// whether or not this is awaited).
    pub exit: oneshot::Receiver<ExitRecord>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    ContainerError::invalid(field, reason).into()
}

/// Checks every field against its documented limit.
pub fn check(o: &ExecOptions) -> Result<()> {
    if o.argv.is_empty() || o.argv[0].is_empty() {
        return Err(invalid("argv", "a command is required"));
    }
    let args = bounds::check_exec_list("argv", "argv", &o.argv, ARGS_MAX)?;
    let env = bounds::check_exec_list("env", "env", &o.env, ENV_MAX)?;
    if args + env > bounds::EXEC_BYTES_MAX {
        return Err(invalid(
            "argv",
            format!(
                "argv and env take {} bytes: at most {} are accepted",
                args + env,
                bounds::EXEC_BYTES_MAX
            ),
        ));
    }
    for e in &o.env {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(invalid(
                "env",
                format!("env entry {:?} is not KEY=VALUE", crate::error::capped(e)),
            ));
        }
    }
    bounds::check_len("user", "the user", &o.user, USER_MAX)?;
    bounds::check_no_nul("user", "the user", &o.user)?;
    bounds::check_len(
        "working_dir",
        "the working directory",
        &o.working_dir,
        WORKING_DIR_MAX,
    )?;
    bounds::check_no_nul("working_dir", "the working directory", &o.working_dir)?;
    if !o.working_dir.is_empty() && !o.working_dir.starts_with('/') {
        return Err(invalid(
            "working_dir",
            "the working directory must be absolute",
        ));
    }
    Ok(())
}

/// Whether `pidfd` is the container's init: alive now, and the pid it
/// held is a child of the container's monitor. A live process owns its pid,
/// so the parent read before the liveness check was its own; a pidfd
/// opened by pid after a restart of berthd could otherwise name a process
/// that reused the pid of an init that ended meanwhile, whose namespaces an
/// exec must never join.
pub(super) fn is_init(pidfd: &std::os::fd::OwnedFd, pid: i32, monitor_pid: i32) -> bool {
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::procinfo::parse_stat(&s))
        .map(|(_, _, ppid, _, _)| ppid);
    parent == Some(monitor_pid) && crate::sys::pidfd_send_signal(pidfd, 0).is_ok()
}

impl Manager {
    /// Starts `opts` in the running container `entry` and returns once the
    /// process runs. Announces EXEC_STARTED, and EXEC_EXITED when it ends.
    pub async fn exec(&self, entry: &Arc<Entry>, opts: ExecOptions) -> Result<Exec> {
        check(&opts)?;
        let rec = entry.snapshot();
        if rec.state != State::Running {
            return Err(ExecError::NotRunning {
                id: rec.id.clone(),
                state: rec.state.as_str(),
            }
            .into());
        }
        if opts.privileged && !self.allow_privileged {
            return Err(ContainerError::PrivilegedNotAllowed.into());
        }
        let helper = self
            .launcher
            .exec_helper()
            .ok_or_else(|| ExecError::Helper("this agent cannot start exec processes".into()))?
            .to_path_buf();
        let cgroup = self
            .cgroups
            .placement(&rec.id)
            .ok_or_else(|| ExecError::Helper("the container's cgroup is not known".into()))?;
        // The init's own pidfd, opened while it was the monitor's unreaped
        // child: never a process that reused its pid.
        let process = entry
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let init = match process.and_then(|p| p.pidfd()) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) => {
                return Err(ExecError::Io {
                    context: "duplicating the container's pidfd",
                    source: e,
                }
                .into())
            }
            // Its process has just ended.
            None => {
                return Err(ExecError::NotRunning {
                    id: rec.id.clone(),
                    state: State::Exited.as_str(),
                }
                .into())
            }
        };
        if !is_init(&init, rec.pid, rec.monitor_pid) {
            return Err(ExecError::NotRunning {
                id: rec.id.clone(),
                state: State::Exited.as_str(),
            }
            .into());
        }
        let seccomp = self
            .seccomp
            .program_file(&rec.spec.seccomp, &secopts::capability_names(&rec.spec))
            .map_err(|e| Error::internal("the container's seccomp profile", e))?
            .map(|p| crate::fsutil::utf8_path(&p))
            .transpose()
            .map_err(|e| Error::internal("the container's seccomp profile", e))?;
        let id = super::spec::new_id();
        if opts.privileged {
            tracing::warn!(id = %rec.id, exec = %id, "starting a privileged exec");
        }
        // Where the helper records the exit, so that none is lost when
        // berthd is not there to hear it.
        let records = record::dir(&entry.dir);
        let record_dir = record::ensure_dir(&records)
            .and_then(|()| crate::fsutil::utf8_path(&records))
            .map_err(|e| Error::internal("the exec records' directory", e))?;
        let launch = berth_runtime::exec::ExecLaunch {
            exec_id: id.clone(),
            container_id: rec.id.clone(),
            args: opts.argv.clone(),
            env: berth_runtime::exec::merge_env(&rec.env, &opts.env),
            user: if opts.user.is_empty() {
                rec.user.clone()
            } else {
                opts.user.clone()
            },
            cwd: if opts.working_dir.is_empty() {
                rec.cwd.clone()
            } else {
                opts.working_dir.clone()
            },
            tty: opts.tty,
            terminal_size: opts.terminal_size,
            capabilities: if opts.privileged {
                u64::MAX
            } else {
                secopts::capabilities(&rec.spec)
            },
            seccomp,
            allow_privilege_escalation: rec.spec.allow_privilege_escalation,
            strict_groups: rec.spec.strict_groups,
            cgroup,
            userns: rec.userns.is_some(),
            record_dir: Some(record_dir),
            oom_score_adj: rec.spec.oom_score_adj,
            groups: rec.spec.group_add.clone(),
        };
        bounds::check_exec_total("env", &launch.args, &launch.env)?;
        let running = plumbing::start(plumbing::Start {
            helper: &helper,
            launch,
            init,
            attach_stdin: opts.attach_stdin && !opts.tty,
        })
        .await?;

        let info = ExecInfo::new(&id, &opts.argv);
        let exec_rec = ExecRecord {
            exec_id: id.clone(),
            container_id: rec.id.clone(),
            command: info.command.clone(),
            truncated: info.truncated,
            tty: opts.tty,
            pid: running.pid,
            helper_pid: running.helper.0,
            helper_start: running.helper.1,
            started_at_unix_nanos: super::now_nanos(),
            exit: None,
            announced: false,
        };
        // Before EXEC_STARTED: a berthd that dies after announcing the
        // start finds the record and announces the exit.
        if let Err(e) = record::write(&records, &exec_rec) {
            tracing::warn!(id = %rec.id, exec = %id, "recording the exec: {e}; its exit is lost if berthd restarts before it ends");
        }
        self.events
            .publish(exec_event(&rec, Action::ExecStarted, info));
        let (tx, rx) = oneshot::channel();
        let waiting = running.exit;
        let mgr = self.me.upgrade();
        tokio::spawn(async move {
            let exit = waiting.await;
            if let Some(mgr) = mgr {
                mgr.exec_exited(&rec, records, exec_rec, exit, Some(tx));
            }
        });
        Ok(Exec {
            id,
            pid: running.pid,
            streams: running.streams,
            control: running.control,
            exit: rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(argv: &[&str]) -> ExecOptions {
        ExecOptions {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..ExecOptions::default()
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(check(&opts(&["true"])).is_ok());
        assert!(check(&opts(&[])).is_err());
        assert!(check(&opts(&[""])).is_err());
        let many: Vec<&str> = vec!["x"; ARGS_MAX + 1];
        assert!(check(&opts(&many)).is_err());
        let mut o = opts(&["true"]);
        o.env = vec!["=v".into()];
        assert!(check(&o).is_err());
        o.env = vec!["NOEQUALS".into()];
        assert!(check(&o).is_err());
        o.env = vec!["K=v".into()];
        assert!(check(&o).is_ok());
        o.working_dir = "relative".into();
        assert!(check(&o).is_err());
        o.working_dir = "/".repeat(WORKING_DIR_MAX + 1);
        assert!(check(&o).is_err());
        o.working_dir = "/tmp".into();
        o.user = "u".repeat(USER_MAX + 1);
        assert!(check(&o).is_err());
        o.user = "a\0b".into();
        assert!(check(&o).is_err());
        let big = "x".repeat(100 * 1024);
        let o = ExecOptions {
            argv: vec![big.clone(); 11],
            ..ExecOptions::default()
        };
        assert!(check(&o).is_err(), "over 1 MiB in all");
    }
}
