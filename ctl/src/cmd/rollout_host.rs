//! One host's part of `rollout`: start the new containers next to the old
//! ones, wait until they settle (and pass the health command), then remove
//! the old ones and give the new ones the service's names. A failure
//! removes the new containers again, so the host keeps running the old.

use std::future::Future;
use std::time::{Duration, Instant};

use berth::v1::{
    containers_client::ContainersClient, exec_client::ExecClient, Container, ContainerSpec,
    ContainerState, ExecSpec, ExecSyncRequest, InspectContainerRequest, ListContainersRequest,
    RemoveContainerRequest, RenameContainerRequest, RunContainerRequest, StopContainerRequest,
};
use tonic::transport::Channel;

use crate::ctx::missing;
use crate::error::{Error, Result};
use crate::fleet::human_duration;

/// The label naming the service a container belongs to.
pub const SERVICE_LABEL: &str = "berth.rollout";
/// The label holding the revision (a digest of the spec) it runs.
pub const REVISION_LABEL: &str = "berth.revision";
/// The label numbering the replica on its host (1..N), as `run --place`.
pub const REPLICA_LABEL: &str = "berth.replica";

/// How often a new container's state is looked at while it settles.
const POLL: Duration = Duration::from_millis(200);
/// Most bytes of a failed health command's output quoted in the error.
const QUOTED_OUTPUT: usize = 200;

/// What to roll out, the same for every host.
pub struct Plan {
    /// The service: the containers' name (NAME, or NAME-1.. NAME-N).
    pub service: String,
    /// The new containers' spec, without name and rollout labels.
    pub spec: ContainerSpec,
    /// The revision of `spec` (hex digest).
    pub revision: String,
    /// Replicas per host.
    pub replicas: u32,
    /// How long a new container must keep running.
    pub settle: Duration,
    /// A shell command that must pass in each new container.
    pub health: Option<Health>,
    /// Replace even containers of this revision.
    pub force: bool,
    /// Bound on each call to the agent.
    pub call_timeout: Option<Duration>,
}

/// `--health-cmd` and its timing.
pub struct Health {
    pub cmd: String,
    pub timeout: Duration,
    pub interval: Duration,
}

/// One step on a host, as it happens.
pub struct Progress<'a> {
    /// started, healthy, settled, removed, renamed.
    pub event: &'static str,
    /// The container's name and id.
    pub name: &'a str,
    pub id: &'a str,
    /// What to print after `HOST | `.
    pub text: String,
}

/// How a host ended, when it did not fail.
pub enum Outcome {
    /// Already running this revision: nothing done.
    Unchanged(Vec<Container>),
    /// The new containers (under their final names) and the names of the
    /// old ones removed.
    Updated {
        new: Vec<Container>,
        removed: Vec<String>,
    },
}

impl Plan {
    /// Replica `i`'s final name: NAME for one replica, NAME-i for more.
    pub fn final_name(&self, i: u32) -> String {
        if self.replicas == 1 {
            self.service.clone()
        } else {
            format!("{}-{i}", self.service)
        }
    }

    /// The name a new replica runs under until the old one is gone.
    fn temp_name(&self, i: u32) -> String {
        format!("{}.{}", self.final_name(i), self.revision)
    }

    /// True for a container of the service: labelled as one by a rollout,
    /// or named as `run --name NAME` (or `run --place`'s NAME-n) names it.
    pub fn owns(&self, c: &Container) -> bool {
        if c.labels.get(SERVICE_LABEL) == Some(&self.service) {
            return true;
        }
        match c.name.strip_prefix(self.service.as_str()) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        }
    }
}

