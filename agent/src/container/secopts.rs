//! A container's security options beyond seccomp: capabilities
//! (`cap_add`/`cap_drop`), a read-only root, `--device` passthrough and
//! `--privileged`; checked at Create, turned into what the monitor and the
//! device cgroup need at Start.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_runtime::caps::{self, CapError, CapSet};
use berth_runtime::launch::DeviceNode;
use serde::{Deserialize, Serialize};

use super::error::{ContainerError, Result};
use super::record::SpecRecord;
use crate::cgroup::{DeviceAccess, DeviceKind, DeviceRule};
use crate::error::capped;

/// The most entries `cap_add` and `cap_drop` each take.
pub const MAX_CAPS: usize = 64;
/// The most `--device` mappings a container takes.
pub const MAX_DEVICES: usize = 64;
/// The most host device nodes a privileged container gets.
pub const MAX_HOST_DEVICES: usize = 4096;
const MAX_PATH: usize = 4096;

/// Entries of a container's /dev that berth makes itself: a device may not
/// take their place (and none of them may be followed before
/// `pivot_root`, where the symlinks among them lead into the host).
const RESERVED: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
    "stdin", "stdout", "stderr", "core",
];

/// One `--device`, as the spec keeps it (normalised at Create).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    /// The host's device node.
    pub host_path: String,
    /// Its path in the container.
    pub container_path: String,
    /// "r", "w", "m" in that order, each at most once.
    pub permissions: String,
}

/// The capabilities the container's root keeps: every one for a
/// privileged container (also those newer than berth), else the result of
/// `cap_add`/`cap_drop` (checked at Create).
pub fn capabilities(spec: &SpecRecord) -> u64 {
    if spec.privileged {
        return u64::MAX;
    }
    caps::resolve(&spec.cap_add, &spec.cap_drop)
        .map(|s| s.0)
        .unwrap_or(caps::DEFAULT.0)
}

/// The capability names the seccomp profile's conditions are decided on.
pub fn capability_names(spec: &SpecRecord) -> Vec<String> {
    CapSet(capabilities(spec)).names()
}

