//! [`CgroupHost`]: the host's cgroups, through cgroups-rs.

use std::path::PathBuf;

use berth_runtime::launch::CgroupPlacement;
use cgroups_rs::fs::hierarchies as rs_hierarchies;
use cgroups_rs::fs::{Cgroup, Hierarchy};

use super::devices::{program_bytes, DeviceAccess};
use super::freezer;
use super::hierarchies;
use super::others::{remove_tree, Others};
use super::resources::to_resources;
use super::{CgroupError, ContainerCgroup, Limits};

/// The host's cgroup setup, detected at start.
#[derive(Debug, Clone)]
pub struct CgroupHost {
    version: u32,
    parent: String,
    controllers: Vec<String>,
    swap_limit: bool,
    hier: Hier,
    root: PathBuf,
    others: Others,
    nsdelegate: bool,
}

/// The mounted hierarchies, read once at start: cgroups-rs would otherwise
/// parse /proc/self/mountinfo for every cgroup handle.
#[derive(Debug, Clone)]
enum Hier {
    V1(rs_hierarchies::V1),
    V2(rs_hierarchies::V2),
}

impl Hier {
    fn boxed(&self) -> Box<dyn Hierarchy> {
        match self {
            Hier::V1(h) => Box::new(h.clone()),
            Hier::V2(h) => Box::new(h.clone()),
        }
    }
}

const WANTED: [&str; 6] = ["cpu", "cpuacct", "cpuset", "freezer", "memory", "pids"];

