//! Docker-style limits as cgroups-rs resources, for v1 or v2.

use cgroups_rs::fs::{MaxValue, Resources as CgResources};

use super::{Limits, CPU_PERIOD_US};

/// Translates Docker-style limits into cgroups-rs resources for `version`.
/// cgroups-rs writes values as given, so conversions between v1 and v2
/// semantics happen here.
pub fn to_resources(l: &Limits, version: u32, swap_limit: bool) -> CgResources {
    let mut r = CgResources::default();
    if l.memory > 0 {
        r.memory.memory_hard_limit = Some(l.memory);
        if swap_limit {
            let total = match l.memory_swap {
                0 => l.memory,
                -1 => -1,
                n => n,
            };
            r.memory.memory_swap_limit = Some(match (version, total) {
                (_, -1) => -1,
                // v2's memory.swap.max counts swap alone.
                (2, t) => t - l.memory,
                (_, t) => t,
            });
        }
    }
    if l.nano_cpus > 0 {
        r.cpu.period = Some(CPU_PERIOD_US);
        r.cpu.quota = Some(l.nano_cpus * CPU_PERIOD_US as i64 / 1_000_000_000);
    }
    if l.cpu_shares > 0 {
        r.cpu.shares = Some(if version == 2 {
            shares_to_weight(l.cpu_shares)
        } else {
            l.cpu_shares
        });
    }
    if l.pids > 0 {
        r.pid.maximum_number_of_processes = Some(MaxValue::Value(l.pids));
    }
    if !l.cpuset_cpus.is_empty() {
        r.cpu.cpus = Some(l.cpuset_cpus.clone());
    }
    if !l.cpuset_mems.is_empty() {
        r.cpu.mems = Some(l.cpuset_mems.clone());
    }
    r
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), the mapping runc and
/// Docker use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_to_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn cpus_become_quota() {
        let l = Limits {
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        let r = to_resources(&l, 1, false);
        assert_eq!(r.cpu.quota, Some(50_000));
        assert_eq!(r.cpu.period, Some(100_000));
    }

    #[test]
    fn swap_semantics_per_version() {
        let l = Limits {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            ..Default::default()
        };
        assert_eq!(
            to_resources(&l, 1, true).memory.memory_swap_limit,
            Some(128 << 20)
        );
        assert_eq!(
            to_resources(&l, 2, true).memory.memory_swap_limit,
            Some(64 << 20)
        );
        let no_swap = Limits {
            memory: 64 << 20,
            ..Default::default()
        };
        assert_eq!(
            to_resources(&no_swap, 2, true).memory.memory_swap_limit,
            Some(0)
        );
        assert_eq!(
            to_resources(&no_swap, 1, true).memory.memory_swap_limit,
            Some(64 << 20)
        );
        assert_eq!(
            to_resources(&no_swap, 1, false).memory.memory_swap_limit,
            None
        );
    }
}
