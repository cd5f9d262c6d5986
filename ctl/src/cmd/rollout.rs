//! `rollout`: replace a service's containers one host at a time, stopping
//! at the first host that fails (see `rollout_host` for one host's steps).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::rollout_host::{
    roll_host, short, Health, Outcome, Plan, Progress, REPLICA_LABEL, REVISION_LABEL, SERVICE_LABEL,
};
use super::spec::{env_lookup, spec_from_args};
use crate::cli::{RolloutArgs, MAX_REPLICAS_PER_HOST};
use crate::error::{Error, Result};
use crate::fleet::{human_duration, Fleet};
use crate::output::{self, print_json_line};

/// Longest service name: its containers' temporary names add `-NN.` and a
/// 12-digit revision and must stay within the agent's 128 characters.
const MAX_SERVICE_NAME: usize = 100;

/// `rollout` over the targeted hosts, in host order.
pub async fn rollout(f: &Fleet, args: RolloutArgs) -> Result<()> {
    let plan = plan(f, &args)?;
    let json = f.json();
    let mut results: Vec<(String, Outcome)> = Vec::new();
    let mut failed: Option<(String, Error)> = None;
    let mut skipped = Vec::new();
    for m in &f.members {
        if failed.is_some() {
            skipped.push(m.name.clone());
            continue;
        }
        let host = m.name.as_str();
        let progress = |p: Progress<'_>| {
            if json {
                print_json_line(&json!({
                    "host": host, "event": p.event, "name": p.name, "id": p.id,
                    "revision": plan.revision,
                }));
            } else {
                println!("{host} | {}", p.text);
            }
        };
        let ch = match connect(f, m).await {
            Ok(ch) => ch,
            Err(e) => {
                failed = Some((m.name.clone(), e));
                continue;
            }
        };
        match roll_host(&plan, ch, &progress).await {
            Ok(o) => {
                if json {
                    print_json_line(&outcome_json(host, &plan, &o)?);
                } else {
                    println!("{host} | {}", outcome_text(&o));
                }
                results.push((m.name.clone(), o));
            }
            Err(e) => failed = Some((m.name.clone(), e)),
        }
    }
    if let Some((host, e)) = &failed {
        if json {
            print_json_line(&json!({
                "host": host, "event": "failed", "revision": plan.revision,
                "error": e.to_string(),
            }));
        }
    }
    for host in &skipped {
        if json {
            print_json_line(&json!({
                "host": host, "event": "skipped", "revision": plan.revision,
            }));
        }
    }
    if !json {
        print!("{}", summary(&plan, &results, failed.as_ref(), &skipped));
    }
    match failed {
        None => Ok(()),
        Some((host, e)) => {
            let rest = if skipped.is_empty() {
                String::new()
            } else {
                format!("; not rolled out: {}", skipped.join(", "))
            };
            eprintln!(
                "berthctl: rollout of {} stopped at {host}: {e}{rest}",
                plan.service
            );
            Err(Error::Exit(1))
        }
    }
}

/// The plan every host follows, from the command line.
fn plan(f: &Fleet, args: &RolloutArgs) -> Result<Plan> {
    let service = match args.spec.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            return Err(Error::Message(
                "rollout needs --name NAME: the service whose containers it replaces".into(),
            ))
        }
    };
    if service.len() > MAX_SERVICE_NAME {
        return Err(Error::Message(format!(
            "--name: at most {MAX_SERVICE_NAME} characters for a rollout"
        )));
    }
    if !(1..=MAX_REPLICAS_PER_HOST).contains(&args.replicas_per_host) {
        return Err(Error::Message(format!(
            "--replicas-per-host must be 1 to {MAX_REPLICAS_PER_HOST}"
        )));
    }
    let mut spec = spec_from_args(&args.spec, false, env_lookup)?;
    spec.name.clear();
    for key in [SERVICE_LABEL, REVISION_LABEL, REPLICA_LABEL] {
        if spec.labels.contains_key(key) {
            return Err(Error::Message(format!(
                "label {key} is set by rollout itself"
            )));
        }
    }
    let revision = revision(&spec)?;
    Ok(Plan {
        service,
        spec,
        revision,
        replicas: args.replicas_per_host,
        settle: args.settle,
        health: args.health_cmd.as_ref().map(|cmd| Health {
            cmd: cmd.clone(),
            timeout: args.health_timeout,
            interval: args.health_interval,
        }),
        force: args.force,
        call_timeout: f.timeout,
    })
}

/// The revision of a spec: the first 12 hex digits of the SHA-256 of its
/// JSON (keys sorted), so the same options give the same revision on every
/// run and any change of image, command or option gives another.
pub fn revision(spec: &berth::v1::ContainerSpec) -> Result<String> {
    let canonical = serde_json::to_string(&output::message_json(spec)?)
        .map_err(|e| Error::Message(format!("encoding the spec: {e}")))?;
    let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    Ok(digest[..12].to_string())
}

