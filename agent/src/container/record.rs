//! What berthd stores about a container (`containers/<id>/container.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::State;
use crate::cgroup::Limits;
use crate::monitor::ExitRecord;

/// A container's persisted record. Fields added after the first release
/// default when absent, so older records still load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex chars.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The spec as the client gave it.
    pub spec: SpecRecord,
    /// Image id it was created from.
    pub image_id: String,
    /// Image layer diff ids, base first (kept so the image's layers stay
    /// mountable even if the image is force-removed).
    pub layers: Vec<String>,
    /// The unpacked layer directories, base first.
    pub layer_dirs: Vec<std::path::PathBuf>,
    /// Lifecycle state.
    pub state: State,
    /// Host pid of init while running.
    pub pid: i32,
    /// Host pid of the monitor while running.
    pub monitor_pid: i32,
    /// Unix nanos.
    pub created_at: i64,
    /// Unix nanos of the last start, 0 if never.
    pub started_at: i64,
    /// The identity its first process ran with at the last start, as the
    /// kernel had it once the process had exec'd (`None`: never started,
    /// not readable then, or not a pod's container: only the CRI reports
    /// it).
    #[serde(default)]
    pub started_ids: Option<super::ids::ProcessIds>,
    /// How it last ended.
    pub exit: Option<ExitRecord>,
    /// Effective argv.
    pub args: Vec<String>,
    /// Effective environment.
    pub env: Vec<String>,
    /// Effective working dir.
    pub cwd: String,
    /// Effective user.
    pub user: String,
    /// Effective hostname.
    pub hostname: String,
    /// The network, resolved at Create (records from before networking:
    /// `none`, what they had).
    #[serde(default)]
    pub network: crate::network::Mode,
    /// On the bridge: its address (Create to Remove) and bound ports.
    #[serde(default)]
    pub net: Option<crate::network::bridge::Settings>,
    /// Networks joined after Create (ConnectContainer), each with its
    /// address, from the connect to the disconnect or Remove.
    #[serde(default)]
    pub connected: Vec<crate::network::attach::Attachment>,
    /// Stop signal number.
    pub stop_signal: i32,
    /// Default stop timeout in seconds.
    pub stop_timeout: u32,
    /// Starts so far.
    pub start_count: u32,
    /// Restarts by the restart policy since the last start through the API.
    #[serde(default)]
    pub restart_count: u32,
    /// Current back-off step of the restart policy.
    #[serde(default)]
    pub backoff: u32,
    /// The last stop was requested through the API.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Unix nanos when a Stop in progress escalates to SIGKILL (0: none).
    /// Saved so a restarted berthd still kills on time.
    #[serde(default)]
    pub stop_deadline: i64,
    /// `--userns auto`: the container's ids on the host, allocated at
    /// Create (see `userns.rs`); the ranges in use are those the records
    /// say.
    #[serde(default)]
    pub userns: Option<berth_runtime::launch::IdMapping>,
    /// The mounts as resolved at Create (volumes named, their host paths).
    #[serde(default)]
    pub mounts: Vec<super::mounts::ResolvedMount>,
}

/// The client's spec, stored verbatim (mirrors `berth.v1.ContainerSpec`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpecRecord {
    /// Image reference as given.
    pub image: String,
    /// Name as given.
    pub name: String,
    /// Command override.
    pub command: Vec<String>,
    /// Entrypoint override, if set.
    pub entrypoint: Option<Vec<String>>,
    /// Extra environment.
    pub env: Vec<String>,
    /// Working dir override.
    pub working_dir: String,
    /// User override.
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Limits.
    pub limits: LimitsRecord,
    /// Remove at exit.
    pub auto_remove: bool,
    /// Stop signal as given.
    pub stop_signal: String,
    /// Stop timeout as given.
    pub stop_timeout_seconds: Option<u32>,
    /// Restart policy.
    #[serde(default)]
    pub restart_policy: super::restart::Policy,
    /// Seccomp profile (records from before seccomp get the default).
    #[serde(default)]
    pub seccomp: crate::seccomp::Choice,
    /// Capabilities added to the default set (names as given).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities removed from the default set (names as given).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// The root filesystem is mounted read-only.
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// Privileged (accepted only with berthd's `--allow-privileged`).
    #[serde(default)]
    pub privileged: bool,
    /// Host devices passed through (normalised at Create).
    #[serde(default)]
    pub devices: Vec<super::secopts::DeviceMapping>,
    /// Network mode as given ("" for the default).
    #[serde(default)]
    pub network: String,
    /// User namespace mode: "" (the host's) or "auto" (one of its own).
    #[serde(default)]
    pub userns: String,
    /// Published ports as asked for (checked at Create).
    #[serde(default)]
    pub ports: Vec<crate::network::ports::PortMapping>,
    /// DNS servers replacing the host's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Extra /etc/hosts entries, "name:address".
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// Names on its user-defined network beyond its own.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// Binds, volumes and tmpfs mounts as asked for.
    #[serde(default)]
    pub mounts: Vec<super::mounts::MountSpec>,
    /// Stdin kept open for attached clients (`-i`).
    #[serde(default)]
    pub open_stdin: bool,
    /// The container's stdin is closed once an attached client's stdin
    /// ends or the client detaches (the CRI's `stdin_once`, Docker's
    /// `StdinOnce`); without a terminal only (a terminal's user ends its
    /// own input).
    #[serde(default)]
    pub stdin_once: bool,
    /// Leave `no_new_privs` unset for the container and its execs (the
    /// CRI's `no_new_privs: false`): berth's own containers always set it.
    #[serde(default)]
    pub allow_privilege_escalation: bool,
    /// The user's groups are its primary group and `group_add` only (the
    /// CRI's `supplemental_groups_policy: Strict`).
    #[serde(default)]
    pub strict_groups: bool,
    /// A terminal of its own (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Publish the image's exposed ports (`-P`), as `ports` were added at
    /// Create (then kept in `ports`).
    #[serde(default)]
    pub publish_all: bool,
    /// Size limit of the writable layer in bytes (`--storage-opt size=`);
    /// 0: none.
    #[serde(default)]
    pub storage_size_bytes: u64,
    /// The process's `oom_score_adj` (-1000 to 1000, checked at Create);
    /// `None`: the container default, 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// Kernel parameters of its own namespaces (`--sysctl`), checked at
    /// Create (see `berth_runtime::sysctl`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Supplementary groups added to the user's own (`--group-add`: gids
    /// in digits or group names of the image's /etc/group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Paths masked besides berth's own (a CRI container's `masked_paths`;
    /// checked absolute and plain at Create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// Paths made read-only besides berth's own (a CRI container's
    /// `readonly_paths`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// The CRI pod it belongs to: set only by the CRI front end, which
    /// alone may remove it (berth's API and prune leave it alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodJoin>,
}

