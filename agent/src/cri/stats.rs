//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats from berth's cgroup counters (`cgroup::stats`) and
//! each container's writable layer. A berth pod has no cgroup of its own,
//! so its CPU, memory and process count are sums over its containers.
//! kubelet's summary API wants CPU rates (`usage_nano_cores`): they come
//! from each container's previous reading, kept in [`CriStats`].
//! ListMetricDescriptors and ListPodSandboxMetrics stay UNIMPLEMENTED: an
//! empty answer would pass for "no metrics".

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::cgroup::stats::CgroupStats;
use crate::container::record::Record;
use crate::container::rootfs::Rootfs;
use crate::container::state::State;
use crate::container::{now_nanos, Entry, Manager};
use crate::cri::api_file::v1 as cri;
use crate::cri::pods::store::PodRecord;
use crate::error::Error;

/// Readings closer together than this make no new CPU rate (the last one
/// is given again): kubelet and crictl, or a pod listing and a container
/// listing, may read milliseconds apart, and a rate over so short a
/// window is mostly noise.
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);
/// A container not read for this long leaves the rate cache (removed
/// containers must not stay in it for ever).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// One container read at one moment: what its CRI stats are made of.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Its record at the reading.
    pub rec: Record,
    /// Its directory: names the writable layer's file system.
    pub dir: PathBuf,
    /// Unix nanos of the reading.
    pub at: i64,
    /// The same moment on the monotonic clock: rates must not jump with
    /// the wall clock.
    pub mono: Instant,
    /// Its cgroup's counters; None without a cgroup (created, exited).
    pub cgroup: Option<CgroupStats>,
    /// Apparent bytes of its writable layer.
    pub layer_bytes: u64,
}

/// Reads `entries` on the blocking pool: records, the cgroups of running
/// and paused ones (as berth's Stats API), and every writable layer
/// (created and exited containers hold disk too), which is a tree walk.
///
/// # Errors
/// The blocking task failed.
pub async fn read(mgr: &Arc<Manager>, entries: Vec<Arc<Entry>>) -> Result<Vec<Reading>, Status> {
    let mgr = mgr.clone();
    let read_all = move || {
        let read_one = |e: &Arc<Entry>| {
            let rec = e.snapshot();
            let cgroup = matches!(rec.state, State::Running | State::Paused)
                .then(|| mgr.cgroups().stats(&e.id))
                .flatten();
            // Taken before the layer walk, which may be slow: a rate
            // divides by the time between two cgroup reads.
            let (at, mono) = (now_nanos(), Instant::now());
            let layer_bytes = crate::fsutil::apparent_bytes(&Rootfs::under(&e.dir).upper);
            Reading {
                rec,
                dir: e.dir.clone(),
                at,
                mono,
                cgroup,
                layer_bytes,
            }
        };
        entries.iter().map(read_one).collect()
    };
    tokio::task::spawn_blocking(read_all)
        .await
        .map_err(|e| Error::internal("reading container stats", e).into())
}

/// CPU used between two readings, in billionths of a core; None when the
/// window is empty or the counter went back (a new run, a new cgroup).
pub fn nano_cores(prev_usage: u64, usage: u64, elapsed: Duration) -> Option<u64> {
    let used = usage.checked_sub(prev_usage)?;
    let nanos = elapsed.as_nanos();
    // u64 * 10^9 fits in u128; a rate past u64 (a tiny window) saturates.
    (nanos > 0).then(|| u64::try_from(u128::from(used) * 1_000_000_000 / nanos).unwrap_or(u64::MAX))
}

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn cpu(at: i64, s: &CgroupStats, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: value(s.cpu.usage_nanos),
        usage_nano_cores: nano_cores.and_then(value),
        psi: None,
    }
}

/// Page faults are not among berth's cgroup counters: unset, not zero.
/// Available is what is left below the limit; unset without one (the
/// host's memory is not the container's to count).
fn memory(at: i64, s: &CgroupStats) -> cri::MemoryUsage {
    let m = &s.memory;
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: value(m.working_set()),
        available_bytes: m
            .limit
            .and_then(|l| value(l.saturating_sub(m.working_set()))),
        usage_bytes: value(m.usage),
        rss_bytes: value(m.anon),
        page_faults: None,
        major_page_faults: None,
        psi: None,
    }
}

