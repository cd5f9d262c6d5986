//! `info` and `top-hosts`: facts about agents, their capacity and load.

use std::collections::HashMap;
use std::time::Instant;

use berth::v1::{agent_client::AgentClient, InfoRequest, InfoResponse};
use serde_json::json;
use tonic::transport::Channel;

use crate::error::Result;
use crate::fleet::{split, with_host, Fleet};
use crate::output::{self, print_json_line};
use crate::place::{self, Capacity};

/// berthctl's own version.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `info` lines, `Key: value`.
pub fn info_lines(i: &InfoResponse) -> Vec<(&'static str, String)> {
    let none_if_empty = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        ("Version", i.version.clone()),
        ("API version", i.api_version.clone()),
        ("Hostname", i.hostname.clone()),
        ("Kernel", i.kernel.clone()),
        ("OS/Arch", format!("{}/{}", i.os, i.architecture)),
        ("Cgroup version", i.cgroup_version.to_string()),
        (
            "Cgroup controllers",
            none_if_empty(&i.cgroup_controllers.join(", ")),
        ),
        ("Cgroup parent", none_if_empty(&i.cgroup_parent)),
        (
            "Security options",
            // As `docker info` says it; an older berthd does not say.
            if i.seccomp {
                "seccomp (default profile)".to_string()
            } else {
                "-".to_string()
            },
        ),
        ("CPUs", i.cpus.to_string()),
        (
            "Memory",
            format!(
                "{} total, {} available",
                output::binary_size(i.memory_total_bytes),
                output::binary_size(i.memory_available_bytes)
            ),
        ),
        (
            "Containers",
            format!(
                "{} ({} running, {} created, {} exited)",
                i.containers, i.containers_running, i.containers_created, i.containers_exited
            ),
        ),
        ("Images", i.images.to_string()),
        ("State dir", i.state_dir.clone()),
        (
            "Started",
            i.started_at
                .as_ref()
                .map_or_else(|| "-".into(), output::rfc3339),
        ),
        ("Instance id", i.instance_id.clone()),
    ]
}

/// `info`: one agent's facts, `Key: value` (the Info response with `-o
/// json`); for many hosts, one line each (see [`hosts`]).
pub async fn info(f: &Fleet) -> Result<()> {
    if !f.is_single() {
        return hosts(f, false).await;
    }
    let mut client = AgentClient::new(f.first()?.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let i = client.info(InfoRequest {}).await?.into_inner();
    if f.json() {
        print_json_line(&output::message_json(&i)?);
    } else {
        for (k, v) in info_lines(&i) {
            println!("{k}: {v}");
        }
    }
    Ok(())
}

/// What `info`/`top-hosts` learn of a host.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The health service's answer ("serving", "not serving", ...).
    pub health: String,
    /// Round trip of the health check on the open connection.
    pub latency: std::time::Duration,
    /// The agent's Info.
    pub info: InfoResponse,
}

async fn host_info(ch: Channel) -> Result<HostInfo> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    let mut health = HealthClient::new(ch.clone());
    let t0 = Instant::now();
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    let latency = t0.elapsed();
    let health = match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => "serving",
        Ok(ServingStatus::NotServing) => "not serving",
        _ => "unknown",
    }
    .to_string();
    let info = AgentClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .info(InfoRequest {})
        .await?
        .into_inner();
    Ok(HostInfo {
        health,
        latency,
        info,
    })
}

/// The `info`/`top-hosts` table headers.
pub const HOSTS_HEADERS: [&str; 10] = [
    "HOST", "HEALTH", "VERSION", "LATENCY", "CGROUP", "CPUS", "MEMORY", "RUNNING", "LOAD",
    "RESERVED",
];

/// One row of the hosts table.
pub fn host_row(host: &str, h: &HostInfo) -> Vec<String> {
    let i = &h.info;
    let cap = Capacity::from_info(host, i);
    vec![
        host.to_string(),
        h.health.clone(),
        i.version.clone(),
        format!("{:.1}ms", h.latency.as_secs_f64() * 1000.0),
        format!("v{}", i.cgroup_version),
        format!(
            "{} ({} reserved)",
            i.cpus,
            trim_float(i.nano_cpus_requested as f64 / 1e9)
        ),
        format!(
            "{} free of {} ({} reserved)",
            output::binary_size(cap.memory_free()),
            output::binary_size(i.memory_total_bytes),
            output::binary_size(i.memory_requested_bytes)
        ),
        i.containers_running.to_string(),
        format!("{:.2}", i.load_average_1m),
        format!("{:.0}%", cap.reserved() * 100.0),
    ]
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `info` across hosts (sorted by host), or `top-hosts` (least loaded
/// first, as `run --place least-loaded` would choose them).
pub async fn hosts(f: &Fleet, by_load: bool) -> Result<()> {
    let results = f.each(|_, ch| host_info(ch)).await;
    let (mut ok, fails) = split(results);
    if by_load {
        let mut caps: Vec<Capacity> = ok
            .iter()
            .map(|(m, h)| Capacity::from_info(&m.name, &h.info))
            .collect();
        place::least_loaded_order(&mut caps);
        let rank: HashMap<String, usize> = caps
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.host, i))
            .collect();
        ok.sort_by_key(|(m, _)| rank.get(&m.name).copied().unwrap_or(usize::MAX));
    }
    if f.json() {
        for (m, h) in &ok {
            let mut v = with_host(&m.name, output::message_json(&h.info)?);
            v["health"] = json!(h.health);
            v["latencyMs"] = json!(h.latency.as_secs_f64() * 1000.0);
            print_json_line(&v);
        }
    } else {
        let rows: Vec<Vec<String>> = ok.iter().map(|(m, h)| host_row(&m.name, h)).collect();
        print!("{}", output::table(&HOSTS_HEADERS, &rows));
    }
    fails.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text() {
        let i = InfoResponse {
            version: "0.1.0".into(),
            api_version: "v1".into(),
            os: "linux".into(),
            architecture: "amd64".into(),
            cgroup_version: 2,
            cgroup_controllers: vec!["cpu".into(), "memory".into()],
            memory_total_bytes: 8 << 30,
            memory_available_bytes: 3 << 29,
            containers: 3,
            containers_running: 1,
            containers_created: 1,
            containers_exited: 1,
            ..Default::default()
        };
        let lines = info_lines(&i);
        let get = |k: &str| {
            lines
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("OS/Arch"), Some("linux/amd64"));
        assert_eq!(get("Cgroup controllers"), Some("cpu, memory"));
        assert_eq!(get("Cgroup parent"), Some("-"));
        assert_eq!(get("Memory"), Some("8GiB total, 1.5GiB available"));
        assert_eq!(
            get("Containers"),
            Some("3 (1 running, 1 created, 1 exited)")
        );
    }
}