impl SpecRecord {
    /// The file its monitor writes its log to: kubelet's path for a CRI
    /// container that names one, else [`super::LOG_FILE`] in `dir`, its
    /// directory.
    pub fn log_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        match &self.pod {
            Some(p) if p.log_in_place && !p.log_path.is_empty() => p.log_path.clone().into(),
            _ => dir.join(super::LOG_FILE),
        }
    }
}

/// A container of a CRI pod: it enters the pod's pinned namespaces (see
/// `sys::pin`) at each start instead of making its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodJoin {
    /// The pod sandbox's id (64 hex digits).
    pub id: String,
    /// The directory of the pod's pinned `net`, `ipc` and `uts` files.
    pub ns_dir: std::path::PathBuf,
    /// The pod's hostname (its UTS namespace has it already).
    pub hostname: String,
    /// The pod is on the host's network (Kubernetes' hostNetwork): its
    /// containers stay in berthd's network namespace.
    pub host_network: bool,
    /// The pod's resolv.conf from kubelet's DNS config, if it gave one.
    #[serde(default)]
    pub resolv_conf: Option<String>,
    /// The container's name in the pod (CRI metadata).
    #[serde(default)]
    pub container_name: String,
    /// Which attempt at this container it is (CRI metadata).
    #[serde(default)]
    pub attempt: u32,
    /// The container's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Where kubelet reads its log (absolute; empty: none asked for). The
    /// monitor writes the log there, not in berth's state directory, so
    /// that kubelet's rotation works (see [`SpecRecord::log_file`]).
    #[serde(default)]
    pub log_path: String,
    /// The log is written at `log_path` itself. False for containers made
    /// by a berthd before that, whose monitors write berth's own log file
    /// with a symlink to it at `log_path`, and keep doing so.
    #[serde(default)]
    pub log_in_place: bool,
    /// The pod's containers share its PID namespace (pinned as `pid`,
    /// held by the pod's holder process).
    #[serde(default)]
    pub share_pid: bool,
    /// The pod is in the host's PID namespace (`hostPID`).
    #[serde(default)]
    pub host_pid: bool,
    /// The pod is in the host's IPC namespace (`hostIPC`).
    #[serde(default)]
    pub host_ipc: bool,
}

/// Limits as stored (serde mirror of [`Limits`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitsRecord {
    /// Bytes.
    pub memory: i64,
    /// Bytes, Docker semantics.
    pub memory_swap: i64,
    /// Billionths of a CPU.
    pub nano_cpus: i64,
    /// Shares.
    pub cpu_shares: u64,
    /// Max pids.
    pub pids: i64,
    /// cpuset CPUs.
    pub cpuset_cpus: String,
    /// cpuset mems.
    pub cpuset_mems: String,
}

impl LimitsRecord {
    /// Takes every field of `new` that is set (non-zero, non-empty).
    pub fn merge_from(&mut self, new: &LimitsRecord) {
        if new.memory != 0 {
            self.memory = new.memory;
        }
        if new.memory_swap != 0 {
            self.memory_swap = new.memory_swap;
        }
        if new.nano_cpus != 0 {
            self.nano_cpus = new.nano_cpus;
        }
        if new.cpu_shares != 0 {
            self.cpu_shares = new.cpu_shares;
        }
        if new.pids != 0 {
            self.pids = new.pids;
        }
        if !new.cpuset_cpus.is_empty() {
            self.cpuset_cpus = new.cpuset_cpus.clone();
        }
        if !new.cpuset_mems.is_empty() {
            self.cpuset_mems = new.cpuset_mems.clone();
        }
    }
}

impl From<&LimitsRecord> for Limits {
    fn from(l: &LimitsRecord) -> Limits {
        Limits {
            memory: l.memory,
            memory_swap: l.memory_swap,
            nano_cpus: l.nano_cpus,
            cpu_shares: l.cpu_shares,
            pids: l.pids,
            cpuset_cpus: l.cpuset_cpus.clone(),
            cpuset_mems: l.cpuset_mems.clone(),
            // The container's device access is added at start, from its
            // security options.
            devices: Default::default(),
        }
    }
}
