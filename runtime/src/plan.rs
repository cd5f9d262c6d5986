//! The container's mounts, masks and namespace steps, as a plan.
//!
//! The monitor's init executes these steps one by one, in order, between
//! fork and exec (`monitor/src/setup.rs`). Keeping them a pure description
//! makes the order and the flags testable here, with the std test harness,
//! and gives volumes, exec and new mount types one place to extend: a new
//! step, or new steps in [`container_setup`], instead of code in the middle
//! of a system call sequence.
//!
//! Until [`Step::PivotRoot`], paths are host paths (the root is the overlay
//! at `LaunchSpec::rootfs.target`); after it they are paths in the
//! container.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::launch::{DeviceNode, LaunchSpec, UserMount};

mod flags;
pub use flags::MountFlags;

/// What kernel filesystems get unless they need device nodes or programs.
const NOSUID_NOEXEC_NODEV: MountFlags = MountFlags(2 | 4 | 8);
/// Read-only and inert: /sys and the cgroup filesystems.
const INERT_RO: MountFlags = MountFlags(1 | 2 | 4 | 8);

/// A namespace the init creates with unshare(2) or enters with setns(2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Namespace {
    /// `CLONE_NEWNS`.
    Mount,
    /// `CLONE_NEWUTS`.
    Uts,
    /// `CLONE_NEWIPC`.
    Ipc,
    /// `CLONE_NEWNET`.
    Net,
    /// `CLONE_NEWCGROUP`: rooted at the cgroup the process is in then.
    Cgroup,
}

/// One mount(2) of a filesystem.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mount {
    /// The source ("overlay", "proc", "tmpfs", ...).
    pub source: String,
    /// The mount point, which exists by then.
    pub target: String,
    /// The filesystem type.
    pub fstype: String,
    /// `MS_*` flags.
    pub flags: MountFlags,
    /// Filesystem options, if any.
    pub data: Option<String>,
}