/// The counters of several cgroups as one: sums, and a limit only when
/// each has one.
fn total(all: &[&CgroupStats]) -> CgroupStats {
    let mut t = CgroupStats::default();
    t.memory.limit = (!all.is_empty()).then_some(0);
    for s in all {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut t.cpu.usage_nanos, s.cpu.usage_nanos);
        add(&mut t.memory.usage, s.memory.usage);
        add(&mut t.memory.inactive_file, s.memory.inactive_file);
        add(&mut t.memory.anon, s.memory.anon);
        add(&mut t.pids_current, s.pids_current);
        t.memory.limit = t
            .memory
            .limit
            .zip(s.memory.limit)
            .map(|(a, b)| a.saturating_add(b));
    }
    t
}

/// The CRI stats of a reading, with its CPU rate if known; None when it
/// is not a pod's container. One without a cgroup shows no CPU or memory
/// (as containerd), only its writable layer.
pub fn to_cri(r: &Reading, nano_cores: Option<u64>) -> Option<cri::ContainerStats> {
    let p = r.rec.spec.pod.as_ref()?;
    let attributes = cri::ContainerAttributes {
        id: r.rec.id.clone(),
        metadata: Some(cri::ContainerMetadata {
            name: p.container_name.clone(),
            attempt: p.attempt,
        }),
        labels: r.rec.spec.labels.clone().into_iter().collect(),
        annotations: p.annotations.clone().into_iter().collect(),
    };
    let writable_layer = cri::FilesystemUsage {
        timestamp: r.at,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: r.dir.display().to_string(),
        }),
        used_bytes: value(r.layer_bytes),
        inodes_used: None,
    };
    Some(cri::ContainerStats {
        attributes: Some(attributes),
        cpu: r.cgroup.as_ref().map(|s| cpu(r.at, s, nano_cores)),
        memory: r.cgroup.as_ref().map(|s| memory(r.at, s)),
        writable_layer: Some(writable_layer),
        // Neither swap nor I/O pressure is among berth's counters.
        swap: None,
        io: None,
    })
}

/// A pod's stats at `at` from its containers' readings, each with its CPU
/// rate: sums over the running ones. Its rate is known only when every
/// running container's is, its available memory only when each has a limit.
pub fn to_cri_pod(
    pod: &PodRecord,
    at: i64,
    members: &[(&Reading, Option<u64>)],
) -> cri::PodSandboxStats {
    let live: Vec<(&CgroupStats, Option<u64>)> = members
        .iter()
        .filter_map(|(r, rate)| Some((r.cgroup.as_ref()?, *rate)))
        .collect();
    let rate = live
        .iter()
        .try_fold(0u64, |a, (_, r)| r.map(|r| a.saturating_add(r)));
    let sum = total(&live.iter().map(|(s, _)| *s).collect::<Vec<_>>());
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(crate::cri::pods::sandbox::metadata(pod)),
            labels: pod.labels.clone().into_iter().collect(),
            annotations: pod.annotations.clone().into_iter().collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(at, &sum, rate)),
            memory: Some(memory(at, &sum)),
            // Not read yet: a pod's interfaces are not among these counters.
            network: None,
            process: Some(cri::ProcessUsage {
                timestamp: at,
                process_count: value(sum.pids_current),
            }),
            containers: members
                .iter()
                .filter_map(|(r, rate)| to_cri(r, *rate))
                .collect(),
            io: None,
        }),
        windows: None,
    }
}

/// Whether ListContainerStats' filter takes `rec`: a pod's container, id
/// and pod id by prefix (as crictl passes them), every label exactly.
pub fn container_listed(rec: &Record, f: &cri::ContainerStatsFilter) -> bool {
    rec.spec
        .pod
        .as_ref()
        .is_some_and(|p| p.id.starts_with(&f.pod_sandbox_id))
        && rec.id.starts_with(&f.id)
        && f.label_selector
            .iter()
            .all(|(k, v)| rec.spec.labels.get(k) == Some(v))
}

