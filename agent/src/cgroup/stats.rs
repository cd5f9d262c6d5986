//! A container's resource usage, read from its cgroup files (v1 and v2).
//!
//! The parsing is pure (text in, numbers out) so both versions' formats are
//! unit-tested with real samples on any host (`stats_tests.rs`); [`read`]
//! only finds and reads the files. A file that is missing (a controller the
//! host lacks, an old kernel) leaves its figures at zero rather than failing
//! the sample: one missing counter must not hide the others.

use std::path::{Path, PathBuf};

/// One sample of a container's cgroup counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU.
    pub cpu: CpuUsage,
    /// Memory.
    pub memory: MemoryUsage,
    /// Processes (and threads): current count.
    pub pids_current: u64,
    /// The pids limit; None when unlimited.
    pub pids_limit: Option<u64>,
    /// Bytes read through the block layer, all devices.
    pub read_bytes: u64,
    /// Bytes written through the block layer, all devices.
    pub write_bytes: u64,
}

/// CPU counters, cumulative since the cgroup was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// Total CPU time, nanoseconds.
    pub usage_nanos: u64,
    /// User-mode CPU time, nanoseconds.
    pub user_nanos: u64,
    /// Kernel-mode CPU time, nanoseconds.
    pub system_nanos: u64,
    /// CFS periods elapsed.
    pub periods: u64,
    /// Periods throttled.
    pub throttled_periods: u64,
    /// Time throttled, nanoseconds.
    pub throttled_nanos: u64,
}

/// Memory counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Charged memory, page cache included.
    pub usage: u64,
    /// The limit; None when unlimited.
    pub limit: Option<u64>,
    /// Page cache.
    pub cache: u64,
    /// Anonymous memory.
    pub anon: u64,
    /// Inactive file cache.
    pub inactive_file: u64,
    /// OOM kills in the cgroup.
    pub oom_kills: u64,
}

impl MemoryUsage {
    /// Usage minus inactive file cache: the kubelet's working set, and
    /// `docker stats`' MEM USAGE.
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }
}

/// The `key value` lines of a flat-keyed cgroup file (cpu.stat,
/// memory.stat, memory.events, memory.oom_control, cpuacct.stat): the value
/// of `key`, if there is a line for it.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A single-number file, or "max" (v2) / a v1 "unlimited" figure (at or
/// above 2^62, the page-rounded i64::MAX v1 prints): None for no limit.
pub fn limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|n| *n < 1 << 62)
}

fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// v2 `cpu.stat`.
pub fn cpu_v2(cpu_stat: &str) -> CpuUsage {
    let us = |k| keyed(cpu_stat, k).unwrap_or(0).saturating_mul(1000);
    CpuUsage {
        usage_nanos: us("usage_usec"),
        user_nanos: us("user_usec"),
        system_nanos: us("system_usec"),
        periods: keyed(cpu_stat, "nr_periods").unwrap_or(0),
        throttled_periods: keyed(cpu_stat, "nr_throttled").unwrap_or(0),
        throttled_nanos: us("throttled_usec"),
    }
}

/// v1 `cpuacct.usage`, `cpuacct.stat` (in USER_HZ ticks) and `cpu.stat`.
pub fn cpu_v1(usage: &str, cpuacct_stat: &str, cpu_stat: &str, tick_nanos: u64) -> CpuUsage {
    let ticks = |k| {
        keyed(cpuacct_stat, k)
            .unwrap_or(0)
            .saturating_mul(tick_nanos)
    };
    CpuUsage {
        usage_nanos: number(usage),
        user_nanos: ticks("user"),
        system_nanos: ticks("system"),
        periods: keyed(cpu_stat, "nr_periods").unwrap_or(0),
        throttled_periods: keyed(cpu_stat, "nr_throttled").unwrap_or(0),
        throttled_nanos: keyed(cpu_stat, "throttled_time").unwrap_or(0),
    }
}

/// v2 `memory.current`, `memory.max`, `memory.stat`, `memory.events`.
pub fn memory_v2(current: &str, max: &str, stat: &str, events: &str) -> MemoryUsage {
    MemoryUsage {
        usage: number(current),
        limit: limit(max),
        cache: keyed(stat, "file").unwrap_or(0),
        anon: keyed(stat, "anon").unwrap_or(0),
        inactive_file: keyed(stat, "inactive_file").unwrap_or(0),
        oom_kills: keyed(events, "oom_kill").unwrap_or(0),
    }
}