/// One step of the container's setup.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Step {
    /// Enters the namespace at `path` instead of creating one: a network
    /// namespace (a spare of berthd's), or a pod's IPC or UTS namespace.
    /// First of all, before any [`Step::Unshare`]: the paths are the
    /// host's (berthd's /proc, its state directory), and the entered
    /// namespace is then left out of the new ones rather than made in vain.
    EnterNamespace {
        /// What namespace `path` is (`Net`, `Ipc` or `Uts`); setns(2)
        /// refuses a file of another kind.
        kind: Namespace,
        /// `/proc/<pid>/fd/<n>` of berthd, or a pinned nsfs file.
        path: String,
    },
    /// Creates these namespaces.
    Unshare(Vec<Namespace>),
    /// Makes every mount private (recursively), so nothing mounted from here
    /// on propagates back to the host.
    MakeMountsPrivate,
    /// Makes every mount a slave (recursively): nothing mounted from here
    /// on propagates back to the host, but the host's later mounts reach
    /// the copies, so a slave bind made from one receives them.
    MakeMountsSlave,
    /// Opens the source of a shared bind (`mount` is one with `shared`) as
    /// a detached mount while the new mount namespace's copies are still
    /// peers of the host's, so the clone joins the source's peer group;
    /// right after [`Step::Unshare`], before [`Step::MakeMountsSlave`].
    /// Its [`Step::UserMount`] later moves that clone onto the target.
    OpenSharedBind {
        /// The mount.
        mount: UserMount,
    },
    /// Mounts a filesystem.
    Mount(Mount),
    /// Bind-mounts `source` on `target` (a host device node on an empty file).
    Bind {
        /// What is bound.
        source: String,
        /// Where.
        target: String,
    },
    /// Remounts the mount at `target` with `flags` (`MS_REMOUNT`).
    Remount {
        /// The mount point.
        target: String,
        /// The new flags.
        flags: MountFlags,
    },
    /// Makes sure `path` is a directory: created (in the container's layer)
    /// when missing; anything else there, a symlink included, fails.
    EnsureDir {
        /// The directory.
        path: String,
    },
    /// Creates the directory `path`, which must not exist.
    MakeDir {
        /// The directory.
        path: String,
    },
    /// Creates the empty file `path`, which must not exist.
    CreateFile {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Creates the symlink `path` pointing to `to`.
    Symlink {
        /// The link.
        path: String,
        /// Its content.
        to: String,
    },
    /// Writes files into the directory `dir` of the container's layer,
    /// replacing whatever the image has there without following it; nothing
    /// when `dir` is not a real directory.
    WriteFiles {
        /// The directory (the image's /etc).
        dir: String,
        /// Name and content of each file.
        files: Vec<(String, String)>,
    },
    /// Waits until the monitor has placed the process in its cgroup.
    AwaitCgroup,
    /// Makes `root` the root directory and detaches the old root, so no host
    /// file stays reachable. Paths after this step are container paths.
    PivotRoot {
        /// The new root.
        root: String,
    },
    /// Covers the file `path` with /dev/null, if it exists (a directory
    /// found there instead is covered as [`Step::MaskDir`] does). Any
    /// failure but its absence fails the start.
    MaskFile {
        /// The file.
        path: String,
    },
    /// Covers the directory `path` with an empty read-only tmpfs, if it
    /// exists (anything else found there is covered as [`Step::MaskFile`]
    /// does). Any failure but its absence fails the start.
    MaskDir {
        /// The directory.
        path: String,
    },
    /// Makes `path` and everything under it read-only, if it exists. Any
    /// failure but its absence fails the start (a /proc/sys left writable
    /// would leave `core_pattern` to the container).
    ReadonlyPath {
        /// The path.
        path: String,
    },
    /// Makes the device node `node` (its parent directories too) with the
    /// host device's numbers, owner and mode, and binds it on itself
    /// without `nodev`, so it opens on the `nodev` /dev; the device cgroup
    /// decides what access it gets.
    DeviceNode(DeviceNode),
    /// Sets the UTS namespace's hostname.
    SetHostname(String),
    /// Brings up `lo` of a network namespace the init created itself.
    LoopbackUp,
    /// Writes `value` to `path`, a file under the container's `/proc/sys`
    /// (a sysctl of one of its namespaces: see [`crate::sysctl`]). After
    /// `pivot_root` and before the masks make /proc/sys read-only.
    Sysctl {
        /// `/proc/sys/...`.
        path: String,
        /// What is written.
        value: String,
    },
    /// `--userns auto`, first step: waits until the monitor has written the
    /// maps of the init's user namespace (created with the init) and
    /// handed over the container's root, an overlay it mounted from the
    /// host side on idmapped image layers (open_tree + mount_setattr with
    /// the namespace, then fsopen("overlay") with the layers as fds).
    AwaitUserns,
    /// Attaches the root the monitor handed over at `target` (in the
    /// container's mount namespace, owned by its user namespace) and makes
    /// it the working directory: the steps after [`Step::BecomeRoot`] use
    /// paths relative to it, since the container's root (a host uid of its
    /// own) may not pass through the state directory to `target`.
    AttachRoot {
        /// The mount point (a host path).
        target: String,
    },
    /// Becomes uid and gid 0 of the user namespace (its host ids are the
    /// container's), with no supplementary groups: files the setup creates
    /// are then the container root's.
    BecomeRoot,
    /// Makes one of the container's own mounts (see [`mounts`]): the
    /// source as a detached mount (`open_tree` of a bind, `fsmount` of a
    /// tmpfs) with nosuid, nodev and read-only (recursively, unless
    /// [`UserMount::read_only_top_only`]) set on it, then
    /// moved onto the target, which is opened (and its missing components
    /// created) with `openat2(RESOLVE_IN_ROOT)` from `root`: nothing in the
    /// image can lead it outside.
    UserMount {
        /// The root (a host path, before `pivot_root`).
        root: String,
        /// The mount.
        mount: UserMount,
    },
}

