//! The Agent service.

use std::sync::Arc;
use std::time::SystemTime;

use berth::v1 as pb;
use berth::v1::agent_server::Agent;
use tonic::{Request, Response, Status};

use crate::container::state::State;
use crate::container::Manager;
use crate::image::ImageStore;

/// Serves `berth.v1.Agent`.
pub struct AgentService {
    mgr: Arc<Manager>,
    images: Arc<ImageStore>,
    state_dir: String,
    started_at: SystemTime,
    instance_id: String,
}

impl AgentService {
    /// Describes an agent started at `started_at`.
    pub fn new(
        mgr: Arc<Manager>,
        images: Arc<ImageStore>,
        state_dir: String,
        started_at: SystemTime,
        instance_id: String,
    ) -> Self {
        AgentService {
            mgr,
            images,
            state_dir,
            started_at,
            instance_id,
        }
    }
}

/// Reads a `MemTotal:`-style line of /proc/meminfo, in bytes.
fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Go-style architecture name, as OCI images use.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn info(
        &self,
        _req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let uts = nix::sys::utsname::uname().map_err(|e| Status::internal(e.to_string()))?;
        let recs = self.mgr.list();
        let count = |s: State| recs.iter().filter(|r| r.state == s).count() as u32;
        let cg = self.mgr.cgroups();
        Ok(Response::new(pb::InfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: berth::API_VERSION.to_string(),
            hostname: uts.nodename().to_string_lossy().into_owned(),
            kernel: uts.release().to_string_lossy().into_owned(),
            os: "linux".into(),
            architecture: oci_arch().into(),
            cgroup_version: cg.version(),
            cgroup_controllers: cg.controllers().to_vec(),
            cgroup_parent: format!("/{}", cg.parent()),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_total_bytes: meminfo("MemTotal:"),
            memory_available_bytes: meminfo("MemAvailable:"),
            containers: recs.len() as u32,
            containers_running: count(State::Running),
            containers_created: count(State::Created),
            containers_exited: count(State::Exited),
            images: self.images.list().len() as u32,
            state_dir: self.state_dir.clone(),
            started_at: Some(prost_types::Timestamp::from(self.started_at)),
            instance_id: self.instance_id.clone(),
        }))
    }
}
