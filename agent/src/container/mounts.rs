//! A container's own mounts: checking what a spec asks for (before
//! anything is created), resolving it at Create (volumes made on demand,
//! anonymous ones named), and what the monitor is given at each start.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{ContainerError, Result};
use super::record::SpecRecord;
use super::Manager;
use crate::error::capped;
use crate::volume::VolumeError;
use berth_runtime::launch::{UserMount, UserMountKind};

/// The most mounts a container may have.
pub const MOUNTS_MAX: usize = 64;
/// The largest tmpfs size accepted (1 TiB).
pub const TMPFS_SIZE_MAX: u64 = 1 << 40;
/// The longest bind source.
const SOURCE_MAX: usize = 4096;
/// The longest propagation value.
const PROPAGATION_MAX: usize = 16;

/// The kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A volume of the agent's.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

/// A mount as the client asked for it (mirrors `berth.v1.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// The kind.
    pub kind: MountKind,
    /// Bind: host path; volume: name ("" anonymous); tmpfs: "".
    pub source: String,
    /// The path in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
    /// Bind propagation as given.
    pub propagation: String,
    /// Bind: also the mounts under the source (default true).
    pub recursive: Option<bool>,
    /// Tmpfs size in bytes (0: the kernel's default).
    pub tmpfs_size: u64,
    /// Tmpfs root mode (0: 0o1777).
    pub tmpfs_mode: u32,
    /// Volume: no copy-up of the image's content.
    #[serde(default)]
    pub no_copy: bool,
    /// Bind made by berthd itself for a build's RUN (a cache mount, the
    /// context): its source may be under `<state>/build`, and only there.
    /// Never set from the API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build: bool,
    /// Bind, read-only and recursive: only the top mount is read-only (a
    /// CRI mount without `recursive_read_only`). Never set from berth's API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_top_only: bool,
    /// Bind made by the CRI front end of a pod's `/dev/shm` (its own
    /// tmpfs under the state directory, or the host's `/dev/shm` with
    /// hostIPC), and only those. Never set from berth's API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pod_shm: bool,
}

/// A mount as resolved at Create, kept in the container's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedMount {
    /// The kind.
    pub kind: MountKind,
    /// Bind: the host path; volume: its data directory; tmpfs: "".
    pub source: String,
    /// The path in the container.
    pub target: String,
    /// Volume: its name.
    pub volume: String,
    /// Volume: an anonymous one (removed by `rm -v`).
    pub anonymous: bool,
    /// Read-only.
    pub read_only: bool,
    /// Bind: recursive.
    pub recursive: bool,
    /// Tmpfs size in bytes.
    pub tmpfs_size: u64,
    /// Tmpfs root mode.
    pub tmpfs_mode: u32,
    /// Volume: copy the image's content in while it is empty.
    #[serde(default)]
    pub copy_up: bool,
    /// Bind: its propagation as asked ("" private).
    #[serde(default)]
    pub propagation: String,
    /// Bind: read-only at its top only (see [`MountSpec`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_top_only: bool,
}

impl ResolvedMount {
    /// The source the monitor opens, with no symlink followed on its path.
    /// A bind's was canonicalized (and checked) at Create and is used as
    /// is: a symlink swapped in since must fail the start, not be
    /// followed. A volume's is berthd's own directory, canonicalized now
    /// (the state directory may be reached through a symlink).
    fn monitor_source(&self) -> String {
        if self.kind == MountKind::Volume {
            if let Ok(real) = std::fs::canonicalize(&self.source) {
                if let Ok(s) = crate::fsutil::utf8_path(&real) {
                    return s;
                }
            }
        }
        self.source.clone()
    }

