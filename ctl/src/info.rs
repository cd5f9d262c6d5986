//! `info` and `version`.

use berth::v1::{InfoRequest, InfoResponse};
use serde_json::json;

use crate::ctx::{report, Ctx};
use crate::error::Result;
use crate::output::{self, print_json_line};

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

/// `info`.
pub async fn info(ctx: &Ctx) -> Result<()> {
    let mut client = ctx.agent().await?;
    let i = client.info(InfoRequest {}).await?.into_inner();
    if ctx.json() {
        print_json_line(&output::message_json(&i)?);
    } else {
        for (k, v) in info_lines(&i) {
            println!("{k}: {v}");
        }
    }
    Ok(())
}

/// `version`: berthctl's version, and the agent's when it can be reached;
/// an unreachable agent is reported but is not a failure of `version`.
pub async fn version(ctx: &Ctx) -> Result<()> {
    let agent = match ctx.agent().await {
        Ok(mut c) => c
            .info(InfoRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    if ctx.json() {
        let server = agent
            .as_ref()
            .ok()
            .map(|i| json!({"version": i.version, "apiVersion": i.api_version, "os": i.os, "architecture": i.architecture}));
        print_json_line(&json!({
            "client": {"version": CLIENT_VERSION, "apiVersion": berth::API_VERSION},
            "server": server,
        }));
    } else {
        println!("Client:");
        println!(" Version:      {CLIENT_VERSION}");
        println!(" API version:  {}", berth::API_VERSION);
        if let Ok(i) = &agent {
            println!("Server:");
            println!(" Version:      {}", i.version);
            println!(" API version:  {}", i.api_version);
            println!(" OS/Arch:      {}/{}", i.os, i.architecture);
        }
    }
    if let Err(e) = &agent {
        report(e);
    }
    Ok(())
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