impl Step {
    /// The path this step creates, mounts on or changes, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Step::Mount(m) => Some(&m.target),
            Step::Bind { target, .. } | Step::Remount { target, .. } => Some(target),
            Step::EnsureDir { path }
            | Step::MakeDir { path }
            | Step::CreateFile { path, .. }
            | Step::Symlink { path, .. }
            | Step::MaskFile { path }
            | Step::MaskDir { path }
            | Step::ReadonlyPath { path } => Some(path),
            Step::DeviceNode(node) => Some(&node.path),
            Step::WriteFiles { dir, .. } => Some(dir),
            Step::PivotRoot { root } => Some(root),
            Step::AttachRoot { target } => Some(target),
            Step::UserMount { mount, .. } | Step::OpenSharedBind { mount } => Some(&mount.target),
            Step::AwaitUserns | Step::BecomeRoot => None,
            Step::EnterNamespace { .. }
            | Step::Unshare(_)
            | Step::MakeMountsPrivate
            | Step::MakeMountsSlave
            | Step::AwaitCgroup
            | Step::SetHostname(_)
            | Step::Sysctl { .. }
            | Step::LoopbackUp => None,
        }
    }

    /// Whether this step only hides or protects a kernel interface: one a
    /// kernel may lack, and which then is skipped.
    pub fn is_mask(&self) -> bool {
        matches!(
            self,
            Step::MaskFile { .. } | Step::MaskDir { .. } | Step::ReadonlyPath { .. }
        )
    }
}

mod confine;
mod error;
pub mod mounts;
mod paths;
pub use confine::is_plain_absolute;
use confine::{check_userns, masks, sysctls};
pub use error::PlanError;
pub use paths::{DEVICES, DEV_SYMLINKS, MASKED_DIRS, MASKED_FILES, READONLY_PATHS};

fn mount(
    source: &str,
    target: String,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> Step {
    Step::Mount(Mount {
        source: source.to_string(),
        target,
        fstype: fstype.to_string(),
        flags,
        data: data.map(ToString::to_string),
    })
}

/// The overlay root: the image's layers (shared, read-only; the top one
/// first in `lowerdir`) under the container's own upper dir.
fn overlay(spec: &LaunchSpec) -> Result<Step, PlanError> {
    let fs = &spec.rootfs;
    if fs.layers.is_empty() {
        return Err(PlanError::NoLayers);
    }
    let lower: Vec<String> = fs
        .layers
        .iter()
        .rev()
        .map(|p| p.replace(':', "\\:"))
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        fs.upper,
        fs.work
    );
    // nodev: a device node in the image, or one root in the container
    // makes (it keeps CAP_MKNOD, as with Docker), must not open the host's
    // device, whatever the device cgroup says.
    Ok(mount(
        "overlay",
        fs.target.clone(),
        "overlay",
        root_flags(spec),
        Some(&data),
    ))
}

/// The root's flags: `nodev`, except for a privileged container.
fn root_flags(spec: &LaunchSpec) -> MountFlags {
    if spec.privileged {
        MountFlags::EMPTY
    } else {
        MountFlags::NODEV
    }
}

/// The container's /etc/hosts: localhost, its hostname, then `hosts_extra`
/// lines. berthd writes it again when the containers of a user-defined
/// network change, so both must make it alike.
pub fn hosts_file(hostname: &str, hosts_extra: &[String]) -> String {
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for line in hosts_extra {
        hosts.push_str(line);
        hosts.push('\n');
    }
    hosts
}

/// /etc/hostname, /etc/hosts and (when berthd made one) /etc/resolv.conf
/// of the container.
fn etc_files(
    hostname: &str,
    resolv_conf: Option<&str>,
    hosts_extra: &[String],
) -> Vec<(String, String)> {
    let hosts = hosts_file(hostname, hosts_extra);
    let mut files = vec![
        ("hostname".into(), format!("{hostname}\n")),
        ("hosts".into(), hosts),
    ];
    if let Some(text) = resolv_conf {
        files.push(("resolv.conf".into(), text.to_string()));
    }
    files
}