/// Whether ListPodSandboxStats' filter takes `pod`: a ready one (as
/// containerd: nothing of a stopped pod runs), id by prefix, every label
/// exactly.
pub fn pod_listed(pod: &PodRecord, f: &cri::PodSandboxStatsFilter) -> bool {
    pod.ready
        && pod.id.starts_with(&f.id)
        && f.label_selector
            .iter()
            .all(|(k, v)| pod.labels.get(k) == Some(v))
}

/// A container's last cgroup reading, for its next CPU rate: when, its
/// CPU usage then, and the rate it gave.
type Last = (Instant, u64, Option<u64>);

/// The CRI stats calls' state: each running container's last CPU reading.
/// One per RuntimeService, shared by its four stats calls.
#[derive(Debug, Default)]
pub struct CriStats {
    last: Mutex<HashMap<String, Last>>,
}

impl CriStats {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Last>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CPU rate of `r` against its container's last reading, which it
    /// then replaces (unless too close to make a rate). A container
    /// without a cgroup is forgotten: its next run counts from zero.
    fn rate(&self, r: &Reading) -> Option<u64> {
        let mut last = self.lock();
        let Some(s) = &r.cgroup else {
            last.remove(&r.rec.id);
            return None;
        };
        let (id, usage) = (&r.rec.id, s.cpu.usage_nanos);
        let Some(&(at, prev_usage, prev_rate)) = last.get(id) else {
            last.insert(id.clone(), (r.mono, usage, None));
            return None;
        };
        let elapsed = r.mono.saturating_duration_since(at);
        // A reading older than the cached one (two calls racing) changes
        // nothing either.
        if r.mono < at || (usage >= prev_usage && elapsed < MIN_RATE_WINDOW) {
            return prev_rate;
        }
        let rate = nano_cores(prev_usage, usage, elapsed);
        last.insert(id.clone(), (r.mono, usage, rate));
        rate
    }

    fn forget_stale(&self) {
        let now = Instant::now();
        self.lock()
            .retain(|_, l| now.saturating_duration_since(l.0) < FORGET_AFTER);
    }

    /// The stats of `entries` (pod containers only; others are skipped),
    /// read on the blocking pool.
    ///
    /// # Errors
    /// The blocking task failed.
    pub async fn of_containers(
        &self,
        mgr: &Arc<Manager>,
        entries: Vec<Arc<Entry>>,
    ) -> Result<Vec<cri::ContainerStats>, Status> {
        let readings = read(mgr, entries).await?;
        let out = readings
            .iter()
            .filter_map(|r| to_cri(r, self.rate(r)))
            .collect();
        self.forget_stale();
        Ok(out)
    }

