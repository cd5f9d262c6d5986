//! What berthd hands to a monitor, and what the monitor reports back.
//!
//! berthd starts `berth-monitor __monitor [<container dir>]` (without the
//! directory: a spare, started ahead of its container) with the
//! [`LaunchSpec`] as JSON on its stdin; the monitor answers on its stdout
//! with one [`MonitorReport`] line when the container runs (or could not be
//! started) and one when it has exited.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The argument that marks a monitor process (`berth-monitor __monitor
/// [<dir>]`): berthd and the tests recognise monitors by it in
/// `/proc/PID/cmdline`.
pub const MONITOR_ARG: &str = "__monitor";
/// File name of the durable exit record in a container's directory.
pub const EXIT_FILE: &str = "exit.json";
/// Written by the monitor once the container's process runs.
pub const RUNNING_FILE: &str = "running.json";
/// The monitor's own diagnostics (its stderr).
pub const MONITOR_LOG: &str = "monitor.log";

/// Everything the monitor needs to create the container's process. Paths are
/// absolute host paths, as UTF-8 strings (JSON has no other kind).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Container id.
    pub id: String,
    /// The container's directory: the monitor writes [`RUNNING_FILE`] there,
    /// sends its own diagnostics to [`MONITOR_LOG`] there, and makes it its
    /// working directory, by which berthd recognises it after a restart.
    pub dir: String,
    /// Where the init mounts the container's root filesystem.
    pub rootfs: Rootfs,
    /// argv; `args[0]` is resolved against PATH from `env` when it has no '/'.
    pub args: Vec<String>,
    /// Environment, "KEY=value".
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: String,
    /// User spec ("", "name", "uid", "name:group", "uid:gid").
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// A network namespace made ahead of time, with `lo` up (see
    /// [`crate::netns`]), for the init to enter instead of creating one.
    #[serde(default)]
    pub netns: Option<String>,
    /// Stay in the monitor's (the host's) network namespace: the
    /// container's `--network host`. Excludes [`LaunchSpec::netns`].
    #[serde(default)]
    pub host_network: bool,
    /// The IPC namespace to join (a pinned nsfs file, such as a pod's),
    /// instead of a new one. Excludes [`LaunchSpec::userns`]: a namespace
    /// owned by the host's user namespace cannot be joined from another.
    #[serde(default)]
    pub ipcns: Option<String>,
    /// The UTS namespace to join (a pinned nsfs file, such as a pod's),
    /// instead of a new one. Its hostname is left as it is, since every
    /// process in it shares it; [`LaunchSpec::hostname`] still goes into
    /// the container's /etc/hostname and /etc/hosts. Excludes
    /// [`LaunchSpec::userns`], as [`LaunchSpec::ipcns`] does.
    #[serde(default)]
    pub utsns: Option<String>,
    /// The PID namespace to create the container's processes in (a CRI
    /// pod's, pinned, whose first process holds it), instead of a new one:
    /// the init is then not PID 1 there.
    #[serde(default)]
    pub pidns: Option<String>,
    /// The container's `/etc/resolv.conf`, written into its layer with
    /// `/etc/hostname` and `/etc/hosts` (`None`: the image's is left).
    #[serde(default)]
    pub resolv_conf: Option<String>,
    /// Lines added to the container's `/etc/hosts` ("address<TAB>name"):
    /// its own address on a network, and `--add-host` entries.
    #[serde(default)]
    pub hosts_extra: Vec<String>,
    /// The host path of a file of compiled seccomp programs (the format is
    /// [`crate::seccomp`]'s), written by berthd. The init reads it before
    /// `pivot_root` and installs every program, in file order, as its last
    /// step before exec, after capabilities are dropped and `no_new_privs`
    /// is set, so its own setup is not filtered. A file it cannot read or
    /// parse, or a program the kernel refuses, fails the start. `None`: no
    /// filter (unconfined).
    #[serde(default)]
    pub seccomp: Option<String>,
    /// Leave `no_new_privs` unset, so a setuid program or file
    /// capabilities may raise the process's privileges (within its
    /// bounding set): the CRI's `no_new_privs: false`, Kubernetes'
    /// `allowPrivilegeEscalation`. The seccomp programs are then installed
    /// before the capabilities are dropped (as runc does: without
    /// `no_new_privs` a filter needs `CAP_SYS_ADMIN`), so the setup that
    /// follows (setgroups, setuid, capset, execve) must pass them.
    #[serde(default)]
    pub allow_privilege_escalation: bool,
    /// The user's groups are its primary group and [`Self::groups`] only,
    /// not those /etc/group makes it a member of (the CRI's
    /// `supplemental_groups_policy: Strict`).
    #[serde(default)]
    pub strict_groups: bool,
    /// The capabilities the container's root keeps in its bounding,
    /// permitted and effective sets (bit N: capability N), within those
    /// this kernel has; Docker's default set when absent.
    #[serde(default = "default_caps")]
    pub capabilities: u64,
    /// Remount the root filesystem read-only once everything is mounted
    /// on it (`--read-only`).
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// A privileged container: nothing masked, /sys and the cgroup
    /// filesystem writable, the root and /dev without `nodev`.
    #[serde(default)]
    pub privileged: bool,
    /// Device nodes made in the container's /dev (`--device`, and every
    /// host device for a privileged container).
    #[serde(default)]
    pub devices: Vec<DeviceNode>,
    /// The container's cgroup: where its init is placed before it execs.
    pub cgroup: CgroupPlacement,
    /// The file with the `oom_kill` counter (memory.events on v2,
    /// memory.oom_control on v1), if a memory controller is in use.
    pub oom_events: Option<String>,
    /// Mount the container's cgroup at /sys/fs/cgroup: `2` for cgroup2, `1`
    /// for the v1 controllers in `cgroup_v1_controllers`.
    pub cgroup_version: u32,
    /// v1 only: controllers to mount ("cpu", "memory", ...).
    pub cgroup_v1_controllers: Vec<String>,
    /// Log file (CRI format).
    pub log_path: String,
    /// Rotate the log at this size.
    pub log_max_bytes: u64,
    /// A log file the monitor creates is mode 0640 (kubelet's, for node log
    /// agents in root's group), else 0600.
    #[serde(default)]
    pub log_group_readable: bool,
    /// Durable exit record.
    pub exit_path: String,
    /// Run the container in a user namespace of its own with this mapping
    /// (`--userns auto`): the monitor creates it with the init, writes its
    /// maps and mounts the root from the host side on idmapped image layers
    /// (see [`crate::plan`]). `None`: the host's user namespace.
    #[serde(default)]
    pub userns: Option<IdMapping>,
    /// Bind mounts, volumes and tmpfs mounts (`-v`, `--mount`, `--tmpfs`),
    /// made inside the root before `pivot_root` (see
    /// [`crate::plan::mounts`]).
    #[serde(default)]
    pub mounts: Vec<UserMount>,
    /// The container's stdin is open (`-i`): a pipe the monitor writes
    /// what attached clients send (see [`crate::attach`]), or, with
    /// [`LaunchSpec::tty`], its terminal.
    #[serde(default)]
    pub open_stdin: bool,
    /// The container runs on a terminal (`-t`): a pty of its own devpts,
    /// whose master the monitor keeps; stdout and stderr are both the
    /// terminal's output.
    #[serde(default)]
    pub tty: bool,
    /// The terminal's first size, (rows, columns); (0, 0) for 24x80.
    #[serde(default)]
    pub terminal_size: (u16, u16),
    /// A client will attach as soon as the start is reported: the monitor
    /// holds the output until it does (within a bound), so the client sees
    /// it from the first byte, and waits a little for it at the exit.
    #[serde(default)]
    pub await_attach: bool,
    /// The process's `oom_score_adj` (-1000 to 1000); `None`: the
    /// container default ([`crate::process::OOM_SCORE_ADJ`]). Its execs
    /// get the same.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// Kernel parameters of the container's own namespaces to set (`key`
    /// as [`crate::sysctl::check`] accepts it, value), in order, once its
    /// namespaces and /proc are made.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    /// Supplementary groups added to the user's own (`--group-add`: gids
    /// in digits or group names of the container's /etc/group, see
    /// [`crate::user::add_groups`]). Its execs get the same.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Container paths masked besides berth's own (kubelet's
    /// `masked_paths`; absolute, no `..`): a file is covered with
    /// /dev/null, a directory with an empty read-only tmpfs. None when
    /// privileged, as berth's own.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Container paths made read-only besides berth's own (kubelet's
    /// `readonly_paths`).
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// Stay in berthd's (the host's) IPC namespace instead of creating one
    /// (a CRI pod's `hostIPC`).
    #[serde(default)]
    pub host_ipc: bool,
    /// Stay in berthd's (the host's) PID namespace instead of creating one
    /// (a CRI pod's `hostPID`): the init is not PID 1 and /proc shows every
    /// process of the host.
    #[serde(default)]
    pub host_pid: bool,
}