impl CgroupHost {
    /// Detects cgroup v1 or v2 and the controllers berth will use.
    pub fn detect(parent: &str) -> Self {
        let cached = if rs_hierarchies::is_cgroup2_unified_mode() {
            Hier::V2(rs_hierarchies::V2::new())
        } else {
            Hier::V1(rs_hierarchies::V1::new())
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
        let mounted = hierarchies::mounted();
        let nsdelegate = v2 && mounted.iter().any(|m| m.v2 && m.nsdelegate);
        let others = Others::new(mounted, v2, &controllers);
        if !v2 && !others.has_devices() {
            tracing::warn!(
                "no v1 devices hierarchy is mounted: containers get no device cgroup \
                 (nodev mounts still keep them from opening device nodes they make)"
            );
        }
        CgroupHost {
            version: if v2 { 2 } else { 1 },
            parent: parent.trim_matches('/').to_string(),
            controllers,
            swap_limit,
            hier: cached,
            root,
            others,
            nsdelegate,
        }
    }

    /// v2 only: whether the cgroup2 tree is mounted with `nsdelegate`, which
    /// keeps a process in a cgroup namespace from writing the limits of its
    /// namespace's root (its container's cgroup), even with the rights to
    /// mount cgroupfs. Without it, only seccomp and the missing
    /// CAP_SYS_ADMIN keep a container from its own limits.
    pub fn nsdelegate(&self) -> bool {
        self.nsdelegate
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
        if let Err(e) = self
            .verify_memory(&path, limits)
            .and_then(|()| self.verify_cpuset(&path, limits))
        {
            let _ = cg.delete();
            return Err(e);
        }
        if let Err(e) = self.restrict_devices_v2(&path, &limits.devices) {
            let _ = cg.delete();
            return Err(e);
        }
        let others = match self.others.create(&path, &limits.devices) {
            Ok(dirs) => dirs,
            Err(e) => {
                let _ = cg.delete();
                return Err(e);
            }
        };
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
                .map(|s| s.to_controller().path().to_path_buf())
                .chain(others)
                .map(|p| utf8(&p))
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

    /// Freezes every process of the container, and returns once they are
    /// all frozen (v1's FREEZING is not paused yet).
    pub fn freeze(&self, id: &str) -> Result<(), CgroupError> {
        let dir = self.freezer_dir(id)?;
        freezer::freeze(&dir, self.version == 2).map_err(|e| self.io_error(id, "freezing", e))
    }

    /// Thaws the container, and every cgroup it made below its own.
    pub fn thaw(&self, id: &str) -> Result<(), CgroupError> {
        let dir = self.freezer_dir(id)?;
        freezer::thaw_tree(&dir, self.version == 2).map_err(|e| self.io_error(id, "thawing", e))
    }

    /// The container's directory in the freezer hierarchy (its cgroup on v2).
    fn freezer_dir(&self, id: &str) -> Result<PathBuf, CgroupError> {
        if self.version == 2 {
            return Ok(self.root.join(self.path_of(id)));
        }
        if !self.controllers.iter().any(|c| c == "freezer") {
            return Err(CgroupError::Unsupported(
                "no freezer cgroup on this host".into(),
            ));
        }
        Ok(self.root.join("freezer").join(self.path_of(id)))
    }

    fn io_error(&self, id: &str, what: &str, e: std::io::Error) -> CgroupError {
        CgroupError::Unsupported(format!("{what} cgroup {}: {e}", self.path_of(id)))
    }

    /// See [`super::Cgroups::kill`].
    pub fn kill(&self, id: &str) -> Result<(), CgroupError> {
        // Thaw whatever berth's record says: the freezer state is the truth.
        if let Ok(dir) = self.freezer_dir(id) {
            let _ = freezer::thaw_tree(&dir, self.version == 2);
        }
        self.kill_all(id);
        Ok(())
    }

    /// SIGKILLs every process of the container's cgroup and below it.
    fn kill_all(&self, id: &str) {
        let path = self.path_of(id);
        if self.version == 2 {
            freezer::kill_tree(&self.root.join(&path), true);
            return;
        }
        // Every process of the container is in each hierarchy; any one
        // berth always uses will do.
        if let Some(ctrl) = self.controllers.first() {
            freezer::kill_tree(&self.root.join(ctrl).join(&path), false);
        }
    }

    /// v2: the device program for `devices`, attached to the container's
    /// cgroup before anything of the container runs in it.
    fn restrict_devices_v2(&self, path: &str, devices: &DeviceAccess) -> Result<(), CgroupError> {
        let (2, Some(rules)) = (self.version, devices.rules()) else {
            return Ok(());
        };
        let dir = self.root.join(path);
        crate::sys::attach_cgroup_device_program(&dir, &program_bytes(&rules)).map_err(|e| {
            CgroupError::Unsupported(format!(
                "attaching the device program to cgroup {path}: {e}"
            ))
        })
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
        self.verify_memory(&path, limits)?;
        self.verify_cpuset(&path, limits)
    }

    /// cgroups-rs ignores errors of cpuset writes too (a CPU that is not
    /// online, or not in the parent's set): read back what the kernel took.
    fn verify_cpuset(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        use super::cpulist::CpuList;
        if !self.controllers.iter().any(|c| c == "cpuset") {
            return Ok(());
        }
        let dir = if self.version == 2 {
            self.root.join(path)
        } else {
            self.root.join("cpuset").join(path)
        };
        for (file, want) in [
            ("cpuset.cpus", &limits.cpuset_cpus),
            ("cpuset.mems", &limits.cpuset_mems),
        ] {
            if want.is_empty() {
                continue;
            }
            let got = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if CpuList::parse(want) != CpuList::parse(&got) {
                return Err(CgroupError::Unsupported(format!(
                    "the kernel did not take {file} {:?} (it holds {:?}): not all of them \
                     are available to berth's cgroup",
                    crate::error::capped(want),
                    got.trim()
                )));
            }
        }
        Ok(())
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

    /// The parent's directory in each hierarchy.
    fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.own_dirs(&self.parent);
        dirs.extend(self.others.parent_dirs(&self.parent));
        dirs
    }

    /// `path` in each hierarchy berth sets limits in.
    fn own_dirs(&self, path: &str) -> Vec<PathBuf> {
        let root = &self.root;
        if self.version == 2 {
            vec![root.join(path)]
        } else {
            self.controllers
                .iter()
                .map(|c| root.join(c).join(path))
                .collect()
        }
    }

    /// Where the processes of container `id` are placed: its directory in
    /// the unified tree, or in every v1 hierarchy it has one in (those
    /// berth sets limits in and the others), as [`CgroupHost::create`]
    /// made them. `None` for a path that is not UTF-8.
    pub fn placement(&self, id: &str) -> Option<CgroupPlacement> {
        let path = self.path_of(id);
        let utf8 = |p: PathBuf| p.into_os_string().into_string().ok();
        if self.version == 2 {
            return utf8(self.root.join(path)).map(CgroupPlacement::Unified);
        }
        let mut dirs: Vec<String> = self
            .own_dirs(&path)
            .into_iter()
            .chain(self.others.dirs(&path))
            // A co-mounted controller (cpu,cpuacct) is reached by a
            // symlink: one directory.
            .map(|d| std::fs::canonicalize(&d).unwrap_or(d))
            .map(utf8)
            .collect::<Option<_>>()?;
        dirs.sort();
        dirs.dedup();
        Some(CgroupPlacement::Hierarchies(dirs))
    }

    /// Where the usage counters of container `id` are (see `stats`).
    pub fn stat_dirs(&self, id: &str) -> super::stats::StatDirs {
        let path = self.path_of(id);
        if self.version == 2 {
            return super::stats::StatDirs::V2(self.root.join(path));
        }
        let own = |c: &str| {
            self.controllers
                .iter()
                .any(|x| x == c)
                .then(|| self.root.join(c).join(&path))
        };
        super::stats::StatDirs::V1 {
            cpu: own("cpu"),
            cpuacct: own("cpuacct"),
            memory: own("memory"),
            pids: own("pids"),
            blkio: self.others.dir_of("blkio", &path),
        }
    }

    /// The directory whose `cgroup.procs` (and those below) list every
    /// process of container `id`: its v2 cgroup, or on v1 its directory in
    /// one hierarchy berth always uses.
    pub fn procs_dir(&self, id: &str) -> Option<PathBuf> {
        let path = self.path_of(id);
        if self.version == 2 {
            return Some(self.root.join(path));
        }
        let c = ["pids", "memory", "freezer", "cpuacct"]
            .into_iter()
            .find(|c| self.controllers.iter().any(|x| x == c))
            .or_else(|| self.controllers.first().map(String::as_str))?;
        Some(self.root.join(c).join(path))
    }

    /// Removes the cgroup of a container whose init has been reaped. When
    /// the init was PID 1 of its own PID namespace the kernel ended every
    /// other process of it first; a CRI pod's container shares a PID
    /// namespace (the pod's, or the host's with hostPID) and may leave
    /// processes behind, which [`CgroupHost::remove`] kills.
    pub fn release(&self, id: &str) -> Result<(), CgroupError> {
        self.remove(id)
    }

    /// Removes the container's cgroups in every hierarchy, with whatever
    /// cgroups the container made below its own. Kills what is left in them
    /// first (a cgroup with processes cannot be removed), thawed, whatever
    /// state the container left them in.
    pub fn remove(&self, id: &str) -> Result<(), CgroupError> {
        let path = self.path_of(id);
        let dirs = self.own_dirs(&path);
        let mut last = None;
        for _ in 0..5 {
            if dirs.iter().any(|d| has_processes(d)) {
                let _ = self.kill(id);
            }
            match dirs.iter().try_for_each(|d| remove_tree(d)) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(self.io_error(id, "removing", e));
        }
        self.others.remove(&path)
    }
}

/// True when the cgroup directory `dir` has a process in it.
fn has_processes(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
}
