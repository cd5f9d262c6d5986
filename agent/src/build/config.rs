//! Steps that only change the image config (ENV, LABEL, USER, EXPOSE,
//! CMD, ENTRYPOINT, HEALTHCHECK, ...), in Docker's config form.

use serde_json::{json, Value};

use super::dockerfile::{Command, Healthcheck, Op, Step};
use super::error::{BuildError, Result};
use super::snapshot::Snapshot;
use crate::error::capped;

/// The shell of shell-form commands unless SHELL says otherwise.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Applies a step that only changes the config; `ex` expands a word with
/// the stage's env and ARGs as they are before the step; `cmd_set`: an
/// earlier step of this stage set CMD.
pub fn apply(
    step: &Step,
    snap: &mut Snapshot,
    ex: &dyn Fn(&str, &Snapshot) -> Result<String>,
    cmd_set: bool,
) -> Result<()> {
    let line = step.line;
    match &step.op {
        Op::Env(pairs) => {
            // Every pair sees the env as it was before the instruction
            // (`ENV a=new b=$a` gives b the old a), as Docker.
            let mut set = Vec::new();
            for (k, v) in pairs {
                set.push((ex(k, snap)?, ex(v, snap)?));
            }
            for (k, v) in set {
                snap.set_env(&k, &v);
            }
        }
        Op::Label(pairs) => {
            let mut out = Vec::new();
            for (k, v) in pairs {
                out.push((ex(k, snap)?, ex(v, snap)?));
            }
            let map = snap.runtime().entry("Labels").or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for (k, v) in out {
                map[k] = json!(v);
            }
        }
        Op::User(u) => {
            let u = ex(u, snap)?;
            snap.runtime().insert("User".into(), json!(u));
        }
        Op::StopSignal(s) => {
            let s = ex(s, snap)?;
            snap.runtime().insert("StopSignal".into(), json!(s));
        }
        Op::Expose(words) => {
            let mut ports = Vec::new();
            for w in words {
                for p in ex(w, snap)?.split_whitespace() {
                    ports.push(expose_key(p, line)?);
                }
            }
            let map = snap
                .runtime()
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for p in ports {
                map[p] = json!({});
            }
        }
        Op::Volume(paths) => {
            let mut out = Vec::new();
            for p in paths {
                out.push(ex(p, snap)?);
            }
            let map = snap.runtime().entry("Volumes").or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for p in out {
                map[p] = json!({});
            }
        }
        Op::Cmd(c) => {
            let v = command_vec(c, snap);
            snap.runtime().insert("Cmd".into(), json!(v));
        }
        Op::Entrypoint(c) => {
            let v = command_vec(c, snap);
            let rt = snap.runtime();
            rt.insert("Entrypoint".into(), json!(v));
            // A new ENTRYPOINT drops the CMD inherited from the base
            // image (as Docker); one this stage set stays.
            if !cmd_set {
                rt.insert("Cmd".into(), Value::Null);
            }
        }
        Op::Shell(v) => {
            snap.runtime().insert("Shell".into(), json!(v));
        }
        Op::Healthcheck(h) => {
            let v = healthcheck(h, snap);
            snap.runtime().insert("Healthcheck".into(), v);
        }
        Op::Onbuild(text) => {
            let rt = snap.runtime();
            let list = rt.entry("OnBuild").or_insert_with(|| json!([]));
            match list.as_array_mut() {
                Some(a) => a.push(json!(text)),
                None => *list = json!([text]),
            }
        }
        Op::Maintainer(who) => {
            if let Some(o) = snap.config.as_object_mut() {
                o.insert("author".into(), json!(who));
            }
        }
        Op::Run { .. } | Op::Copy(_) | Op::Add(_) | Op::Arg(_) | Op::Workdir(_) => {}
    }
    Ok(())
}

pub fn shell_of(snap: &Snapshot) -> Vec<String> {
    let shell = snap.list("Shell");
    if shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        shell
    }
}

pub fn command_vec(c: &Command, snap: &Snapshot) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell_of(snap);
            v.push(s.clone());
            v
        }
    }
}

pub fn run_text(c: &Command) -> String {
    match c {
        Command::Exec(v) => format!("{v:?}"),
        Command::Shell(s) => s.clone(),
    }
}

/// Docker's config form of a HEALTHCHECK.
fn healthcheck(h: &Healthcheck, snap: &Snapshot) -> Value {
    match h {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Cmd {
            test,
            interval_ns,
            timeout_ns,
            start_period_ns,
            start_interval_ns,
            retries,
        } => {
            let test: Vec<String> = match test {
                Command::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.clone())
                    .collect(),
                Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            };
            let _ = snap;
            let mut v = json!({"Test": test});
            for (k, x) in [
                ("Interval", interval_ns),
                ("Timeout", timeout_ns),
                ("StartPeriod", start_period_ns),
                ("StartInterval", start_interval_ns),
            ] {
                if let Some(x) = x {
                    v[k] = json!(x);
                }
            }
            if let Some(r) = retries {
                v["Retries"] = json!(r);
            }
            v
        }
    }
}

/// "80" -> "80/tcp"; "53/udp" kept; anything else refused.
fn expose_key(p: &str, line: usize) -> Result<String> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let ok_port = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let ports_ok = match port.split_once('-') {
        Some((a, b)) => ok_port(a) && ok_port(b),
        None => ok_port(port),
    };
    if !ports_ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::Syntax(format!(
            "Dockerfile:{line}: EXPOSE {:?} is not a port[/tcp|udp|sctp]",
            capped(p)
        )));
    }
    Ok(format!("{port}/{proto}"))
}