    /// What the monitor makes of it.
    pub fn launch(&self) -> UserMount {
        UserMount {
            target: self.target.clone(),
            read_only: self.read_only,
            read_only_top_only: self.read_only_top_only,
            kind: match self.kind {
                MountKind::Bind | MountKind::Volume => UserMountKind::Bind {
                    source: self.monitor_source(),
                    recursive: self.recursive,
                    copy_up: self.copy_up,
                    slave: super::propagation::is_slave(&self.propagation),
                    shared: super::propagation::is_shared(&self.propagation),
                },
                MountKind::Tmpfs => UserMountKind::Tmpfs {
                    size: self.tmpfs_size,
                    mode: self.tmpfs_mode,
                },
            },
        }
    }
}

fn invalid(reason: String) -> ContainerError {
    ContainerError::invalid("mounts", reason)
}

/// Checks `spec.mounts` (nothing on the host is created or changed):
/// targets, bind sources (existing, not sensitive host paths, not the
/// state directory `state_dir` or what holds it), volume names, tmpfs
/// options. Targets are normalised in place (no trailing `/`).
pub fn check(spec: &mut SpecRecord, state_dir: &Path) -> Result<()> {
    if spec.mounts.is_empty() {
        return Ok(());
    }
    // The pod's /dev/shm is berth's own, not one of the mounts asked for.
    let asked = spec.mounts.iter().filter(|m| !m.pod_shm).count();
    if asked > MOUNTS_MAX {
        return Err(invalid(format!(
            "{asked} mounts: at most {MOUNTS_MAX} are accepted"
        )));
    }
    // The one /dev/shm a CRI container may bind: its pod's, or the host's
    // in the host's IPC namespace.
    let pod_shm = spec.pod.as_ref().map(|p| {
        if p.host_ipc {
            PathBuf::from("/dev/shm")
        } else {
            p.ns_dir.join(crate::sys::pin::SHM)
        }
    });
    if !spec.userns.is_empty() && spec.userns != "host" {
        return Err(ContainerError::UsernsUnsupported(
            "mounts with --userns auto".into(),
        ));
    }
    let mut targets = std::collections::HashSet::new();
    for m in &mut spec.mounts {
        berth_runtime::plan::mounts::check_target(&m.target).map_err(|e| {
            invalid(format!(
                "mount target {:?} {}",
                capped(&m.target),
                e.reason()
            ))
        })?;
        let trimmed = m.target.trim_end_matches('/').to_string();
        m.target = trimmed;
        if !targets.insert(m.target.clone()) {
            return Err(invalid(format!(
                "two mounts have the target {:?}",
                capped(&m.target)
            )));
        }
        if m.propagation.len() > PROPAGATION_MAX {
            return Err(invalid("propagation is longer than 16 bytes".into()));
        }
        match m.kind {
            MountKind::Bind => check_bind(m, state_dir, pod_shm.as_deref())?,
            MountKind::Volume => {
                if !m.source.is_empty() {
                    crate::volume::validate_name(&m.source).map_err(ContainerError::from)?;
                }
                only_for_binds(m)?;
            }
            MountKind::Tmpfs => {
                if !m.source.is_empty() {
                    return Err(invalid("a tmpfs mount has no source".into()));
                }
                only_for_binds(m)?;
                if m.tmpfs_size > TMPFS_SIZE_MAX {
                    return Err(invalid("tmpfs size is larger than 1 TiB".into()));
                }
                if m.tmpfs_mode > 0o7777 {
                    return Err(invalid("tmpfs mode is larger than 0o7777".into()));
                }
            }
        }
        if m.kind != MountKind::Volume && m.no_copy {
            return Err(invalid("no_copy is for volume mounts".into()));
        }
        if m.kind != MountKind::Tmpfs && (m.tmpfs_size != 0 || m.tmpfs_mode != 0) {
            return Err(invalid("tmpfs size and mode are for tmpfs mounts".into()));
        }
    }
    Ok(())
}