/// v1 `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`,
/// `memory.oom_control`. The `total_` figures include the cgroups a
/// container made below its own.
pub fn memory_v1(usage: &str, limit_in_bytes: &str, stat: &str, oom_control: &str) -> MemoryUsage {
    let total = |k: &str| {
        keyed(stat, &format!("total_{k}"))
            .or_else(|| keyed(stat, k))
            .unwrap_or(0)
    };
    MemoryUsage {
        usage: number(usage),
        limit: limit(limit_in_bytes),
        cache: total("cache"),
        anon: total("rss"),
        inactive_file: total("inactive_file"),
        oom_kills: keyed(oom_control, "oom_kill").unwrap_or(0),
    }
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N ...` per device; the
/// read and written bytes summed.
pub fn io_v2(io_stat: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for field in io_stat.lines().flat_map(|l| l.split_whitespace().skip(1)) {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "rbytes" => r = r.saturating_add(v),
            "wbytes" => w = w.saturating_add(v),
            _ => {}
        }
    }
    (r, w)
}

/// v1 `blkio.*io_service_bytes*`: `MAJ:MIN Read N` lines per device (and a
/// final `Total N`); the Read and Write lines summed.
pub fn io_v1(service_bytes: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for l in service_bytes.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [_, op, v] = f.as_slice() else { continue };
        let v: u64 = v.parse().unwrap_or(0);
        match *op {
            "Read" => r = r.saturating_add(v),
            "Write" => w = w.saturating_add(v),
            _ => {}
        }
    }
    (r, w)
}

/// The host's total CPU time (every CPU, idle included), in nanoseconds,
/// from the `cpu` line of /proc/stat: user nice system idle iowait irq
/// softirq steal (guest time is already in user), as docker counts it.
pub fn host_cpu_nanos(proc_stat: &str, tick_nanos: u64) -> u64 {
    let Some(line) = proc_stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    line.split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse::<u64>().ok())
        .fold(0u64, |a, v| a.saturating_add(v))
        .saturating_mul(tick_nanos)
}

/// Docker's CPU percent between two samples: the container's share of the
/// host's CPU time, times the CPUs (100 = one CPU busy).
pub fn cpu_percent(
    usage_before: u64,
    usage_now: u64,
    host_before: u64,
    host_now: u64,
    cpus: u32,
) -> f64 {
    let used = usage_now.saturating_sub(usage_before) as f64;
    let host = host_now.saturating_sub(host_before) as f64;
    if host <= 0.0 {
        return 0.0;
    }
    used / host * f64::from(cpus) * 100.0
}

/// Where one container's counters are.
#[derive(Debug, Clone)]
pub enum StatDirs {
    /// Its v2 cgroup.
    V2(PathBuf),
    /// Its directory in each v1 hierarchy (None where the host lacks it).
    V1 {
        /// `cpu` (cpu.stat).
        cpu: Option<PathBuf>,
        /// `cpuacct`.
        cpuacct: Option<PathBuf>,
        /// `memory`.
        memory: Option<PathBuf>,
        /// `pids`.
        pids: Option<PathBuf>,
        /// `blkio`.
        blkio: Option<PathBuf>,
    },
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

fn read_in(dir: &Option<PathBuf>, file: &str) -> String {
    dir.as_deref().map(|d| read(d, file)).unwrap_or_default()
}

/// Reads one sample; None when the cgroup is gone (the container is not
/// running, or just stopped).
pub fn sample(dirs: &StatDirs, tick_nanos: u64) -> Option<CgroupStats> {
    match dirs {
        StatDirs::V2(d) => {
            let cpu_stat = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
            let (read_bytes, write_bytes) = io_v2(&read(d, "io.stat"));
            Some(CgroupStats {
                cpu: cpu_v2(&cpu_stat),
                memory: memory_v2(
                    &read(d, "memory.current"),
                    &read(d, "memory.max"),
                    &read(d, "memory.stat"),
                    &read(d, "memory.events"),
                ),
                pids_current: number(&read(d, "pids.current")),
                pids_limit: limit(&read(d, "pids.max")),
                read_bytes,
                write_bytes,
            })
        }
        StatDirs::V1 {
            cpu,
            cpuacct,
            memory,
            pids,
            blkio,
        } => {
            // The memory (or else cpuacct) directory tells whether the
            // cgroup exists.
            let probe = memory.as_ref().or(cpuacct.as_ref())?;
            if !probe.is_dir() {
                return None;
            }
            let mut io = read_in(blkio, "blkio.throttle.io_service_bytes_recursive");
            if io.trim().is_empty() || io.trim() == "Total 0" {
                // CFQ/BFQ hosts count in this one as well.
                let other = read_in(blkio, "blkio.io_service_bytes_recursive");
                if !other.trim().is_empty() {
                    io = other;
                }
            }
            let (read_bytes, write_bytes) = io_v1(&io);
            Some(CgroupStats {
                cpu: cpu_v1(
                    &read_in(cpuacct, "cpuacct.usage"),
                    &read_in(cpuacct, "cpuacct.stat"),
                    &read_in(cpu, "cpu.stat"),
                    tick_nanos,
                ),
                memory: memory_v1(
                    &read_in(memory, "memory.usage_in_bytes"),
                    &read_in(memory, "memory.limit_in_bytes"),
                    &read_in(memory, "memory.stat"),
                    &read_in(memory, "memory.oom_control"),
                ),
                pids_current: number(&read_in(pids, "pids.current")),
                pids_limit: limit(&read_in(pids, "pids.max")),
                read_bytes,
                write_bytes,
            })
        }
    }
}

/// The pids in `dir`'s `cgroup.procs` and those of every cgroup below it
/// (a container may make its own), at most `max` of them and at most
/// [`MAX_CGROUPS`] directories visited; sorted, without duplicates.
pub fn procs(dir: &Path, max: usize) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(d) = todo.pop() {
        visited += 1;
        if visited > MAX_CGROUPS {
            break;
        }
        out.extend(
            read(&d, "cgroup.procs")
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .filter(|p| *p > 0),
        );
        if out.len() > max {
            break;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            todo.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Most cgroups [`procs`] walks below a container's: a container can make
/// any number, and a listing must stay bounded.
pub const MAX_CGROUPS: usize = 4096;

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;

/// Nanoseconds per USER_HZ tick, the unit of cpuacct.stat and /proc/PID/stat
/// times: USER_HZ is 100 on every Linux ABI, whatever the kernel's HZ.
pub const TICK_NANOS: u64 = 10_000_000;

/// The CPUs online, from /proc/stat (which has a `cpuN` line for each
/// online CPU only); at least 1.
pub fn online_cpus(proc_stat: &str) -> u32 {
    let n = proc_stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}
