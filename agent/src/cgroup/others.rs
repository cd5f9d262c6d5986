//! The hierarchies berth sets no limits in, but where a container still
//! gets a cgroup of its own (v1 and hybrid hosts): `devices` (which carries
//! its device allow-list), `blkio`, `net_cls`, `perf_event`, `hugetlb`,
//! `rdma`, `misc`, `name=systemd`, the hybrid `unified` tree, whatever the
//! host mounts. A container left in berthd's cgroup of one of them could
//! create cgroups and change settings there from a nested namespace; in a
//! cgroup of its own under a cgroup namespace rooted there, it reaches
//! nothing else. They are plain directories: no controller code needed.

use std::path::{Path, PathBuf};

use super::devices::DeviceAccess;
use super::hierarchies::Mount;
use super::CgroupError;

/// The other hierarchies of a host.
#[derive(Debug, Clone, Default)]
pub(super) struct Others {
    mounts: Vec<Mount>,
}

impl Others {
    /// Of `mounted`, the hierarchies that carry none of `controllers` (those
    /// cgroups-rs handles). A host in v2 unified mode has none.
    pub(super) fn new(mounted: Vec<Mount>, unified: bool, controllers: &[String]) -> Self {
        if unified {
            return Others::default();
        }
        let mounts = mounted
            .into_iter()
            .filter(|m| m.v2 || !controllers.iter().any(|c| m.has(c)))
            .collect();
        Others { mounts }
    }

    /// `path` in the hierarchy of `controller`, if the host mounts one.
    pub(super) fn dir_of(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .find(|m| m.has(controller))
            .map(|m| Path::new(&m.path).join(path))
    }

    /// `path` in every one of them.
    pub(super) fn dirs(&self, path: &str) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|m| Path::new(&m.path).join(path))
            .collect()
    }

    /// True when one of them is the v1 device controller.
    pub(super) fn has_devices(&self) -> bool {
        self.mounts.iter().any(|m| m.has("devices"))
    }

    /// Makes `path` (relative to each hierarchy's root) in every one, with
    /// the device allow-list in the `devices` one; returns the directories,
    /// where the monitor places the container's init. On failure, removes
    /// what it made.
    pub(super) fn create(
        &self,
        path: &str,
        devices: &DeviceAccess,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let mut made = Vec::new();
        for m in &self.mounts {
            let dir = Path::new(&m.path).join(path);
            let step = std::fs::create_dir_all(&dir)
                .map_err(|e| unsupported(&dir, "creating", e))
                .and_then(|()| {
                    made.push(dir.clone());
                    if m.has("devices") {
                        allow_devices_v1(&dir, devices)
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = step {
                for d in made.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
                return Err(e);
            }
        }
        Ok(made)
    }

    /// Removes `path` from every one. The container's processes are gone
    /// by now (they were in the hierarchies cgroups-rs handles too), so an
    /// EBUSY only lasts while the kernel finishes their exit; a container
    /// that made cgroups below its own has those removed first.
    pub(super) fn remove(&self, path: &str) -> Result<(), CgroupError> {
        for m in &self.mounts {
            let dir = Path::new(&m.path).join(path);
            remove_tree(&dir).map_err(|e| unsupported(&dir, "removing", e))?;
        }
        Ok(())
    }

    /// The parent's directory in each one.
    pub(super) fn parent_dirs(&self, parent: &str) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|m| Path::new(&m.path).join(parent))
            .collect()
    }
}

/// Removes the cgroup directory `dir` and the cgroups below it, deepest
/// first, retrying briefly while the kernel still counts dying tasks.
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut last = None;
    for attempt in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
        // Busy: cgroups below it (made by the container), or tasks the
        // kernel has not finished with yet.
        if attempt == 0 {
            for child in std::fs::read_dir(dir)?.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&child.path())?;
                }
            }
            continue;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)))
}

/// v1: deny everything, then allow the container's list. A privileged
/// container keeps what it inherited from the parent.
fn allow_devices_v1(dir: &Path, devices: &DeviceAccess) -> Result<(), CgroupError> {
    let Some(rules) = devices.rules() else {
        return Ok(());
    };
    let write = |file: &str, line: &str| {
        std::fs::write(dir.join(file), line).map_err(|e| {
            CgroupError::Unsupported(format!(
                "device cgroup {}: writing {line:?} to {file}: {e}",
                dir.display()
            ))
        })
    };
    write("devices.deny", "a")?;
    for rule in rules {
        write("devices.allow", &rule.to_string())?;
    }
    Ok(())
}

fn unsupported(dir: &Path, what: &str, e: std::io::Error) -> CgroupError {
    CgroupError::Unsupported(format!("{what} cgroup {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::hierarchies::parse;

    #[test]
    fn the_others_are_what_cgroups_rs_does_not_handle() {
        let m = parse(
            "1 0 0:1 / /c/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /c/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             3 0 0:3 / /c/devices rw - cgroup cgroup rw,devices\n\
             4 0 0:4 / /c/systemd rw - cgroup cgroup rw,name=systemd\n\
             5 0 0:5 / /c/unified rw - cgroup2 cgroup2 rw\n",
        );
        let ctrls = ["cpu".to_string(), "cpuacct".into(), "memory".into()];
        let o = Others::new(m.clone(), false, &ctrls);
        let dirs = o.parent_dirs("berth");
        assert_eq!(
            dirs,
            [
                PathBuf::from("/c/devices/berth"),
                PathBuf::from("/c/systemd/berth"),
                PathBuf::from("/c/unified/berth"),
            ]
        );
        assert!(o.has_devices());
        assert!(Others::new(m, true, &ctrls).parent_dirs("x").is_empty());
    }

    #[test]
    fn remove_tree_removes_nested_dirs_and_tolerates_absence() -> std::io::Result<()> {
        let t = std::env::temp_dir().join(format!("berth-rmtree-{}", std::process::id()));
        std::fs::create_dir_all(t.join("a/b/c"))?;
        std::fs::create_dir_all(t.join("d"))?;
        remove_tree(&t)?;
        assert!(!t.exists());
        remove_tree(&t)
    }
}