/// /proc, a minimal /dev with the container's devices, and /sys
/// (read-only unless privileged).
fn kernel_filesystems(spec: &LaunchSpec, root: &str, steps: &mut Vec<Step>) {
    let proc = format!("{root}/proc");
    steps.push(Step::EnsureDir { path: proc.clone() });
    steps.push(mount("proc", proc, "proc", NOSUID_NOEXEC_NODEV, None));

    let dev = format!("{root}/dev");
    steps.push(Step::EnsureDir { path: dev.clone() });
    // nodev, like the root: nodes made in /dev cannot be opened.
    steps.push(mount(
        "tmpfs",
        dev.clone(),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME | root_flags(spec),
        Some("mode=755,size=65536k"),
    ));
    for (name, major, minor) in DEVICES {
        if spec.userns.is_some() {
            // Only host root makes device nodes (CAP_MKNOD in the initial
            // user namespace): the host's are bound in, as runc does. Its
            // root, being no owner of them, cannot chmod or chown them.
            let target = format!("{dev}/{name}");
            steps.push(Step::CreateFile {
                path: target.clone(),
                mode: 0,
            });
            steps.push(Step::Bind {
                source: format!("/dev/{name}"),
                target,
            });
            continue;
        }
        steps.push(Step::DeviceNode(DeviceNode {
            path: format!("{dev}/{name}"),
            block: false,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }));
    }
    let fresh = |name: &str, source: &str, fstype: &str, flags, data| {
        let path = format!("{dev}/{name}");
        [
            Step::MakeDir { path: path.clone() },
            mount(source, path, fstype, flags, data),
        ]
    };
    steps.extend(fresh(
        "pts",
        "devpts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ));
    steps.extend(fresh(
        "shm",
        "shm",
        "tmpfs",
        NOSUID_NOEXEC_NODEV,
        Some("mode=1777,size=65536k"),
    ));
    steps.extend(fresh(
        "mqueue",
        "mqueue",
        "mqueue",
        NOSUID_NOEXEC_NODEV,
        None,
    ));
    for (link, to) in DEV_SYMLINKS {
        steps.push(Step::Symlink {
            path: format!("{dev}/{link}"),
            to: to.to_string(),
        });
    }

    for node in &spec.devices {
        steps.push(Step::DeviceNode(DeviceNode {
            path: format!("{root}{}", node.path),
            ..node.clone()
        }));
    }

    let sys = format!("{root}/sys");
    steps.push(Step::EnsureDir { path: sys.clone() });
    steps.push(mount("sysfs", sys, "sysfs", inert(spec), None));
}

/// /sys and the cgroup filesystems: read-only and inert, or for a
/// privileged container writable (Docker's `--privileged`).
fn inert(spec: &LaunchSpec) -> MountFlags {
    if spec.privileged {
        NOSUID_NOEXEC_NODEV
    } else {
        INERT_RO
    }
}

/// The container's own cgroup at /sys/fs/cgroup, read-only. The cgroup
/// namespace makes the container's cgroup the root of what it sees.
fn cgroupfs(spec: &LaunchSpec, root: &str, steps: &mut Vec<Step>) -> Result<(), PlanError> {
    let dst = format!("{root}/sys/fs/cgroup");
    if spec.cgroup_version == 2 {
        steps.push(mount("cgroup2", dst, "cgroup2", inert(spec), None));
        return Ok(());
    }
    steps.push(mount(
        "tmpfs",
        dst.clone(),
        "tmpfs",
        NOSUID_NOEXEC_NODEV,
        Some("mode=755"),
    ));
    for ctrl in &spec.cgroup_v1_controllers {
        if ctrl.is_empty() || ctrl.contains('/') || ctrl == "." || ctrl == ".." {
            return Err(PlanError::BadController(ctrl.clone()));
        }
        let path = format!("{dst}/{ctrl}");
        steps.push(Step::MakeDir { path: path.clone() });
        steps.push(mount("cgroup", path, "cgroup", inert(spec), Some(ctrl)));
    }
    steps.push(Step::Remount {
        target: dst,
        flags: MountFlags::BIND | inert(spec),
    });
    Ok(())
}

/// Every step of the container's setup, in order: namespaces (those given
/// by path entered, the others created), the overlay root, /etc/hostname
/// and /etc/hosts, /proc, /dev (with the container's device nodes) and
/// /sys, then (once in its cgroup) a cgroup namespace and the cgroup
/// filesystem, `pivot_root`, the read-only remount of the root
/// (`--read-only`), the masks (none when privileged), the hostname (unless
/// the UTS namespace is joined) and loopback.
pub fn container_setup(spec: &LaunchSpec) -> Result<Vec<Step>, PlanError> {
    let root = spec.rootfs.target.trim_end_matches('/');
    if !root.starts_with('/') {
        return Err(PlanError::RelativeRoot(spec.rootfs.target.clone()));
    }
    let mut steps = Vec::with_capacity(64);
    if spec.userns.is_some() {
        check_userns(spec)?;
        steps.push(Step::AwaitUserns);
    }
    let mut namespaces = vec![Namespace::Mount, Namespace::Uts, Namespace::Ipc];
    match (&spec.netns, spec.host_network) {
        (Some(_), true) => return Err(PlanError::TwoNetworks),
        (Some(path), false) => steps.push(Step::EnterNamespace {
            kind: Namespace::Net,
            path: path.clone(),
        }),
        (None, true) => {}
        (None, false) => namespaces.push(Namespace::Net),
    }
    if spec.host_ipc {
        if spec.ipcns.is_some() {
            return Err(PlanError::TwoIpc);
        }
        namespaces.retain(|n| *n != Namespace::Ipc);
    }
    for (kind, joined) in [(Namespace::Ipc, &spec.ipcns), (Namespace::Uts, &spec.utsns)] {
        if let Some(path) = joined {
            namespaces.retain(|n| *n != kind);
            steps.push(Step::EnterNamespace {
                kind,
                path: path.clone(),
            });
        }
    }
    steps.push(Step::Unshare(namespaces));
    mounts::propagation(spec, &mut steps);
    let root = if spec.userns.is_some() {
        if spec.rootfs.layers.is_empty() {
            return Err(PlanError::NoLayers);
        }
        steps.push(Step::AttachRoot {
            target: root.to_string(),
        });
        steps.push(Step::BecomeRoot);
        "."
    } else {
        steps.push(overlay(spec)?);
        root
    };
    steps.push(Step::WriteFiles {
        dir: format!("{root}/etc"),
        files: etc_files(
            &spec.hostname,
            spec.resolv_conf.as_deref(),
            &spec.hosts_extra,
        ),
    });
    kernel_filesystems(spec, root, &mut steps);
    // The cgroup namespace is rooted at the cgroup the process is in when it
    // unshares, so it waits until the monitor has moved it; the slow part of
    // that move overlaps with the mounts above.
    steps.push(Step::AwaitCgroup);
    steps.push(Step::Unshare(vec![Namespace::Cgroup]));
    cgroupfs(spec, root, &mut steps)?;
    // After /dev and the rest, so a mount may land under them (a volume on
    // /dev/shm); before the read-only remount, which may need mount points
    // created.
    mounts::user_mounts(spec, root, &mut steps);
    steps.push(Step::PivotRoot {
        root: root.to_string(),
    });
    if spec.read_only_rootfs {
        // Last of the root's changes: every mount point exists by now.
        // /dev, /proc, /sys and the rest keep their own flags.
        steps.push(Step::Remount {
            target: "/".to_string(),
            flags: MountFlags::BIND | MountFlags::RDONLY | root_flags(spec),
        });
    }
    sysctls(spec, &mut steps)?;
    if !spec.privileged {
        if let Some(bad) = spec
            .masked_paths
            .iter()
            .chain(&spec.readonly_paths)
            .find(|p| !is_plain_absolute(p))
        {
            return Err(PlanError::BadPath(bad.clone()));
        }
        masks(spec, &mut steps);
    }
    // A joined UTS namespace is shared (a pod's, by all its containers) and
    // already has its hostname: setting it would change it for all of them.
    if spec.utsns.is_none() {
        steps.push(Step::SetHostname(spec.hostname.clone()));
    }
    if spec.netns.is_none() && !spec.host_network {
        steps.push(Step::LoopbackUp);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