impl LaunchSpec {
    /// Whether the monitor serves [`crate::attach::SOCKET`] for this
    /// container: it has a stdin or a terminal to share.
    pub fn attachable(&self) -> bool {
        self.open_stdin || self.tty
    }
}

/// A mount the container asked for, as the init makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMount {
    /// The path in the container (absolute, no `.` or `..` components).
    pub target: String,
    /// What is mounted there.
    pub kind: UserMountKind,
    /// Read-only (recursively, for a bind, unless
    /// `read_only_top_only`).
    pub read_only: bool,
    /// A read-only recursive bind leaves the mounts under its source
    /// writable (as they are): only the top mount is made read-only (a CRI
    /// mount without `recursive_read_only`, containerd's default).
    /// `nosuid` and `nodev` still hold for all of them.
    #[serde(default)]
    pub read_only_top_only: bool,
}

/// What a [`UserMount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserMountKind {
    /// A host path (a bind source, or a volume's `_data` directory).
    Bind {
        /// The host path.
        source: String,
        /// Also the mounts under `source`.
        recursive: bool,
        /// A volume: when `source` is empty, the content of the image's
        /// directory at the target is copied into it first (Docker's
        /// copy-up).
        #[serde(default)]
        copy_up: bool,
        /// A slave of its source: what the host mounts under `source` later
        /// appears in the container (bind propagation `slave`/`rslave`);
        /// else private.
        #[serde(default)]
        slave: bool,
        /// A peer of its source (bind propagation `shared`/`rshared`):
        /// what the host mounts under `source` later appears in the
        /// container, and what the container mounts under the target
        /// appears on the host under `source`. Wins over `slave`.
        #[serde(default)]
        shared: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes, 0 for the kernel's default.
        size: u64,
        /// Permission bits of its root.
        mode: u32,
    },
}