/// The mounts a container gets: the spec's (checked), plus an anonymous
/// volume at each of the image's `Volumes` that no mount of the spec has
/// as its target (Docker's behaviour; the image's content there is copied
/// in on first use). A container in a user namespace of its own gets none
/// of the image's (its mounts are not supported yet): those paths stay in
/// its writable layer. Sorted by depth, so a mount inside another's target
/// comes after it whatever the order given.
pub fn with_image_volumes(spec: &SpecRecord, image_volumes: &[String]) -> Result<Vec<MountSpec>> {
    let mut all = spec.mounts.clone();
    if spec.userns.is_empty() || spec.userns == "host" {
        for raw in image_volumes {
            // Cleaned as Docker cleans them ("//data", "/data/./x"); ".."
            // stays, and is refused.
            let parts: Vec<&str> = raw
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            let path = &if raw.starts_with('/') {
                format!("/{}", parts.join("/"))
            } else {
                raw.clone()
            };
            berth_runtime::plan::mounts::check_target(path).map_err(|e| {
                ContainerError::invalid(
                    "image",
                    format!("the image's volume {:?} {}", capped(path), e.reason()),
                )
            })?;
            let target = path.trim_end_matches('/').to_string();
            // Under a shared bind it would reach the host (see below): the
            // path is the bind's, on the host, as the user chose.
            if all.iter().any(|m| m.target == target) || under_shared_bind(&all, &target).is_some()
            {
                continue;
            }
            all.push(MountSpec {
                kind: MountKind::Volume,
                source: String::new(),
                target,
                read_only: false,
                propagation: String::new(),
                recursive: None,
                tmpfs_size: 0,
                tmpfs_mode: 0,
                no_copy: false,
                build: false,
                read_only_top_only: false,
                pod_shm: false,
            });
        }
    }
    // A mount berth makes under a shared bind's target would propagate to
    // the bind's source on the host and stay there after the container.
    for m in &all {
        if let Some(bind) = under_shared_bind(&all, &m.target) {
            return Err(invalid(format!(
                "mount target {:?} is under the shared bind at {:?}: it would be mounted on \
                 the host too, and stay there; choose another target, or rslave propagation",
                capped(&m.target),
                capped(bind)
            )));
        }
    }
    if all.iter().filter(|m| !m.pod_shm).count() > MOUNTS_MAX {
        return Err(invalid(format!(
            "{} mounts with the image's volumes: at most {MOUNTS_MAX} are accepted",
            all.len()
        )));
    }
    all.sort_by_key(|m| m.target.matches('/').count());
    Ok(all)
}

/// The target of a shared (or rshared) bind that `target` is strictly
/// under, if any.
fn under_shared_bind<'a>(all: &'a [MountSpec], target: &str) -> Option<&'a str> {
    all.iter()
        .filter(|b| b.kind == MountKind::Bind && super::propagation::is_shared(&b.propagation))
        .map(|b| b.target.as_str())
        .find(|t| {
            target
                .strip_prefix(t.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
        })
}

fn only_for_binds(m: &MountSpec) -> Result<()> {
    if !m.propagation.is_empty() || m.recursive.is_some() {
        return Err(invalid(
            "propagation and recursive are for bind mounts".into(),
        ));
    }
    Ok(())
}

/// Host paths no container may have bound in: the host's root and kernel
/// interfaces (as Docker refuses `/`), its devices.
const SENSITIVE: [&str; 4] = ["/", "/proc", "/sys", "/dev"];

