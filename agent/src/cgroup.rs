//! Container cgroups through cgroups-rs, on cgroup v1 and v2 alike.
//!
//! berthd detects the host's layout once at start. Every container gets its
//! own cgroup `<parent>/<id>` (in each v1 hierarchy, or in the unified v2
//! tree). On v2, `<parent>` holds only container cgroups, never processes,
//! which keeps the "no internal processes" rule.

use std::path::PathBuf;

use berth_runtime::launch::CgroupPlacement;
use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::{Cgroup, Hierarchy, MaxValue, Resources as CgResources};

/// What the container asks for, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; 0 = none.
    pub memory: i64,
    /// Memory + swap in bytes (Docker semantics); -1 unlimited swap, 0 no swap.
    pub memory_swap: i64,
    /// CPU quota in billionths of a CPU; 0 = none.
    pub nano_cpus: i64,
    /// Docker-style CPU shares; 0 = default.
    pub cpu_shares: u64,
    /// Max pids; <= 0 = none.
    pub pids: i64,
    /// cpuset CPUs.
    pub cpuset_cpus: String,
    /// cpuset memory nodes.
    pub cpuset_mems: String,
}

/// CFS period berth uses for `--cpus` (Docker's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Errors from cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// cgroups-rs failed.
    #[error("cgroup {path}: {source}")]
    Cgroups {
        /// The cgroup.
        path: String,
        /// Cause.
        source: cgroups_rs::fs::error::Error,
    },
    /// A limit the host cannot enforce.
    #[error("{0}")]
    Unsupported(String),
}