    /// The stats of `pods`, each given with its containers, in their order.
    ///
    /// # Errors
    /// The blocking task failed.
    pub async fn of_pods(
        &self,
        mgr: &Arc<Manager>,
        pods: Vec<(PodRecord, Vec<Arc<Entry>>)>,
    ) -> Result<Vec<cri::PodSandboxStats>, Status> {
        let mut out = Vec::with_capacity(pods.len());
        for (pod, entries) in pods {
            let readings = read(mgr, entries).await?;
            let members: Vec<_> = readings.iter().map(|r| (r, self.rate(r))).collect();
            out.push(to_cri_pod(&pod, now_nanos(), &members));
        }
        self.forget_stale();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::{PodJoin, SpecRecord};
    use std::collections::BTreeMap;

    fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn reading(id: &str, pod: &str, cgroup: Option<CgroupStats>) -> Reading {
        let pod = PodJoin {
            id: pod.into(),
            container_name: "app".into(),
            attempt: 2,
            annotations: tags(&[("a", "b")]),
            ..Default::default()
        };
        let spec = SpecRecord {
            labels: tags(&[("app", "web")]),
            pod: Some(pod),
            ..Default::default()
        };
        let state = cgroup.as_ref().map_or(State::Exited, |_| State::Running);
        let rec = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "spec": spec, "image_id": "", "layers": [], "layer_dirs": [],
            "state": state, "pid": 0, "monitor_pid": 0, "created_at": 1, "started_at": 1,
            "args": [], "env": [], "cwd": "/", "user": "", "hostname": "", "stop_signal": 15,
            "stop_timeout": 10, "start_count": 1,
        }));
        let dir = PathBuf::from(format!("/c/{id}"));
        Reading {
            rec: rec.expect("a record"),
            dir,
            at: 42,
            mono: Instant::now(),
            cgroup,
            layer_bytes: 4096,
        }
    }

    /// 1000 bytes charged, 300 of them inactive file cache, 600 anon.
    fn cg(usage_nanos: u64, limit: Option<u64>, pids: u64) -> Option<CgroupStats> {
        let mut s = CgroupStats::default();
        (s.cpu.usage_nanos, s.pids_current) = (usage_nanos, pids);
        (s.memory.usage, s.memory.inactive_file) = (1000, 300);
        (s.memory.anon, s.memory.limit) = (600, limit);
        Some(s)
    }

    fn pod(ready: bool) -> PodRecord {
        serde_json::from_value(serde_json::json!({
            "id": "p123", "name": "web", "uid": "u", "namespace": "ns", "attempt": 1,
            "labels": {"tier": "web"}, "annotations": {"pa": "pb"}, "hostname": "", "log_directory": "",
            "runtime_handler": "", "created_at": 1, "ready": ready, "host_network": false, "resolv_conf": null,
        }))
        .expect("a pod")
    }

    fn v(x: Option<cri::UInt64Value>) -> Option<u64> {
        x.map(|v| v.value)
    }

    /// Timestamp, usage and rate.
    fn cpu3(c: Option<cri::CpuUsage>) -> Option<(i64, Option<u64>, Option<u64>)> {
        c.map(|c| {
            (
                c.timestamp,
                v(c.usage_core_nano_seconds),
                v(c.usage_nano_cores),
            )
        })
    }

    /// Working set, usage, rss and available.
    fn mem4(m: Option<cri::MemoryUsage>) -> Option<[Option<u64>; 4]> {
        m.map(|m| {
            [
                m.working_set_bytes,
                m.usage_bytes,
                m.rss_bytes,
                m.available_bytes,
            ]
            .map(v)
        })
    }

    #[test]
    fn containers_map_to_cri() {
        let s = to_cri(&reading("c1", "p", cg(5_000, Some(2000), 3)), Some(25)).expect("stats");
        let a = s.attributes.expect("attributes");
        assert_eq!(
            (a.id.as_str(), &a.labels["app"], &a.annotations["a"]),
            ("c1", &"web".into(), &"b".into())
        );
        assert_eq!(
            a.metadata.map(|m| (m.name, m.attempt)),
            Some(("app".into(), 2))
        );
        assert_eq!(cpu3(s.cpu), Some((42, Some(5_000), Some(25))));
        assert_eq!(mem4(s.memory), Some([700, 1000, 600, 1300].map(Some)));
        assert!(
            s.memory.and_then(|m| m.page_faults).is_none(),
            "not read: unset, not zero"
        );
        let fs = s.writable_layer.expect("writable layer");
        assert_eq!(
            (fs.fs_id.map(|f| f.mountpoint), v(fs.used_bytes)),
            (Some("/c/c1".into()), Some(4096))
        );
        let unlimited = to_cri(&reading("c2", "p", cg(1, None, 1)), None).and_then(|s| s.memory);
        assert_eq!(
            mem4(unlimited),
            Some([Some(700), Some(1000), Some(600), None])
        );
        let stopped = to_cri(&reading("c3", "p", None), None).expect("stats");
        assert!(
            stopped.cpu.is_none() && stopped.memory.is_none() && stopped.writable_layer.is_some()
        );
        let mut own = reading("c4", "p", None);
        own.rec.spec.pod = None;
        assert!(
            to_cri(&own, None).is_none(),
            "berth's own containers are not CRI's"
        );
    }

    #[test]
    fn cpu_rates_from_two_readings() {
        let sec = Duration::from_secs(1);
        assert_eq!(nano_cores(1_000, 500_001_000, sec), Some(500_000_000));
        assert_eq!(nano_cores(0, 4_000_000_000, 2 * sec), Some(2_000_000_000));
        assert_eq!(nano_cores(5, 4, sec), None, "counter reset");
        assert_eq!(nano_cores(1, 2, Duration::ZERO), None);
        assert_eq!(
            nano_cores(0, u64::MAX, Duration::from_nanos(1)),
            Some(u64::MAX)
        );

        let st = CriStats::default();
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        let at = |t: Instant, usage: u64| {
            let mut r = reading("c", "p", cg(usage, None, 1));
            r.mono = t;
            st.rate(&r)
        };
        assert_eq!(at(t0, 1_000), None, "no earlier reading");
        assert_eq!(at(t0 + ms(10), 9_000_000), None, "too close: the last");
        let half = Some(500_000_000);
        assert_eq!(at(t0 + ms(2000), 1_000_001_000), half, "over 2 s");
        assert_eq!(at(t0 + ms(2005), 1_000_002_000), half, "too close");
        assert_eq!(at(t0 + ms(1500), 5), half, "older than the last");
        assert_eq!(at(t0 + ms(2010), 10), None, "a new cgroup counts again");
        assert_eq!(at(t0 + ms(3010), 500_000_010), half);
        assert_eq!(st.rate(&reading("c", "p", None)), None);
        assert!(st.lock().is_empty(), "a stopped container is forgotten");
    }

    #[test]
    fn filters_take_prefixes_and_exact_labels() {
        let r = reading("abc", "pod1", None).rec;
        let f = |id: &str, pod: &str, l: &[(&str, &str)]| cri::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            label_selector: tags(l).into_iter().collect(),
        };
        assert!(container_listed(&r, &f("", "", &[])));
        assert!(container_listed(&r, &f("ab", "pod", &[("app", "web")])));
        assert!(!container_listed(&r, &f("b", "", &[])));
        assert!(!container_listed(&r, &f("", "pod2", &[])));
        assert!(!container_listed(&r, &f("", "", &[("app", "db")])));
        let mut own = r.clone();
        own.spec.pod = None;
        assert!(!container_listed(&own, &f("", "", &[])));
        let pf = |id: &str, l: &[(&str, &str)]| cri::PodSandboxStatsFilter {
            id: id.into(),
            label_selector: tags(l).into_iter().collect(),
        };
        assert!(pod_listed(&pod(true), &pf("p1", &[("tier", "web")])));
        assert!(!pod_listed(&pod(true), &pf("p2", &[])));
        assert!(!pod_listed(&pod(true), &pf("", &[("tier", "db")])));
        assert!(!pod_listed(&pod(false), &pf("", &[])), "not ready");
    }

    #[test]
    fn a_pod_sums_its_running_containers() {
        let (a, b, c) = (
            reading("a", "p", cg(100, Some(1000), 2)),
            reading("b", "p", cg(50, Some(2000), 3)),
            reading("c", "p", None),
        );
        let s = to_cri_pod(&pod(true), 7, &[(&a, Some(10)), (&b, Some(5)), (&c, None)]);
        let at = s.attributes.expect("attributes");
        assert_eq!(
            (
                at.id.as_str(),
                &at.annotations["pa"],
                at.metadata.map(|m| m.namespace)
            ),
            ("p123", &"pb".into(), Some("ns".into()))
        );
        let l = s.linux.expect("linux");
        assert_eq!(cpu3(l.cpu), Some((7, Some(150), Some(15))));
        assert_eq!(
            mem4(l.memory),
            Some([1400, 2000, 1200, 3000 - 1400].map(Some))
        );
        assert_eq!(v(l.process.and_then(|p| p.process_count)), Some(5));
        assert!(l.containers.len() == 3 && l.network.is_none());
        let partial = to_cri_pod(&pod(true), 7, &[(&a, Some(10)), (&b, None)]).linux;
        assert_eq!(
            cpu3(partial.and_then(|l| l.cpu)),
            Some((7, Some(150), None))
        );
        let free = reading("d", "p", cg(1, None, 1));
        let unlimited = to_cri_pod(&pod(true), 7, &[(&a, None), (&free, None)]).linux;
        let m = mem4(unlimited.and_then(|l| l.memory));
        assert_eq!(m.map(|m| m[3]), Some(None), "one container without a limit");
        let idle = to_cri_pod(&pod(true), 7, &[(&c, None)])
            .linux
            .expect("linux");
        assert_eq!(cpu3(idle.cpu), Some((7, Some(0), Some(0))), "nothing runs");
        assert_eq!(mem4(idle.memory), Some([Some(0), Some(0), Some(0), None]));
    }
}