/// A container's ids in a user namespace of its own: container ids
/// `0..size` are host uids `uid..uid + size` and host gids
/// `gid..gid + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMapping {
    /// The host uid of the container's uid 0.
    pub uid: u32,
    /// The host gid of the container's gid 0.
    pub gid: u32,
    /// How many ids are mapped.
    pub size: u32,
}

impl IdMapping {
    /// Whether the host uids of `self` and `other` overlap.
    pub fn uids_overlap(&self, other: &IdMapping) -> bool {
        overlap(self.uid, self.size, other.uid, other.size)
    }

    /// Whether the host gids of `self` and `other` overlap.
    pub fn gids_overlap(&self, other: &IdMapping) -> bool {
        overlap(self.gid, self.size, other.gid, other.size)
    }
}

fn overlap(a: u32, a_len: u32, b: u32, b_len: u32) -> bool {
    let (a, b) = (u64::from(a), u64::from(b));
    a < b + u64::from(b_len) && b < a + u64::from(a_len)
}

fn default_caps() -> u64 {
    crate::caps::DEFAULT.0
}

/// A device node the init makes in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Its path in the container, under /dev.
    pub path: String,
    /// A block device (else a character device).
    pub block: bool,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits (the host node's).
    pub mode: u32,
    /// Owner (the host node's).
    pub uid: u32,
    /// Group (the host node's).
    pub gid: u32,
}

/// The overlay the init mounts as the container's root, inside its own
/// mount namespace: it exists only for as long as the container runs and
/// goes away with the namespace, so nothing is ever left mounted on the
/// host, whatever happens to berthd or the monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// Read-only image layers, base first.
    pub layers: Vec<String>,
    /// The container's writable layer.
    pub upper: String,
    /// overlayfs' scratch directory (same filesystem as `upper`).
    pub work: String,
    /// The mount point.
    pub target: String,
}

/// Where the container's init goes in the cgroup tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupPlacement {
    /// cgroup v2: the container's cgroup directory. The init is created
    /// inside it (`clone3` with `CLONE_INTO_CGROUP`).
    Unified(String),
    /// cgroup v1: the container's directory in each hierarchy. The monitor
    /// writes the init's pid into their `cgroup.procs` while the init sets
    /// up its mounts.
    Hierarchies(Vec<String>),
}

/// How the container's init process ended, as the monitor saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Shell-style exit code (128 + signal when killed).
    pub exit_code: i32,
    /// Killing signal, 0 when it exited.
    pub signal: i32,
    /// The cgroup's oom_kill counter rose.
    pub oom_killed: bool,
    /// Unix time of the exit, in nanoseconds.
    pub finished_at_unix_nanos: i64,
}

/// What the monitor writes to [`RUNNING_FILE`]: proof that a start
/// happened, even if berthd died before recording it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RunningRecord {
    /// Host pid of the container's init.
    pub pid: i32,
    /// Host pid of the monitor.
    pub monitor_pid: i32,
    /// Unix nanos of the start.
    pub started_at_unix_nanos: i64,
}

/// One line the monitor writes to berthd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorReport {
    /// The container's process runs.
    Started {
        /// Its host pid.
        pid: i32,
        /// The monitor's pid.
        monitor_pid: i32,
        /// Unix nanos of the start.
        started_at_unix_nanos: i64,
    },
    /// The process could not be set up or exec'd.
    Failed {
        /// Why.
        message: String,
        /// Shell-style exit code.
        exit_code: i32,
    },
    /// The process has exited.
    Exited(ExitRecord),
}
