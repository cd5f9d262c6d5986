//! Placement for `run --place`: which targeted hosts get the replicas, from
//! what each agent reports (memory, CPUs, the limits running containers have
//! reserved, running containers, load). Pure, so it is tested without agents.

use berth::v1::InfoResponse;

use crate::cli::Placement;
use crate::output::binary_size;

/// What placement knows of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Host name.
    pub host: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Memory available now (MemAvailable), bytes.
    pub memory_available: u64,
    /// Memory limits of running containers, summed, bytes.
    pub memory_requested: u64,
    /// CPU limits of running containers, summed, billionths of a CPU.
    pub nano_cpus_requested: u64,
    /// Running containers.
    pub running: u32,
    /// 1-minute load average.
    pub load1: f64,
}

impl Capacity {
    /// From an agent's Info.
    pub fn from_info(host: &str, i: &InfoResponse) -> Capacity {
        Capacity {
            host: host.to_string(),
            cpus: i.cpus,
            memory_total: i.memory_total_bytes,
            memory_available: i.memory_available_bytes,
            memory_requested: i.memory_requested_bytes,
            nano_cpus_requested: i.nano_cpus_requested,
            running: i.containers_running,
            load1: i.load_average_1m,
        }
    }

    /// Memory a new container may still reserve: what limits leave
    /// unreserved, and never more than is actually available now.
    pub fn memory_free(&self) -> u64 {
        self.memory_total
            .saturating_sub(self.memory_requested)
            .min(self.memory_available)
    }

    /// CPU (billionths) not yet reserved by running containers' limits.
    pub fn cpu_free(&self) -> u64 {
        (u64::from(self.cpus) * 1_000_000_000).saturating_sub(self.nano_cpus_requested)
    }