fn check_bind(m: &MountSpec, state_dir: &Path, pod_shm: Option<&Path>) -> Result<()> {
    match m.propagation.as_str() {
        "" | "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
        other => {
            return Err(invalid(format!(
                "unknown bind propagation {:?}",
                capped(other)
            )))
        }
    }
    let src = &m.source;
    if src.len() > SOURCE_MAX {
        return Err(invalid("a bind source is longer than 4096 bytes".into()));
    }
    let path = Path::new(src);
    if !path.is_absolute()
        || src.contains('\0')
        || path
            .components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(invalid(format!(
            "bind source {:?} is not an absolute path without \".\" or \"..\"",
            capped(src)
        )));
    }
    // Where it really is: a symlink to a sensitive path is that path.
    let real = std::fs::canonicalize(path).map_err(|e| {
        invalid(format!(
            "bind source {:?} cannot be used: {e} (it is not created)",
            capped(src)
        ))
    })?;
    let sensitive = SENSITIVE.iter().any(|s| {
        let s = Path::new(s);
        real == s || (s != Path::new("/") && real.starts_with(s))
    });
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    // Only where builds keep what their steps mount: the caches, and a
    // build's own context.
    let build_owned = |under: &str| {
        real.strip_prefix(state.join("build").join(under))
            .is_ok_and(|rest| rest.components().next().is_some())
    };
    if m.build && (build_owned("caches") || build_owned("work")) {
        return check_source_propagation(m, src, &real);
    }
    // A CRI pod's /dev/shm: its own (`cri/pods/<id>/ns/shm`, of this
    // container's pod only), or the host's for a pod in the host's IPC
    // namespace.
    let is_pod_shm = pod_shm
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| p == real);
    if m.pod_shm && is_pod_shm {
        return check_source_propagation(m, src, &real);
    }
    if sensitive || real.starts_with(&state) || state.starts_with(&real) {
        return Err(invalid(format!(
            "bind source {:?} is a host path no container may have (/, /proc, /sys, /dev, \
             berthd's state directory or a directory holding it)",
            capped(src)
        )));
    }
    check_source_propagation(m, src, &real)
}

/// A slave bind needs a source on a shared or slave mount, a shared bind
/// one on a shared mount (as Docker checks): else the propagation asked
/// for could never happen.
fn check_source_propagation(m: &MountSpec, src: &str, real: &Path) -> Result<()> {
    use super::propagation::{is_shared, is_slave, SourcePropagation};
    let (slave, shared) = (is_slave(&m.propagation), is_shared(&m.propagation));
    if !slave && !shared {
        return Ok(());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ContainerError::io("reading /proc/self/mountinfo", e))?;
    match super::propagation::source_propagation(&info, real) {
        Some((point, SourcePropagation::Private)) => Err(invalid(format!(
            "bind source {:?} is on mount {:?}, which is neither shared nor a slave: \
             nothing mounted there later could reach the container (make it shared: \
             mount --make-shared {:?}), or use private propagation",
            capped(src),
            capped(&point),
            capped(&point)
        ))),
        Some((point, SourcePropagation::Slave)) if shared => Err(invalid(format!(
            "bind source {:?} is on mount {:?}, which is not shared (only a slave): \
             nothing mounted in the container could reach the host (make it shared: \
             mount --make-shared {:?}), or use rslave or private propagation",
            capped(src),
            capped(&point),
            capped(&point)
        ))),
        _ => Ok(()),
    }
}

