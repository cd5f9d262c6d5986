//! The Stats service: usage samples of containers (`Stats`) and their
//! processes (`Top`), converted at this boundary from the cgroup counters
//! (`cgroup::stats`) and /proc (`procinfo`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth::v1 as pb;
use berth::v1::stats_server::Stats;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::state_to_proto;
use crate::cgroup::stats::{self as cs, CgroupStats};
use crate::container::state::State;
use crate::container::{Entry, Manager};
use crate::error::Error;
use crate::network::counters::InterfaceCounters;

/// Most containers one Stats call may name.
pub const MAX_CONTAINERS: usize = 1000;
/// Longest container key (id, prefix or name), in bytes.
pub const MAX_KEY: usize = 256;
/// Interval when the request gives none.
pub const DEFAULT_INTERVAL_MS: u32 = 1000;
/// Shortest interval between samples.
pub const MIN_INTERVAL_MS: u32 = 100;
/// Longest interval between samples.
pub const MAX_INTERVAL_MS: u32 = 60_000;
/// Most processes Top lists.
pub const MAX_PROCESSES: usize = 10_000;

/// Serves `berth.v1.Stats`.
pub struct StatsService {
    mgr: Arc<Manager>,
}

impl StatsService {
    /// Wraps the manager.
    pub fn new(mgr: Arc<Manager>) -> Self {
        StatsService { mgr }
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::StatsResponse, Status>> + Send>>;

fn invalid(field: &'static str, reason: &'static str) -> Status {
    Error::InvalidRequest { field, reason }.into()
}

/// The interval a request asks for, checked.
fn interval(ms: u32) -> Result<Duration, Status> {
    let ms = if ms == 0 { DEFAULT_INTERVAL_MS } else { ms };
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) {
        return Err(invalid(
            "interval_ms",
            "interval_ms must be 0 (1000) or between 100 and 60000",
        ));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

fn check_key(key: &str, field: &'static str) -> Result<(), Status> {
    if key.is_empty() {
        return Err(invalid(field, "a container id or name is required"));
    }
    if key.len() > MAX_KEY {
        return Err(invalid(field, "a container key is at most 256 bytes"));
    }
    Ok(())
}

/// Which containers a stream samples.
enum Targets {
    /// These, by full id, in the order asked for.
    Named(Vec<Arc<Entry>>),
    /// Whatever exists at each sample: running and paused ones, or all.
    Every { all: bool },
}

impl Targets {
    /// The containers to sample now (named ones that were removed are
    /// dropped for good); None when every named container is gone.
    fn now(&mut self, mgr: &Manager) -> Option<Vec<Arc<Entry>>> {
        match self {
            Targets::Named(entries) => {
                entries.retain(|e| mgr.get(&e.id).is_ok_and(|f| Arc::ptr_eq(&f, e)));
                (!entries.is_empty()).then(|| entries.clone())
            }
            Targets::Every { all } => {
                let mut es = mgr.entries();
                es.retain(|e| *all || has_cgroup(e.name_and_state().1));
                Some(es)
            }
        }
    }
}

/// Whether a container in `state` has a cgroup to read.
fn has_cgroup(state: State) -> bool {
    matches!(state, State::Running | State::Paused)
}

/// One read of the host and of `entries`' cgroups.
struct Sample {
    at: SystemTime,
    host_nanos: u64,
    cpus: u32,
    rows: Vec<(String, String, State, Option<CgroupStats>)>,
    /// Network counters, by the rows' order.
    nets: Vec<Option<Vec<InterfaceCounters>>>,
}

fn sample(mgr: &Manager, entries: &[Arc<Entry>]) -> Sample {
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let (rows, nets) = entries
        .iter()
        .map(|e| {
            let (name, state) = e.name_and_state();
            let stats = has_cgroup(state)
                .then(|| mgr.cgroups().stats(&e.id))
                .flatten();
            let net = has_cgroup(state).then(|| mgr.network_counters(e)).flatten();
            ((e.id.clone(), name, state, stats), net)
        })
        .unzip();
    Sample {
        at: SystemTime::now(),
        host_nanos: cs::host_cpu_nanos(&proc_stat, cs::TICK_NANOS),
        cpus: cs::online_cpus(&proc_stat),
        rows,
        nets,
    }
}

/// Reads a sample on the blocking pool (cgroup files are plain reads, but
/// 1000 containers are several thousand of them).
async fn sample_async(mgr: &Arc<Manager>, entries: Vec<Arc<Entry>>) -> Result<Sample, Status> {
    let mgr = mgr.clone();
    tokio::task::spawn_blocking(move || sample(&mgr, &entries))
        .await
        .map_err(|e| Error::internal("reading container stats", e).into())
}

/// The wire form of `now`, with CPU percents against `before`.
fn to_proto(now: &Sample, before: &Sample, host_memory: u64) -> pb::StatsResponse {
    let prev: HashMap<&str, u64> = before
        .rows
        .iter()
        .filter_map(|(id, _, _, s)| Some((id.as_str(), s.as_ref()?.cpu.usage_nanos)))
        .collect();
    let containers = now
        .rows
        .iter()
        .zip(&now.nets)
        .map(|((id, name, state, s), net)| {
            let mut c = pb::ContainerStats {
                id: id.clone(),
                name: name.clone(),
                state: state_to_proto(*state) as i32,
                ..Default::default()
            };
            c.network = net.as_deref().map(network_to_proto);
            let Some(s) = s else { return c };
            let percent = prev.get(id.as_str()).map_or(0.0, |&u| {
                cs::cpu_percent(
                    u,
                    s.cpu.usage_nanos,
                    before.host_nanos,
                    now.host_nanos,
                    now.cpus,
                )
            });
            c.cpu = Some(pb::CpuStats {
                usage_nanos: s.cpu.usage_nanos,
                user_nanos: s.cpu.user_nanos,
                system_nanos: s.cpu.system_nanos,
                host_usage_nanos: now.host_nanos,
                online_cpus: now.cpus,
                percent,
                periods: s.cpu.periods,
                throttled_periods: s.cpu.throttled_periods,
                throttled_nanos: s.cpu.throttled_nanos,
            });
            let m = &s.memory;
            c.memory = Some(pb::MemoryStats {
                usage_bytes: m.usage,
                limit_bytes: m.limit.unwrap_or(host_memory),
                limited: m.limit.is_some(),
                cache_bytes: m.cache,
                anon_bytes: m.anon,
                inactive_file_bytes: m.inactive_file,
                working_set_bytes: m.working_set(),
                oom_kills: m.oom_kills,
            });
            c.pids = Some(pb::PidsStats {
                current: s.pids_current,
                limit: s.pids_limit.unwrap_or(0),
            });
            c.block_io = Some(pb::BlockIoStats {
                read_bytes: s.read_bytes,
                write_bytes: s.write_bytes,
            });
            c
        })
        .collect();
    pb::StatsResponse {
        read_at: Some(now.at.into()),
        containers,
    }
}

fn network_to_proto(ifs: &[InterfaceCounters]) -> pb::NetworkStats {
    pb::NetworkStats {
        rx_bytes: ifs.iter().map(|i| i.rx_bytes).sum(),
        tx_bytes: ifs.iter().map(|i| i.tx_bytes).sum(),
        interfaces: ifs
            .iter()
            .map(|i| pb::InterfaceStats {
                name: i.name.clone(),
                rx_bytes: i.rx_bytes,
                rx_packets: i.rx_packets,
                rx_errors: i.rx_errors,
                rx_dropped: i.rx_dropped,
                tx_bytes: i.tx_bytes,
                tx_packets: i.tx_packets,
                tx_errors: i.tx_errors,
                tx_dropped: i.tx_dropped,
            })
            .collect(),
    }
}

/// The host's memory, the limit shown for a container without one.
fn host_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// Runs one Stats stream until it is done or the client goes away.
async fn run_stream(
    mgr: Arc<Manager>,
    mut targets: Targets,
    every: Duration,
    stream: bool,
    tx: tokio::sync::mpsc::Sender<Result<pb::StatsResponse, Status>>,
) {
    let host_mem = host_memory();
    let Some(first) = targets.now(&mgr) else {
        return;
    };
    let mut before = match sample_async(&mgr, first).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
        }
        let Some(entries) = targets.now(&mgr) else {
            return;
        };
        let now = match sample_async(&mgr, entries).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if tx
            .send(Ok(to_proto(&now, &before, host_mem)))
            .await
            .is_err()
            || !stream
        {
            return;
        }
        before = now;
    }
}

#[tonic::async_trait]
impl Stats for StatsService {
    type StatsStream = StatsStream;

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<Self::StatsStream>, Status> {
        let req = request.into_inner();
        let every = interval(req.interval_ms)?;
        if req.containers.len() > MAX_CONTAINERS {
            return Err(invalid(
                "containers",
                "at most 1000 containers per call (name none for all)",
            ));
        }
        let targets = if req.containers.is_empty() {
            Targets::Every { all: req.all }
        } else {
            let mut entries: Vec<Arc<Entry>> = Vec::new();
            for key in &req.containers {
                check_key(key, "containers")?;
                let e = self.mgr.get(key)?;
                if !entries.iter().any(|x| x.id == e.id) {
                    entries.push(e);
                }
            }
            Targets::Named(entries)
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(run_stream(self.mgr.clone(), targets, every, req.stream, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn top(
        &self,
        request: Request<pb::TopRequest>,
    ) -> Result<Response<pb::TopResponse>, Status> {
        let key = request.into_inner().container;
        check_key(&key, "container")?;
        let entry = self.mgr.get(&key)?;
        if !has_cgroup(entry.name_and_state().1) {
            return Ok(Response::new(pb::TopResponse::default()));
        }
        let mgr = self.mgr.clone();
        let resp = tokio::task::spawn_blocking(move || top(&mgr, &entry.id))
            .await
            .map_err(|e| Error::internal("listing processes", e))?;
        Ok(Response::new(resp))
    }
}

/// The processes of container `id`.
fn top(mgr: &Manager, id: &str) -> pb::TopResponse {
    let mut pids = mgr.cgroups().procs(id, MAX_PROCESSES);
    let truncated = pids.len() > MAX_PROCESSES;
    pids.truncate(MAX_PROCESSES);
    let boot = crate::procinfo::boot_time();
    let mut users: HashMap<u32, String> = HashMap::new();
    let processes = pids
        .into_iter()
        .filter_map(crate::procinfo::read)
        .map(|p| {
            let user = users
                .entry(p.uid)
                .or_insert_with(|| user_name(p.uid))
                .clone();
            let started_at = boot.map(|b| {
                (SystemTime::UNIX_EPOCH
                    + Duration::from_secs(b)
                    + Duration::from_nanos(p.start_after_boot_nanos))
                .into()
            });
            pb::ProcessInfo {
                pid: p.pid,
                container_pid: p.ns_pid,
                ppid: p.ppid,
                uid: p.uid,
                user,
                state: p.state.to_string(),
                cpu_nanos: p.cpu_nanos,
                rss_bytes: p.rss_bytes,
                command: p.command,
                started_at,
            }
        })
        .collect();
    pb::TopResponse {
        processes,
        truncated,
    }
}

/// The host's name for `uid` (as `docker top`, which runs the host's ps),
/// or the number.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_bounds() {
        assert_eq!(interval(0).ok(), Some(Duration::from_secs(1)));
        assert_eq!(interval(100).ok(), Some(Duration::from_millis(100)));
        assert_eq!(interval(60_000).ok(), Some(Duration::from_secs(60)));
        for bad in [1, 99, 60_001, u32::MAX] {
            let e = interval(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn percent_against_the_previous_sample() {
        let row = |usage| {
            let mut s = CgroupStats::default();
            s.cpu.usage_nanos = usage;
            s.memory.usage = 10;
            s.memory.inactive_file = 4;
            Some(s)
        };
        let at = SystemTime::UNIX_EPOCH;
        let before = Sample {
            at,
            host_nanos: 1_000,
            cpus: 2,
            rows: vec![("a".into(), "x".into(), State::Running, row(100))],
            nets: vec![None],
        };
        let now = Sample {
            at,
            host_nanos: 3_000,
            cpus: 2,
            rows: vec![
                ("a".into(), "x".into(), State::Running, row(1_100)),
                ("b".into(), "y".into(), State::Running, row(50)),
                ("c".into(), "z".into(), State::Exited, None),
            ],
            nets: vec![
                Some(vec![
                    InterfaceCounters {
                        name: "eth0".into(),
                        rx_bytes: 10,
                        tx_bytes: 1,
                        ..Default::default()
                    },
                    InterfaceCounters {
                        name: "eth1".into(),
                        rx_bytes: 5,
                        tx_bytes: 2,
                        ..Default::default()
                    },
                ]),
                None,
                None,
            ],
        };
        let r = to_proto(&now, &before, 8 << 30);
        let cpu = r.containers[0].cpu.as_ref().unwrap();
        assert!((cpu.percent - 100.0).abs() < 1e-9, "{}", cpu.percent);
        let mem = r.containers[0].memory.as_ref().unwrap();
        assert_eq!((mem.limit_bytes, mem.limited), (8 << 30, false));
        assert_eq!(mem.working_set_bytes, 6);
        let net = r.containers[0].network.as_ref().unwrap();
        assert_eq!(
            (net.rx_bytes, net.tx_bytes, net.interfaces.len()),
            (15, 3, 2)
        );
        assert!(r.containers[1].network.is_none(), "host network: none");
        assert_eq!(r.containers[1].cpu.as_ref().unwrap().percent, 0.0);
        let stopped = &r.containers[2];
        assert!(stopped.cpu.is_none() && stopped.memory.is_none() && stopped.network.is_none());
        assert_eq!(stopped.state, pb::ContainerState::Exited as i32);
    }
}