/// Connects to a host within the per-host timeout.
async fn connect(f: &Fleet, m: &crate::fleet::Member) -> Result<tonic::transport::Channel> {
    match f.timeout {
        Some(t) => tokio::time::timeout(t, m.channel()).await.map_err(|_| {
            Error::Message(format!(
                "no answer within {} (--host-timeout)",
                human_duration(t)
            ))
        })?,
        None => m.channel().await,
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Unchanged(_) => "already runs this revision".into(),
        Outcome::Updated { new, .. } => format!("updated: {}", names(new)),
    }
}

fn names(cs: &[berth::v1::Container]) -> String {
    let v: Vec<String> = cs
        .iter()
        .map(|c| format!("{} ({})", c.name, short(&c.id)))
        .collect();
    v.join(", ")
}

fn outcome_json(host: &str, plan: &Plan, o: &Outcome) -> Result<Value> {
    let (event, new, removed) = match o {
        Outcome::Unchanged(c) => ("unchanged", c, &Vec::new()),
        Outcome::Updated { new, removed } => ("updated", new, removed),
    };
    let containers = new
        .iter()
        .map(output::message_json)
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "host": host, "event": event, "revision": plan.revision,
        "containers": containers, "removed": removed,
    }))
}

/// The closing table: one row per host, in the order they were rolled.
fn summary(
    plan: &Plan,
    results: &[(String, Outcome)],
    failed: Option<&(String, Error)>,
    skipped: &[String],
) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (host, r) in results {
        let (result, detail) = match r {
            Outcome::Unchanged(c) => ("unchanged", names(c)),
            Outcome::Updated { new, removed } => (
                "updated",
                format!("{}; removed {}", names(new), removed.len()),
            ),
        };
        rows.push(vec![
            host.clone(),
            result.into(),
            plan.revision.clone(),
            detail,
        ]);
    }
    if let Some((host, e)) = failed {
        rows.push(vec![
            host.clone(),
            "failed".into(),
            plan.revision.clone(),
            e.to_string(),
        ]);
    }
    for host in skipped {
        rows.push(vec![
            host.clone(),
            "not started".into(),
            String::new(),
            "left on its old containers".into(),
        ]);
    }
    output::table(&["HOST", "RESULT", "REVISION", "DETAIL"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

    fn args(line: &[&str]) -> RolloutArgs {
        match cli(line) {
            Command::Rollout(a) => a,
            c => panic!("{c:?}"),
        }
    }

    fn rev(line: &[&str]) -> String {
        let a = args(line);
        revision(&spec_from_args(&a.spec, false, |_| None).unwrap()).unwrap()
    }

    #[test]
    fn the_revision_follows_the_spec_and_nothing_else() {
        let base = rev(&["rollout", "--name", "api", "img:1", "sh", "-c", "x"]);
        assert_eq!(base.len(), 12);
        // Same spec, other rollout options (and labels in another order).
        assert_eq!(
            rev(&["rollout", "--name", "api", "--settle", "1s", "img:1", "sh", "-c", "x"]),
            base
        );
        assert_eq!(
            rev(&["rollout", "-l", "a=1", "-l", "b=2", "--name", "api", "img:1"]),
            rev(&["rollout", "-l", "b=2", "-l", "a=1", "--name", "api", "img:1"])
        );
        assert_ne!(
            rev(&["rollout", "--name", "api", "img:2", "sh", "-c", "x"]),
            base
        );
        assert_ne!(
            rev(&["rollout", "--name", "api", "-m", "64m", "img:1", "sh", "-c", "x"]),
            base
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let a = args(&["rollout", "--name", "api", "img"]);
        assert_eq!(a.replicas_per_host, 1);
        assert_eq!(a.settle, std::time::Duration::from_secs(10));
        assert!(a.health_cmd.is_none());
        let f = Fleet {
            members: vec![],
            parallel: 1,
            timeout: None,
            output: crate::cli::OutputFormat::Table,
        };
        let e = |line: &[&str]| match plan(&f, &args(line)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{line:?} accepted"),
        };
        assert!(e(&["rollout", "img"]).contains("--name"));
        assert!(
            e(&["rollout", "--name", "a", "--replicas-per-host", "0", "img"]).contains("1 to 64")
        );
        assert!(
            e(&["rollout", "--name", "a", "-l", "berth.revision=x", "img"])
                .contains("set by rollout")
        );
        assert!(e(&["rollout", "--name", &"a".repeat(101), "img"]).contains("100"));
    }
}