    /// Why `req` does not fit here, or None when it does.
    pub fn misfit(&self, req: &Request) -> Option<String> {
        let mut why = Vec::new();
        if req.memory > self.memory_free() {
            why.push(format!(
                "memory {} asked, {} free",
                binary_size(req.memory),
                binary_size(self.memory_free())
            ));
        }
        if req.nano_cpus > self.cpu_free() {
            why.push(format!(
                "{} CPUs asked, {} unreserved",
                cpus(req.nano_cpus),
                cpus(self.cpu_free())
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Share of the host reserved: the larger of the memory and CPU shares.
    pub fn reserved(&self) -> f64 {
        let mem = if self.memory_total == 0 {
            1.0
        } else {
            self.memory_requested as f64 / self.memory_total as f64
        };
        let cpu = if self.cpus == 0 {
            1.0
        } else {
            self.nano_cpus_requested as f64 / (f64::from(self.cpus) * 1e9)
        };
        mem.max(cpu)
    }

    /// Load order, least loaded first: reserved share, then running
    /// containers, then load average per CPU, then name (so equal hosts are
    /// chosen in a stable order).
    fn load_key(&self) -> (f64, u32, f64) {
        (
            self.reserved(),
            self.running,
            self.load1 / f64::from(self.cpus.max(1)),
        )
    }

    fn add(&mut self, req: &Request) {
        self.memory_requested += req.memory;
        self.nano_cpus_requested += req.nano_cpus;
        self.memory_available = self.memory_available.saturating_sub(req.memory);
        self.running += 1;
    }
}

fn cpus(nano: u64) -> String {
    let s = format!("{:.2}", nano as f64 / 1e9);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What one replica asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// Memory limit, bytes (0: none).
    pub memory: u64,
    /// CPU limit, billionths (0: none).
    pub nano_cpus: u64,
}

/// Orders hosts least loaded first (for `top-hosts`).
pub fn least_loaded_order(hosts: &mut [Capacity]) {
    hosts.sort_by(|a, b| {
        a.load_key()
            .partial_cmp(&b.load_key())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.host.cmp(&b.host))
    });
}

/// Chooses a host for each of `replicas` replicas, counting each choice
/// against the host before the next one. Returns the host names in replica
/// order, or why a replica fits nowhere (then nothing should be started).
pub fn plan(
    hosts: &[Capacity],
    req: &Request,
    replicas: u32,
    strategy: Placement,
) -> Result<Vec<String>, String> {
    if hosts.is_empty() {
        return Err("no reachable host to place on".into());
    }
    let mut state: Vec<Capacity> = hosts.to_vec();
    let mut placed_here: Vec<u32> = vec![0; state.len()];
    let mut out = Vec::with_capacity(replicas as usize);
    for n in 1..=replicas {
        let best = state
            .iter()
            .enumerate()
            .filter(|(_, h)| h.misfit(req).is_none())
            .min_by(|(i, a), (j, b)| {
                let spread = match strategy {
                    Placement::Spread => placed_here[*i].cmp(&placed_here[*j]),
                    Placement::LeastLoaded => std::cmp::Ordering::Equal,
                };
                spread
                    .then_with(|| {
                        a.load_key()
                            .partial_cmp(&b.load_key())
                            .unwrap_or(std::cmp::Ordering::Equal)
                    })
                    .then_with(|| a.host.cmp(&b.host))
            })
            .map(|(i, _)| i);
        let Some(i) = best else {
            let reasons: Vec<String> = state
                .iter()
                .filter_map(|h| h.misfit(req).map(|why| format!("{}: {why}", h.host)))
                .collect();
            let placed = if n > 1 {
                format!(" (after placing {} of {replicas})", n - 1)
            } else {
                String::new()
            };
            return Err(format!(
                "no host can fit replica {n} of {replicas}{placed}; nothing was started: {}",
                reasons.join("; ")
            ));
        };
        state[i].add(req);
        placed_here[i] += 1;
        out.push(state[i].host.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn host(name: &str, cpus: u32, mem_gib: u64, running: u32) -> Capacity {
        Capacity {
            host: name.into(),
            cpus,
            memory_total: mem_gib * GIB,
            memory_available: mem_gib * GIB,
            memory_requested: 0,
            nano_cpus_requested: 0,
            running,
            load1: 0.0,
        }
    }

    #[test]
    fn spread_uses_every_host_before_doubling_up() {
        let hosts = vec![host("a", 2, 4, 0), host("b", 2, 4, 5), host("c", 2, 4, 1)];
        let p = plan(&hosts, &Request::default(), 4, Placement::Spread);
        assert_eq!(p, Ok(vec!["a".into(), "c".into(), "b".into(), "a".into()]));
    }

    #[test]
    fn least_loaded_follows_reservations() {
        let mut busy = host("busy", 4, 8, 0);
        busy.memory_requested = 6 * GIB;
        let hosts = vec![busy, host("idle", 4, 8, 3)];
        let req = Request {
            memory: GIB,
            nano_cpus: 0,
        };
        // idle has 0% reserved; after 3 replicas it has 3/8, still under
        // busy's 6/8.
        let p = plan(&hosts, &req, 3, Placement::LeastLoaded);
        assert_eq!(p, Ok(vec!["idle".to_string(); 3]));
    }

    #[test]
    fn refuses_when_nothing_fits_and_says_why() {
        let hosts = vec![host("a", 1, 1, 0), host("b", 2, 1, 0)];
        let req = Request {
            memory: 512 << 20,
            nano_cpus: 1_500_000_000,
        };
        // b fits one (2 CPUs), then only 0.5 CPU is left anywhere.
        let Err(e) = plan(&hosts, &req, 2, Placement::Spread) else {
            panic!("should refuse")
        };
        assert!(
            e.starts_with("no host can fit replica 2 of 2 (after placing 1 of 2)"),
            "{e}"
        );
        assert!(e.contains("a: 1.5 CPUs asked, 1 unreserved"), "{e}");
        assert!(e.contains("b: 1.5 CPUs asked, 0.5 unreserved"), "{e}");
        let big = Request {
            memory: 2 * GIB,
            nano_cpus: 0,
        };
        let Err(e) = plan(&hosts, &big, 1, Placement::LeastLoaded) else {
            panic!("should refuse")
        };
        assert!(e.contains("memory 2GiB asked, 1GiB free"), "{e}");
        assert!(plan(&[], &big, 1, Placement::Spread).is_err());
    }

    #[test]
    fn available_memory_caps_what_is_free() {
        let mut h = host("a", 1, 8, 0);
        h.memory_available = GIB;
        assert_eq!(h.memory_free(), GIB);
        h.memory_requested = 7 * GIB + GIB / 2;
        assert_eq!(h.memory_free(), GIB / 2);
    }
}