impl Manager {
    /// The state directory (where `containers/` and `volumes/` are).
    pub(super) fn state_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| self.dir.clone(), Path::to_path_buf)
    }

    /// Resolves checked mounts: named volumes are created when missing,
    /// anonymous ones made with a generated name. Returns the mounts and
    /// the volumes created now (to remove again if the Create fails).
    pub(super) fn resolve_mounts(
        &self,
        mounts: &[MountSpec],
    ) -> Result<(Vec<ResolvedMount>, Vec<String>)> {
        let mut out = Vec::with_capacity(mounts.len());
        let mut created = Vec::new();
        for m in mounts {
            let mut r = ResolvedMount {
                kind: m.kind,
                source: m.source.clone(),
                target: m.target.clone(),
                volume: String::new(),
                anonymous: false,
                read_only: m.read_only,
                recursive: m.recursive.unwrap_or(true),
                tmpfs_size: m.tmpfs_size,
                tmpfs_mode: if m.tmpfs_mode == 0 {
                    0o1777
                } else {
                    m.tmpfs_mode
                },
                copy_up: m.kind == MountKind::Volume && !m.no_copy,
                propagation: m.propagation.clone(),
                read_only_top_only: m.kind == MountKind::Bind && m.read_only_top_only,
            };
            match m.kind {
                MountKind::Bind => {
                    let real = std::fs::canonicalize(&m.source)
                        .map_err(|e| invalid(format!("bind source: {e}")))?;
                    r.source = crate::fsutil::utf8_path(&real)
                        .map_err(|e| ContainerError::io("bind source", e))?;
                }
                MountKind::Volume => {
                    let anonymous = m.source.is_empty();
                    let made = self
                        .volumes
                        .create(&m.source, Default::default(), anonymous, true);
                    let (vol, new) = match made {
                        Ok(v) => v,
                        Err(e) => {
                            self.drop_volumes(&created);
                            return Err(e.into());
                        }
                    };
                    if new {
                        created.push(vol.name.clone());
                    }
                    r.source = crate::fsutil::utf8_path(&self.volumes.data_dir(&vol.name))
                        .map_err(|e| ContainerError::io("volume path", e))?;
                    r.volume = vol.name;
                    r.anonymous = anonymous;
                    r.recursive = false;
                }
                MountKind::Tmpfs => r.recursive = false,
            }
            out.push(r);
        }
        Ok((out, created))
    }

    /// Removes volumes a failed Create made (nothing uses them).
    pub(super) fn drop_volumes(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.volumes.remove(name) {
                tracing::warn!("removing volume {name} again: {e}");
            }
        }
    }

    /// Full ids of the containers whose mounts include volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let table = self.table();
        let mut users: Vec<String> = table
            .by_id
            .values()
            .filter_map(|e| {
                let rec = e.lock_record();
                rec.mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.volume == name)
                    .then(|| rec.id.clone())
            })
            .collect();
        users.sort();
        users
    }

    /// The volume store.
    pub fn volumes(&self) -> &crate::volume::VolumeStore {
        &self.volumes
    }

    /// Creates a volume through the API, and announces it.
    pub fn create_volume(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<crate::volume::VolumeRecord, VolumeError> {
        let (rec, _) = self.volumes.create(name, labels, false, false)?;
        self.announce_volume(&rec, crate::events::domain::Action::Created);
        Ok(rec)
    }

    /// Removes volume `name` unless a container uses it (checked and done
    /// under the container table's lock, so no Create takes it meanwhile);
    /// returns the bytes freed.
    pub fn remove_volume(&self, name: &str) -> Result<u64, VolumeError> {
        let table = self.table();
        let users: Vec<String> = table
            .by_id
            .values()
            .filter_map(|e| {
                let rec = e.lock_record();
                rec.mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.volume == name)
                    .then(|| rec.id[..12].to_string())
            })
            .take(8)
            .collect();
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.into(),
                users,
            });
        }
        let rec = self.volumes.get(name)?;
        let gone = self.volumes.take(name)?;
        drop(table);
        // Deleted outside the table's lock: a large volume takes a while.
        let bytes = crate::volume::purge(&gone);
        self.announce_volume(&rec, crate::events::domain::Action::Removed);
        Ok(bytes)
    }

    /// Announces a volume event.
    pub(super) fn announce_volume(
        &self,
        rec: &crate::volume::VolumeRecord,
        action: crate::events::domain::Action,
    ) {
        use crate::events::domain::{Event, Object};
        let mut ev = Event::new(Object::Volume, action, rec.name.clone());
        ev.name = rec.name.clone();
        ev.labels = rec.labels.clone();
        self.events.publish(ev);
    }

    /// After a container's removal: removes its anonymous volumes that no
    /// other container uses.
    pub(super) fn remove_anonymous_volumes(&self, mounts: &[ResolvedMount]) {
        for m in mounts.iter().filter(|m| m.anonymous) {
            match self.remove_volume(&m.volume) {
                Ok(_) | Err(VolumeError::InUse { .. }) | Err(VolumeError::NotFound { .. }) => {}
                Err(e) => tracing::warn!("removing volume {}: {e}", m.volume),
            }
        }
    }
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