/// Checks and normalises the security options of `spec`: refuses unknown
/// capabilities, bad device mappings and combinations privileged excludes.
pub fn check(spec: &mut SpecRecord) -> Result<()> {
    check_userns(spec)?;
    for (field, list) in [
        ("security.cap_add", &spec.cap_add),
        ("security.cap_drop", &spec.cap_drop),
    ] {
        if list.len() > MAX_CAPS {
            return Err(ContainerError::invalid(
                field,
                format!("{} capabilities: at most {MAX_CAPS}", list.len()),
            ));
        }
    }
    if let Err((add, CapError::Unknown(i))) = caps::resolve(&spec.cap_add, &spec.cap_drop) {
        let (field, name) = if add {
            ("security.cap_add", &spec.cap_add[i])
        } else {
            ("security.cap_drop", &spec.cap_drop[i])
        };
        return Err(ContainerError::invalid(
            field,
            format!("unknown capability {:?}", capped(name)),
        ));
    }
    if spec.privileged {
        if !spec.cap_add.is_empty() || !spec.cap_drop.is_empty() {
            return Err(ContainerError::invalid(
                "security.privileged",
                "a privileged container has every capability: cap_add and cap_drop do not apply",
            ));
        }
        if !matches!(
            spec.seccomp,
            crate::seccomp::Choice::Unset | crate::seccomp::Choice::Unconfined
        ) {
            return Err(ContainerError::invalid(
                "security.privileged",
                "a privileged container runs without seccomp: a seccomp profile does not apply",
            ));
        }
    }
    if spec.devices.len() > MAX_DEVICES {
        return Err(ContainerError::invalid(
            "devices",
            format!("{} devices: at most {MAX_DEVICES}", spec.devices.len()),
        ));
    }
    for d in &mut spec.devices {
        check_device(d)?;
    }
    for (i, a) in spec.devices.iter().enumerate() {
        for b in &spec.devices[i + 1..] {
            let under = |x: &str, y: &str| y.strip_prefix(x).is_some_and(|r| r.starts_with('/'));
            if a.container_path == b.container_path
                || under(&a.container_path, &b.container_path)
                || under(&b.container_path, &a.container_path)
            {
                return Err(ContainerError::invalid(
                    "devices.container_path",
                    format!(
                        "two devices at {:?} and {:?}",
                        capped(&a.container_path),
                        capped(&b.container_path)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An absolute path of plain components (no `.`, `..` or empty ones).
fn clean_absolute(p: &str) -> bool {
    p.len() <= MAX_PATH
        && p.starts_with('/')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

fn check_device(d: &mut DeviceMapping) -> Result<()> {
    if !clean_absolute(&d.host_path) {
        return Err(ContainerError::invalid(
            "devices.host_path",
            format!(
                "device {:?}: not an absolute path of plain components",
                capped(&d.host_path)
            ),
        ));
    }
    if d.container_path.is_empty() {
        d.container_path = d.host_path.clone();
    }
    let shown = capped(&d.container_path);
    let rest = d.container_path.strip_prefix("/dev/");
    if !clean_absolute(&d.container_path) || rest.is_none() {
        return Err(ContainerError::invalid(
            "devices.container_path",
            format!("device path {shown:?} in the container is not a path under /dev"),
        ));
    }
    let first = rest
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    if RESERVED.contains(&first) {
        return Err(ContainerError::invalid(
            "devices.container_path",
            format!("{shown:?} is one of the container's own /dev entries"),
        ));
    }
    let perms = if d.permissions.is_empty() {
        "rwm"
    } else {
        d.permissions.as_str()
    };
    let valid = perms.len() <= 3
        && perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && ['r', 'w', 'm']
            .iter()
            .all(|c| perms.chars().filter(|x| x == c).count() <= 1);
    if !valid {
        return Err(ContainerError::invalid(
            "devices.permissions",
            format!(
                "device permissions {:?}: use r, w and m (\"rwm\")",
                capped(perms)
            ),
        ));
    }
    d.permissions = ['r', 'w', 'm']
        .iter()
        .filter(|c| perms.contains(**c))
        .collect();
    host_device(&d.host_path).map(drop)
}

/// The host device at `path` (symlinks followed): a node of its numbers,
/// owner and mode, at `path` for now.
fn host_device(path: &str) -> Result<DeviceNode> {
    let shown = capped(path);
    let meta = std::fs::metadata(path).map_err(|e| {
        ContainerError::invalid("devices.host_path", format!("device {shown:?}: {e}"))
    })?;
    let ft = meta.file_type();
    if !ft.is_char_device() && !ft.is_block_device() {
        return Err(ContainerError::invalid(
            "devices.host_path",
            format!("{shown:?} is not a character or block device"),
        ));
    }
    let rdev = meta.rdev();
    Ok(DeviceNode {
        path: path.to_string(),
        block: ft.is_block_device(),
        major: nix::sys::stat::major(rdev) as u32,
        minor: nix::sys::stat::minor(rdev) as u32,
        mode: meta.mode() & 0o777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// The device nodes the container's /dev gets and the device cgroup's
/// rules, resolved now (a host device may have changed since Create).
pub fn devices(spec: &SpecRecord) -> Result<(Vec<DeviceNode>, DeviceAccess)> {
    let mut nodes = Vec::new();
    let mut extra = Vec::new();
    for d in &spec.devices {
        let mut node = host_device(&d.host_path)?;
        node.path = d.container_path.clone();
        extra.push(DeviceRule {
            kind: if node.block {
                DeviceKind::Block
            } else {
                DeviceKind::Char
            },
            major: Some(node.major),
            minor: Some(node.minor),
            read: d.permissions.contains('r'),
            write: d.permissions.contains('w'),
            mknod: d.permissions.contains('m'),
        });
        nodes.push(node);
    }
    if !spec.privileged {
        return Ok((nodes, DeviceAccess::Default { extra }));
    }
    let mut host = Vec::new();
    host_devices(Path::new("/dev"), &mut host)
        .map_err(|e| ContainerError::io("listing the host's devices in /dev", e))?;
    for node in host {
        let taken = nodes.iter().any(|n| {
            n.path == node.path
                || node
                    .path
                    .strip_prefix(n.path.as_str())
                    .is_some_and(|r| r.starts_with('/'))
                || n.path
                    .strip_prefix(node.path.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        });
        if !taken {
            nodes.push(node);
        }
    }
    Ok((nodes, DeviceAccess::All))
}

/// Every character and block device under `dir` (the host's /dev), as
/// Docker gives a privileged container: not the entries berth makes
/// itself, nor symlinks, nor /dev/pts, /dev/shm and /dev/mqueue.
fn host_devices(dir: &Path, out: &mut Vec<DeviceNode>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = dir.join(&name);
        let Some(p) = path.to_str() else { continue };
        let top = p.strip_prefix("/dev/").unwrap_or(p);
        if RESERVED.contains(&top.split('/').next().unwrap_or_default()) {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            host_devices(&path, out)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            if out.len() >= MAX_HOST_DEVICES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_HOST_DEVICES} device nodes"
                )));
            }
            // Gone between listing and stat: not a device to give.
            if let Ok(node) = host_device(p) {
                out.push(node);
            }
        }
    }
    Ok(())
}

/// `userns`: "" or "host" (the host's user namespace; stored as ""), or
/// "auto" (one of its own), which cannot have what its root could not own:
/// privileges, host devices.
fn check_userns(spec: &mut SpecRecord) -> Result<()> {
    match spec.userns.as_str() {
        "" | "host" => {
            spec.userns.clear();
            return Ok(());
        }
        "auto" => {}
        other => {
            return Err(ContainerError::invalid(
                "security.userns",
                format!(
                    "unknown user namespace mode {:?}: \"host\" or \"auto\"",
                    capped(other)
                ),
            ))
        }
    }
    if spec.privileged {
        return Err(ContainerError::invalid(
            "security.userns",
            "a privileged container is host root: it cannot have a user namespace of its own",
        ));
    }
    if !spec.devices.is_empty() {
        return Err(ContainerError::UsernsUnsupported(
            "with host devices".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SpecRecord {
        SpecRecord::default()
    }

    fn device(host: &str, container: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        }
    }

    fn field(r: Result<()>) -> &'static str {
        match r {
            Err(ContainerError::InvalidSpec { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capabilities_follow_docker() {
        let mut s = spec();
        assert_eq!(capabilities(&s), caps::DEFAULT.0);
        s.cap_add = vec!["sys_time".into()];
        s.cap_drop = vec!["CAP_NET_RAW".into()];
        check(&mut s).unwrap();
        let names = capability_names(&s);
        assert!(names.contains(&"CAP_SYS_TIME".into()));
        assert!(!names.contains(&"CAP_NET_RAW".into()));
        s.cap_add = vec!["CAP_NOPE".into()];
        assert_eq!(field(check(&mut s)), "security.cap_add");
        s.cap_add = vec![];
        s.cap_drop = vec!["x".repeat(100)];
        assert_eq!(field(check(&mut s)), "security.cap_drop");
        s.cap_drop = vec!["CHOWN".into(); MAX_CAPS + 1];
        assert_eq!(field(check(&mut s)), "security.cap_drop");
    }

    #[test]
    fn privileged_excludes_caps_and_profiles() {
        let mut s = spec();
        s.privileged = true;
        check(&mut s).unwrap();
        assert_eq!(capabilities(&s), u64::MAX);
        s.cap_drop = vec!["CHOWN".into()];
        assert_eq!(field(check(&mut s)), "security.privileged");
        s.cap_drop = vec![];
        s.seccomp = crate::seccomp::Choice::Default;
        assert_eq!(field(check(&mut s)), "security.privileged");
        s.seccomp = crate::seccomp::Choice::Unconfined;
        check(&mut s).unwrap();
    }

    #[test]
    fn devices_are_checked_and_normalised() {
        let mut s = spec();
        s.devices = vec![device("/dev/zero", "/dev/myzero", "wr")];
        check(&mut s).unwrap();
        assert_eq!(s.devices[0].permissions, "rw");
        // The container path defaults to the host's: here the container's
        // own /dev/zero, refused.
        s.devices = vec![device("/dev/zero", "", "")];
        assert_eq!(field(check(&mut s)), "devices.container_path");
        let mut s = spec();
        s.devices = vec![device("/dev/zero", "/dev/null", "")];
        assert_eq!(field(check(&mut s)), "devices.container_path");
        for (host, container, perms, what) in [
            ("/etc/passwd", "/dev/x", "r", "devices.host_path"),
            ("/dev/../dev/zero", "/dev/x", "r", "devices.host_path"),
            ("dev/zero", "/dev/x", "r", "devices.host_path"),
            ("/dev/no-such-device", "/dev/x", "r", "devices.host_path"),
            ("/dev/zero", "/tmp/x", "r", "devices.container_path"),
            ("/dev/zero", "/dev", "r", "devices.container_path"),
            ("/dev/zero", "/dev/fd/x", "r", "devices.container_path"),
            ("/dev/zero", "/dev/a/../b", "r", "devices.container_path"),
            ("/dev/zero", "/dev/x", "rx", "devices.permissions"),
            ("/dev/zero", "/dev/x", "rr", "devices.permissions"),
        ] {
            let mut s = spec();
            s.devices = vec![device(host, container, perms)];
            assert_eq!(field(check(&mut s)), what, "{host} {container} {perms}");
        }
        let mut s = spec();
        s.devices = vec![
            device("/dev/zero", "/dev/a", "r"),
            device("/dev/zero", "/dev/a/b", "r"),
        ];
        assert_eq!(field(check(&mut s)), "devices.container_path");
    }

    #[test]
    fn devices_become_nodes_and_rules() {
        let mut s = spec();
        s.devices = vec![device("/dev/zero", "/dev/myzero", "r")];
        check(&mut s).unwrap();
        let (nodes, access) = devices(&s).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].major, nodes[0].minor), (1, 5));
        assert_eq!(nodes[0].path, "/dev/myzero");
        let DeviceAccess::Default { extra } = access else {
            panic!("not the default access");
        };
        assert_eq!(extra[0].to_string(), "c 1:5 r");
    }
}