/// Rolls the plan out on one host, reporting each step to `progress`.
pub async fn roll_host(
    plan: &Plan,
    ch: Channel,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Outcome> {
    let mut c = ContainersClient::new(ch.clone())
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let all = bounded(plan, c.list(ListContainersRequest::default()))
        .await?
        .containers;
    let ours: Vec<Container> = all.into_iter().filter(|c| plan.owns(c)).collect();
    let is_current = |x: &Container| {
        !plan.force && x.labels.get(REVISION_LABEL) == Some(&plan.revision) && running(x)
    };
    // Replicas already running this revision under their final name stay.
    let kept: Vec<(u32, Container)> = (1..=plan.replicas)
        .filter_map(|i| {
            let name = plan.final_name(i);
            ours.iter()
                .find(|x| x.name == name && is_current(x))
                .map(|x| (i, x.clone()))
        })
        .collect();
    let old: Vec<&Container> = ours
        .iter()
        .filter(|x| !kept.iter().any(|(_, k)| k.id == x.id))
        .collect();
    if kept.len() == plan.replicas as usize && old.is_empty() {
        return Ok(Outcome::Unchanged(
            kept.into_iter().map(|(_, k)| k).collect(),
        ));
    }
    // A new container an interrupted run of this rollout left behind goes
    // first: its name is the one about to be used.
    let mut old_left = Vec::new();
    for x in old {
        if x.labels.get(REVISION_LABEL) == Some(&plan.revision)
            && x.name.ends_with(&format!(".{}", plan.revision))
        {
            remove(plan, &mut c, x, true).await?;
            progress(Progress {
                event: "removed",
                name: &x.name,
                id: &x.id,
                text: format!("removed {} (left by an earlier rollout)", x.name),
            });
        } else {
            old_left.push(x);
        }
    }
    let todo: Vec<u32> = (1..=plan.replicas)
        .filter(|i| !kept.iter().any(|(k, _)| k == i))
        .collect();
    let mut started: Vec<(u32, Container)> = Vec::new();
    let verified = start_and_verify(plan, &mut c, &ch, &todo, &mut started, progress).await;
    if let Err(e) = verified {
        for (_, x) in &started {
            if remove(plan, &mut c, x, true).await.is_ok() {
                progress(Progress {
                    event: "removed",
                    name: &x.name,
                    id: &x.id,
                    text: format!("removed the new {} again", x.name),
                });
            }
        }
        return Err(e);
    }
    let mut removed = Vec::new();
    for x in old_left {
        remove(plan, &mut c, x, false).await?;
        progress(Progress {
            event: "removed",
            name: &x.name,
            id: &x.id,
            text: format!("stopped and removed the old {} ({})", x.name, short(&x.id)),
        });
        removed.push(x.name.clone());
    }
    let mut new: Vec<Container> = kept.into_iter().map(|(_, k)| k).collect();
    for (i, mut x) in started {
        let name = plan.final_name(i);
        bounded(
            plan,
            c.rename(RenameContainerRequest {
                id: x.id.clone(),
                new_name: name.clone(),
            }),
        )
        .await?;
        progress(Progress {
            event: "renamed",
            name: &name,
            id: &x.id,
            text: format!("renamed {} to {name}", x.name),
        });
        x.name = name;
        new.push(x);
    }
    Ok(Outcome::Updated { new, removed })
}

/// Starts the replicas `todo` (recording each in `started` as soon as it
/// exists, so a failure can remove it), then waits until each has settled
/// and passed the health command.
async fn start_and_verify(
    plan: &Plan,
    c: &mut ContainersClient<Channel>,
    ch: &Channel,
    todo: &[u32],
    started: &mut Vec<(u32, Container)>,
    progress: &dyn Fn(Progress<'_>),
) -> Result<()> {
    for &i in todo {
        let mut spec = plan.spec.clone();
        spec.name = plan.temp_name(i);
        spec.labels
            .insert(SERVICE_LABEL.into(), plan.service.clone());
        spec.labels
            .insert(REVISION_LABEL.into(), plan.revision.clone());
        spec.labels.insert(REPLICA_LABEL.into(), i.to_string());
        let x = bounded(plan, c.run(RunContainerRequest { spec: Some(spec) }))
            .await
            .map_err(|e| Error::Message(format!("starting {}: {e}", plan.temp_name(i))))?
            .container
            .ok_or_else(|| missing("container"))?;
        progress(Progress {
            event: "started",
            name: &x.name,
            id: &x.id,
            text: format!("started {} ({})", x.name, short(&x.id)),
        });
        started.push((i, x));
    }
    // All replicas of the host settle at once.
    let checks = started
        .iter()
        .map(|(_, x)| verify(plan, ch.clone(), x, progress));
    for r in futures_util::future::join_all(checks).await {
        r?;
    }
    Ok(())
}

/// Waits until `x` has run for the settle time without exiting or
/// restarting and (with a health command) passed it once.
async fn verify(
    plan: &Plan,
    ch: Channel,
    x: &Container,
    progress: &dyn Fn(Progress<'_>),
) -> Result<()> {
    let mut c =
        ContainersClient::new(ch.clone()).max_decoding_message_size(crate::MAX_RESPONSE_BYTES);
    let mut exec = ExecClient::new(ch).max_decoding_message_size(crate::MAX_RESPONSE_BYTES);
    let begin = Instant::now();
    let mut healthy = plan.health.is_none();
    let mut next_try = begin;
    let mut last_try = String::from("not tried yet");
    loop {
        let now = bounded(
            plan,
            c.inspect(InspectContainerRequest { id: x.id.clone() }),
        )
        .await?
        .container
        .ok_or_else(|| missing("container"))?;
        if !running(&now) || now.started_at != x.started_at {
            return Err(Error::Message(format!(
                "{} {} after {}",
                x.name,
                ended(&now),
                human_duration(begin.elapsed())
            )));
        }
        if let (false, Some(h)) = (healthy, &plan.health) {
            if begin.elapsed() >= h.timeout {
                return Err(Error::Message(format!(
                    "{}: the health command did not pass within {}: {last_try}",
                    x.name,
                    human_duration(h.timeout)
                )));
            }
            if Instant::now() >= next_try {
                let left = h.timeout.saturating_sub(begin.elapsed());
                match health_try(plan, &mut exec, &x.id, h, left).await {
                    Ok(()) => {
                        healthy = true;
                        progress(Progress {
                            event: "healthy",
                            name: &x.name,
                            id: &x.id,
                            text: format!("{} passed the health command", x.name),
                        });
                    }
                    Err(why) => last_try = why,
                }
                next_try = Instant::now() + h.interval;
            }
        }
        if healthy && begin.elapsed() >= plan.settle {
            progress(Progress {
                event: "settled",
                name: &x.name,
                id: &x.id,
                text: format!(
                    "{} has been running for {}",
                    x.name,
                    human_duration(begin.elapsed())
                ),
            });
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs the health command once; Err says how it failed.
async fn health_try(
    plan: &Plan,
    exec: &mut ExecClient<Channel>,
    id: &str,
    h: &Health,
    left: Duration,
) -> std::result::Result<(), String> {
    let req = ExecSyncRequest {
        spec: Some(ExecSpec {
            container: id.to_string(),
            argv: vec!["sh".into(), "-c".into(), h.cmd.clone()],
            ..Default::default()
        }),
        stdin: vec![],
        // At least 1 ms: 0 would mean the agent's default.
        timeout_ms: u32::try_from(left.as_millis())
            .unwrap_or(u32::MAX)
            .clamp(1, 3_600_000),
        max_output_bytes: 4096,
    };
    let r = bounded(plan, exec.exec_sync(req))
        .await
        .map_err(|e| e.to_string())?;
    let code = r.exit.as_ref().map_or(-1, |x| x.exit_code);
    if code == 0 && !r.timed_out {
        return Ok(());
    }
    let out = if r.stderr.is_empty() {
        &r.stdout
    } else {
        &r.stderr
    };
    let text = String::from_utf8_lossy(out);
    let text: String = text.trim().chars().take(QUOTED_OUTPUT).collect();
    let how = if r.timed_out {
        "timed out".to_string()
    } else {
        format!("exit status {code}")
    };
    Err(if text.is_empty() {
        how
    } else {
        format!("{how}: {text}")
    })
}

/// Stops (when `force` is false, gracefully, with the container's own stop
/// signal and timeout) and removes a container.
async fn remove(
    plan: &Plan,
    c: &mut ContainersClient<Channel>,
    x: &Container,
    force: bool,
) -> Result<()> {
    if !force && running(x) {
        bounded(
            plan,
            c.stop(StopContainerRequest {
                id: x.id.clone(),
                timeout_seconds: None,
            }),
        )
        .await
        .map_err(|e| Error::Message(format!("stopping the old {}: {e}", x.name)))?;
    }
    bounded(
        plan,
        c.remove(RemoveContainerRequest {
            id: x.id.clone(),
            force: true,
            remove_volumes: false,
        }),
    )
    .await
    .map_err(|e| Error::Message(format!("removing {}: {e}", x.name)))?;
    Ok(())
}

/// One call to the agent, within the per-call bound.
async fn bounded<T>(
    plan: &Plan,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let r = match plan.call_timeout {
        Some(t) => tokio::time::timeout(t, call).await.map_err(|_| {
            Error::Message(format!(
                "no answer within {} (--host-timeout)",
                human_duration(t)
            ))
        })?,
        None => call.await,
    };
    Ok(r?.into_inner())
}

fn running(x: &Container) -> bool {
    x.state == ContainerState::Running as i32
}

/// How a container that should be running is not.
fn ended(x: &Container) -> String {
    match (ContainerState::try_from(x.state), &x.exit) {
        (Ok(ContainerState::Restarting), _) => "is restarting".into(),
        (Ok(ContainerState::Running), _) => "restarted".into(),
        (Ok(ContainerState::Paused), _) => "was paused".into(),
        (_, Some(e)) if e.oom_killed => "was killed for lack of memory".into(),
        (_, Some(e)) if e.signal != 0 => format!("was killed by signal {}", e.signal),
        (_, Some(e)) => format!("exited with status {}", e.exit_code),
        _ => "is not running".into(),
    }
}

/// The first 12 characters of an id, as `ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(replicas: u32) -> Plan {
        Plan {
            service: "api".into(),
            spec: ContainerSpec::default(),
            revision: "0123456789ab".into(),
            replicas,
            settle: Duration::ZERO,
            health: None,
            force: false,
            call_timeout: None,
        }
    }

    fn named(name: &str) -> Container {
        Container {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_service_owns_its_names_and_labels() {
        let p = plan(2);
        for n in ["api", "api-1", "api-12"] {
            assert!(p.owns(&named(n)), "{n}");
        }
        for n in ["api2", "api-", "api-x", "api-db", "apix-1", "web"] {
            assert!(!p.owns(&named(n)), "{n}");
        }
        let mut labelled = named("whatever");
        labelled.labels.insert(SERVICE_LABEL.into(), "api".into());
        assert!(p.owns(&labelled));
        labelled.labels.insert(SERVICE_LABEL.into(), "web".into());
        assert!(!p.owns(&labelled));
    }

    #[test]
    fn names_of_replicas() {
        assert_eq!(plan(1).final_name(1), "api");
        assert_eq!(plan(1).temp_name(1), "api.0123456789ab");
        assert_eq!(plan(3).final_name(2), "api-2");
        assert_eq!(plan(3).temp_name(2), "api-2.0123456789ab");
    }
}
