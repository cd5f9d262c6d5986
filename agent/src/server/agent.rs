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

/// The three load averages of /proc/loadavg (zeros if unreadable).
fn load_averages() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
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
        // What running containers have asked for: placement must fit a new
        // container in what is left, not in what happens to be idle now.
        let running = recs.iter().filter(|r| r.state == State::Running);
        let (mut mem_req, mut cpu_req, mut unlimited) = (0u64, 0u64, 0u32);
        for r in running {
            let l = &r.spec.limits;
            if l.memory > 0 {
                mem_req += l.memory as u64;
            } else {
                unlimited += 1;
            }
            cpu_req += l.nano_cpus.max(0) as u64;
        }
        let [load1, load5, load15] = load_averages();
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
            images: self.images.list().iter().filter(|i| i.listed()).count() as u32,
            state_dir: self.state_dir.clone(),
            started_at: Some(prost_types::Timestamp::from(self.started_at)),
            instance_id: self.instance_id.clone(),
            memory_requested_bytes: mem_req,
            nano_cpus_requested: cpu_req,
            containers_running_unlimited: unlimited,
            load_average_1m: load1,
            load_average_5m: load5,
            load_average_15m: load15,
            seccomp: true,
        }))
    }
}