/// The cgroup operations the container runtime needs: berthd's are
/// [`CgroupHost`]'s; tests use fakes.
pub trait Cgroups: Send + Sync {
    /// 1 or 2.
    fn version(&self) -> u32;
    /// The controllers in use.
    fn controllers(&self) -> &[String];
    /// The parent cgroup of all container cgroups (relative to the root).
    fn parent(&self) -> &str;
    /// Whether the host can enforce `limits`.
    fn check(&self, limits: &Limits) -> Result<(), CgroupError>;
    /// Makes the container's cgroup with `limits`.
    fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError>;
    /// Freezes the container.
    fn freeze(&self, id: &str) -> Result<(), CgroupError>;
    /// Thaws the container.
    fn thaw(&self, id: &str) -> Result<(), CgroupError>;
    /// Changes a running container's limits.
    fn update(&self, id: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// SIGKILLs every process of the container, whatever berth believes its
    /// state is: thaws the cgroup first (a container may have frozen itself
    /// through a cgroupfs it mounted, and frozen processes do not die), then
    /// kills the whole cgroup and its descendants. Used by stop, kill with
    /// SIGKILL and forced remove, so nothing of a container survives them.
    fn kill(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the cgroup of a container whose init has been reaped.
    fn release(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the container's cgroup, killing what is left in it.
    fn remove(&self, id: &str) -> Result<(), CgroupError>;
    /// Removes the empty container cgroups of none of `known`.
    fn remove_others(&self, known: &std::collections::HashSet<String>);
}

impl Cgroups for CgroupHost {
    fn version(&self) -> u32 {
        CgroupHost::version(self)
    }
    fn controllers(&self) -> &[String] {
        CgroupHost::controllers(self)
    }
    fn parent(&self) -> &str {
        CgroupHost::parent(self)
    }
    fn check(&self, limits: &Limits) -> Result<(), CgroupError> {
        CgroupHost::check(self, limits)
    }
    fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError> {
        CgroupHost::create(self, id, limits)
    }
    fn freeze(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::freeze(self, id)
    }
    fn thaw(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::thaw(self, id)
    }
    fn update(&self, id: &str, limits: &Limits) -> Result<(), CgroupError> {
        CgroupHost::update(self, id, limits)
    }
    fn kill(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::kill(self, id)
    }
    fn release(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::release(self, id)
    }
    fn remove(&self, id: &str) -> Result<(), CgroupError> {
        CgroupHost::remove(self, id)
    }
    fn remove_others(&self, known: &std::collections::HashSet<String>) {
        CgroupHost::remove_others(self, known)
    }
}

/// The host's cgroup setup, detected at start.
#[derive(Debug, Clone)]
pub struct CgroupHost {
    version: u32,
    parent: String,
    controllers: Vec<String>,
    swap_limit: bool,
    hier: Hier,
    root: PathBuf,
}

/// The mounted hierarchies, read once at start: cgroups-rs would otherwise
/// parse /proc/self/mountinfo for every cgroup handle.
#[derive(Debug, Clone)]
enum Hier {
    V1(hierarchies::V1),
    V2(hierarchies::V2),
}

impl Hier {
    fn boxed(&self) -> Box<dyn Hierarchy> {
        match self {
            Hier::V1(h) => Box::new(h.clone()),
            Hier::V2(h) => Box::new(h.clone()),
        }
    }
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    /// Where the container's init goes.
    pub placement: CgroupPlacement,
    /// The file holding the oom_kill counter.
    pub oom_events: Option<String>,
}

const WANTED: [&str; 6] = ["cpu", "cpuacct", "cpuset", "freezer", "memory", "pids"];

impl CgroupHost {
    /// Detects cgroup v1 or v2 and the controllers berth will use.
    pub fn detect(parent: &str) -> Self {
        let cached = if hierarchies::is_cgroup2_unified_mode() {
            Hier::V2(hierarchies::V2::new())
        } else {
            Hier::V1(hierarchies::V1::new())
        };
        let hier = cached.boxed();
        let v2 = hier.v2();
        let mut controllers: Vec<String> = hier
            .subsystems()
            .iter()
            .map(|s| s.controller_name())
            .filter(|n| WANTED.contains(&n.as_str()))
            .collect();
        controllers.sort();
        controllers.dedup();
        let root = hier.root();
        let swap_limit = if v2 {
            // memory.swap.max exists on every non-root cgroup when swap
            // accounting is on; the root shows it only through the controller list.
            std::path::Path::new("/proc/swaps").exists()
        } else {
            root.join("memory/memory.memsw.limit_in_bytes").exists()
        };
        CgroupHost {
            version: if v2 { 2 } else { 1 },
            parent: parent.trim_matches('/').to_string(),
            controllers,
            swap_limit,
            hier: cached,
            root,
        }
    }

    /// 1 or 2.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Controllers in use.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Parent of all container cgroups.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// A handle on the cgroup at `path`, limited (on v1) to the controllers
    /// berth uses: creating and removing a cgroup in every v1 hierarchy the
    /// host mounts costs time for nothing.
    fn load(&self, path: &str) -> Cgroup {
        if self.version == 2 {
            Cgroup::load(self.hier.boxed(), path)
        } else {
            Cgroup::load_with_specified_controllers(
                self.hier.boxed(),
                path,
                self.controllers.clone(),
            )
        }
    }

    fn path_of(&self, id: &str) -> String {
        format!("{}/{}", self.parent, id)
    }

    /// Checks limits against what the host supports, before anything is created.
    pub fn check(&self, limits: &Limits) -> Result<(), CgroupError> {
        if limits.memory_swap != 0 && !self.swap_limit {
            return Err(CgroupError::Unsupported(
                "this host's kernel does not support swap limits (no swap accounting)".into(),
            ));
        }
        Ok(())
    }

    /// Creates the container's cgroup with its limits applied.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError> {
        let path = self.path_of(id);
        let err = |source| CgroupError::Cgroups {
            path: path.clone(),
            source,
        };
        let cg = self.load(&path);
        cg.create().map_err(err)?;
        let res = to_resources(limits, self.version, self.swap_limit);
        if let Err(e) = cg.apply(&res) {
            let _ = cg.delete();
            return Err(err(e));
        }
        if let Err(e) = self.verify_memory(&path, limits) {
            let _ = cg.delete();
            return Err(e);
        }
        let root = &self.root;
        let utf8 = |p: &std::path::Path| {
            crate::fsutil::utf8_path(p).map_err(|e| {
                let _ = cg.delete();
                CgroupError::Unsupported(format!("cgroup path: {e}"))
            })
        };
        let placement = if self.version == 2 {
            CgroupPlacement::Unified(utf8(&root.join(&path))?)
        } else {
            // Co-mounted controllers (cpu,cpuacct) share one directory.
            let mut dirs: Vec<String> = cg
                .subsystems()
                .iter()
                .map(|s| utf8(s.to_controller().path()))
                .collect::<Result<_, _>>()?;
            dirs.sort();
            dirs.dedup();
            CgroupPlacement::Hierarchies(dirs)
        };
        let oom_events = if self.version == 2 {
            Some(root.join(&path).join("memory.events"))
        } else if self.controllers.iter().any(|c| c == "memory") {
            Some(root.join("memory").join(&path).join("memory.oom_control"))
        } else {
            None
        };
        Ok(ContainerCgroup {
            placement,
            oom_events: oom_events.as_deref().map(utf8).transpose()?,
        })
    }

    /// Freezes every process of the container.
    pub fn freeze(&self, id: &str) -> Result<(), CgroupError> {
        self.freezer(id)?
            .freeze()
            .map_err(|source| CgroupError::Cgroups {
                path: self.path_of(id),
                source,
            })
    }

    /// Thaws the container.
    pub fn thaw(&self, id: &str) -> Result<(), CgroupError> {
        self.freezer(id)?
            .thaw()
            .map_err(|source| CgroupError::Cgroups {
                path: self.path_of(id),
                source,
            })
    }

    fn freezer(&self, id: &str) -> Result<cgroups_rs::fs::freezer::FreezerController, CgroupError> {
        let cg = self.load(&self.path_of(id));
        cg.controller_of::<cgroups_rs::fs::freezer::FreezerController>()
            .cloned()
            .ok_or_else(|| CgroupError::Unsupported("no freezer cgroup on this host".into()))
    }

    /// See [`Cgroups::kill`].
    pub fn kill(&self, id: &str) -> Result<(), CgroupError> {
        let cg = self.load(&self.path_of(id));
        if !cg.exists() {
            return Ok(());
        }
        // Thaw whatever berth's record says: the freezer state is the truth.
        let _ = self.thaw(id);
        kill_all(&cg);
        Ok(())
    }

    /// Applies new limits to an existing cgroup.
    pub fn update(&self, id: &str, limits: &Limits) -> Result<(), CgroupError> {
        let path = self.path_of(id);
        let cg = self.load(&path);
        let mut res = to_resources(limits, self.version, self.swap_limit);
        if self.version == 1 {
            if let (Some(mem), Some(total)) =
                (res.memory.memory_hard_limit, res.memory.memory_swap_limit)
            {
                // v1 refuses memory > memory+swap at every step, so the order
                // of the two writes depends on the direction of the change.
                let dir = self.root.join("memory").join(&path);
                let cur: i64 = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(i64::MAX);
                let writes = [
                    ("memory.memsw.limit_in_bytes", total),
                    ("memory.limit_in_bytes", mem),
                ];
                let order: Vec<_> = if mem > cur {
                    writes.to_vec()
                } else {
                    writes.iter().rev().copied().collect()
                };
                for (file, v) in order {
                    std::fs::write(dir.join(file), v.to_string()).map_err(|e| {
                        CgroupError::Unsupported(format!("writing {file} = {v}: {e}"))
                    })?;
                }
                res.memory.memory_hard_limit = None;
                res.memory.memory_swap_limit = None;
            }
        }
        cg.apply(&res).map_err(|source| CgroupError::Cgroups {
            path: path.clone(),
            source,
        })?;
        self.verify_memory(&path, limits)
    }

    /// cgroups-rs ignores errors of memory writes; read the limit back so a
    /// refused limit is an error, not a silent no-op.
    fn verify_memory(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        if limits.memory <= 0 || !self.controllers.iter().any(|c| c == "memory") {
            return Ok(());
        }
        let root = &self.root;
        let file = if self.version == 2 {
            root.join(path).join("memory.max")
        } else {
            root.join("memory").join(path).join("memory.limit_in_bytes")
        };
        let got: i64 = std::fs::read_to_string(&file)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1);
        // The kernel rounds down to whole pages.
        if got > limits.memory || got < limits.memory - 4096 * 16 {
            return Err(CgroupError::Unsupported(format!(
                "the kernel did not take the memory limit {} (it holds {got})",
                limits.memory
            )));
        }
        Ok(())
    }

    /// Removes the empty container cgroups under the parent that belong to
    /// none of `known` (left by a crash). A cgroup that still holds
    /// processes is left alone: they belong to no container this berthd
    /// knows, most likely to another berthd with the same `--cgroup-parent`,
    /// and killing them is not this berthd's call.
    pub fn remove_others(&self, known: &std::collections::HashSet<String>) {
        let mut stale = std::collections::BTreeMap::<String, Vec<PathBuf>>::new();
        for p in self.parent_dirs() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if e.path().is_dir() && name.len() == 64 && !known.contains(&name) {
                    stale.entry(name).or_default().push(e.path());
                }
            }
        }
        for (id, dirs) in stale {
            if dirs.iter().any(|d| has_processes(d)) {
                tracing::warn!(
                    %id,
                    "left alone: cgroup {}/{id} holds processes of no container this berthd \
                     knows (does another berthd use --cgroup-parent {}?)",
                    self.parent,
                    self.parent
                );
                continue;
            }
            tracing::info!(%id, "removing a stale container cgroup");
            for d in dirs {
                if let Err(e) = std::fs::remove_dir(&d) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(%id, "removing {}: {e}", d.display());
                    }
                }
            }
        }
    }

    /// The parent's directory in each hierarchy berth uses.
    fn parent_dirs(&self) -> Vec<PathBuf> {
        let root = &self.root;
        if self.version == 2 {
            vec![root.join(&self.parent)]
        } else {
            self.controllers
                .iter()
                .map(|c| root.join(c).join(&self.parent))
                .collect()
        }
    }

    /// Removes the cgroup of a container whose init has been reaped. Every
    /// process of the container was in the init's PID namespace, and the
    /// kernel ends them all before the init, so there is nothing to look for
    /// first; whatever still refuses (a process someone else put there)
    /// gets [`CgroupHost::remove`].
    pub fn release(&self, id: &str) -> Result<(), CgroupError> {
        match self.load(&self.path_of(id)).delete() {
            Ok(()) => Ok(()),
            Err(_) => self.remove(id),
        }
    }

    /// Removes the container's cgroup. Kills stragglers first: a cgroup with
    /// processes cannot be removed.
    pub fn remove(&self, id: &str) -> Result<(), CgroupError> {
        let path = self.path_of(id);
        let cg = self.load(&path);
        if !cg.exists() {
            return Ok(());
        }
        let mut last = None;
        // rmdir fails with EBUSY for a moment after the last process died.
        for _ in 0..50 {
            kill_all(&cg);
            match cg.delete() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        match last {
            Some(source) => Err(CgroupError::Cgroups { path, source }),
            None => Ok(()),
        }
    }
}

/// SIGKILLs every process in `cg`: through `cgroup.kill` where the kernel
/// has it (v2 since Linux 5.14), else one pid at a time (v1), which a fork
/// can race; [`CgroupHost::remove`] calls it again on each attempt.
fn kill_all(cg: &Cgroup) {
    let procs = cg.procs();
    if procs.is_empty() || cg.kill().is_ok() {
        return;
    }
    for p in procs {
        if let Ok(pid) = i32::try_from(p.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// True when the cgroup directory `dir` has a process in it.
fn has_processes(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
}

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
