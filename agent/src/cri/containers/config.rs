//! kubelet's ContainerConfig as a berth container spec: what berth runs
//! maps onto its own fields, and what it does not do yet is refused by
//! name (UNIMPLEMENTED), never dropped.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tonic::Status;

use crate::container::record::{LimitsRecord, PodJoin, SpecRecord};
use crate::container::secopts::DeviceMapping;
use crate::container::{MountKind, MountSpec};
use crate::cri::api_file::v1 as cri;
use crate::cri::pods::sandbox::{self, ns_mode, META_MAX, PATH_MAX};
use crate::cri::pods::store::PodRecord;
use crate::cri::unsupported::not_supported;
use crate::error::capped;

/// The longest Localhost seccomp profile read.
const SECCOMP_PROFILE_MAX: u64 = 1024 * 1024;
/// The longest berth name (`spec::validate_name`).
const NAME_MAX: usize = 128;
/// The most `masked_paths`, and the most `readonly_paths`, a container adds.
const MAX_EXTRA_PATHS: usize = 64;

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// The berth name of a pod's container: unique per pod, container name
/// and attempt, as kubelet's own `k8s_` names (the pod's name is left out
/// when it would make the name too long).
pub fn berth_name(pod: &PodRecord, name: &str, attempt: u32) -> String {
    let short = &pod.id[..12.min(pod.id.len())];
    let fits = |n: &str| {
        n.len() <= NAME_MAX
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let full = format!("k8s_{name}_{}_{short}_{attempt}", pod.name);
    if fits(&full) {
        return full;
    }
    let without_pod = format!("k8s_{name}_{short}_{attempt}");
    if fits(&without_pod) {
        return without_pod;
    }
    // A very long container name: its head and a digest of the whole,
    // still unique in the pod.
    let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(name.as_bytes())[..6]);
    let head: String = name.chars().take(64).collect();
    format!("k8s_{head}-{digest}_{short}_{attempt}")
}

/// The spec of kubelet's container `c` in `pod`, whose namespaces are
/// pinned in `ns_dir`.
pub fn spec_of(
    c: cri::ContainerConfig,
    pod: &PodRecord,
    ns_dir: &Path,
) -> Result<SpecRecord, Status> {
    let meta = c
        .metadata
        .ok_or_else(|| invalid("config.metadata is required"))?;
    if meta.name.is_empty()
        || meta.name.len() > META_MAX
        || !meta
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    {
        return Err(invalid(
            "config.metadata.name must be 1 to 253 letters, digits, '-', '_' or '.'",
        ));
    }
    let image = c.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() || image.len() > META_MAX * 4 {
        return Err(invalid(
            "config.image.image is required (at most 1012 bytes)",
        ));
    }
    sandbox::check_tags("config", &c.labels, &c.annotations)?;
    if c.log_path.len() > PATH_MAX
        || c.log_path.starts_with('/')
        || c.log_path.split('/').any(|p| p == "..")
    {
        return Err(invalid(
            "config.log_path must be a path relative to the pod's log directory, without \"..\"",
        ));
    }
    if !c.log_path.is_empty() && pod.log_directory.is_empty() {
        return Err(invalid("config.log_path needs the pod's log_directory"));
    }
    if !c.cdi_devices.is_empty() {
        return Err(not_supported("CDI devices"));
    }
    let linux = c.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let (pid_mode, ipc_mode) = security
        .namespace_options
        .as_ref()
        .map_or((ns_mode::POD, ns_mode::POD), |o| (o.pid, o.ipc));
    let mut spec = SpecRecord {
        image,
        name: berth_name(pod, &meta.name, meta.attempt),
        entrypoint: (!c.command.is_empty()).then_some(c.command),
        command: c.args,
        env: c
            .envs
            .into_iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect(),
        working_dir: c.working_dir,
        labels: c.labels.into_iter().collect(),
        open_stdin: c.stdin,
        // As containerd: meaningless without stdin.
        stdin_once: c.stdin && c.stdin_once,
        tty: c.tty,
        stop_signal: stop_signal(c.stop_signal)?,
        mounts: c.mounts.into_iter().map(mount).collect::<Result<_, _>>()?,
        devices: c
            .devices
            .into_iter()
            .map(|d| DeviceMapping {
                host_path: d.host_path,
                container_path: d.container_path,
                permissions: d.permissions,
            })
            .collect(),
        oom_score_adj: linux
            .resources
            .as_ref()
            // Out of range, it fails Create's check (INVALID_ARGUMENT).
            .map(|r| i32::try_from(r.oom_score_adj).unwrap_or(i32::MAX)),
        limits: limits(linux.resources.unwrap_or_default())?,
        ..SpecRecord::default()
    };
    security_context(&mut spec, security)?;
    let log_path = if c.log_path.is_empty() {
        String::new()
    } else {
        Path::new(&pod.log_directory)
            .join(&c.log_path)
            .to_string_lossy()
            .into_owned()
    };
    // kubelet repeats the pod's choice in each container's options; a
    // container may also ask for the host's alone, as with containerd.
    let host_pid = pod.host_pid || pid_mode == ns_mode::NODE;
    let host_ipc = pod.host_ipc || ipc_mode == ns_mode::NODE;
    spec.pod = Some(PodJoin {
        id: pod.id.clone(),
        ns_dir: ns_dir.to_path_buf(),
        hostname: pod.hostname.clone(),
        host_network: pod.host_network,
        resolv_conf: pod.resolv_conf.clone(),
        container_name: meta.name,
        attempt: meta.attempt,
        annotations: c.annotations.into_iter().collect::<BTreeMap<_, _>>(),
        log_path,
        log_in_place: true,
        // The pod's PID namespace when it has one and the container asks
        // for it (POD, also cri-api's default), else its own.
        share_pid: pod.share_pid && pid_mode == ns_mode::POD && !pod.host_pid,
        host_pid,
        host_ipc,
    });
    if let Some(shm) = shm_mount(pod, ns_dir, host_ipc, &spec.mounts) {
        spec.mounts.push(shm);
    }
    Ok(spec)
}

/// The pod's `/dev/shm` bound at the container's, unless kubelet mounts
/// something there itself: the host's with hostIPC, else the pod's own
/// (none for a pod made before berth had one: the container's own then).
fn shm_mount(
    pod: &PodRecord,
    ns_dir: &Path,
    host_ipc: bool,
    mounts: &[MountSpec],
) -> Option<MountSpec> {
    if mounts
        .iter()
        .any(|m| m.target.trim_end_matches('/') == "/dev/shm")
    {
        return None;
    }
    let source = if host_ipc {
        "/dev/shm".to_string()
    } else if pod.shm {
        ns_dir
            .join(crate::sys::pin::SHM)
            .to_string_lossy()
            .into_owned()
    } else {
        return None;
    };
    Some(MountSpec {
        kind: MountKind::Bind,
        source,
        target: "/dev/shm".into(),
        read_only: false,
        propagation: String::new(),
        recursive: Some(false),
        tmpfs_size: 0,
        tmpfs_mode: 0,
        no_copy: false,
        build: false,
        read_only_top_only: false,
        pod_shm: true,
    })
}

/// CRI's `Signal` enum as a signal name ("" for the image's or SIGTERM).
fn stop_signal(sig: i32) -> Result<String, Status> {
    match cri::Signal::try_from(sig) {
        Ok(cri::Signal::RuntimeDefault) => Ok(String::new()),
        Ok(s) => Ok(s.as_str_name().to_string()),
        Err(_) => Err(invalid(format!("config.stop_signal {sig} is no signal"))),
    }
}

fn mount(m: cri::Mount) -> Result<MountSpec, Status> {
    if m.image.is_some() {
        return Err(not_supported("image volumes (mounts with an image)"));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(not_supported("id-mapped mounts"));
    }
    // kubelet's rules for recursive read-only, which containerd enforces.
    if m.recursive_read_only
        && (!m.readonly || m.propagation != cri::MountPropagation::PropagationPrivate as i32)
    {
        return Err(invalid(
            "mounts: recursive_read_only needs readonly and private propagation",
        ));
    }
    if !m.mount_options.is_empty() {
        return Err(not_supported("mount options"));
    }
    let propagation = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationPrivate) => "rprivate",
        Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
        Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
        Err(_) => return Err(invalid("mounts: unknown propagation")),
    };
    Ok(MountSpec {
        kind: MountKind::Bind,
        source: m.host_path,
        target: m.container_path,
        read_only: m.readonly,
        propagation: propagation.to_string(),
        recursive: Some(true),
        tmpfs_size: 0,
        tmpfs_mode: 0,
        no_copy: false,
        build: false,
        // As containerd: a read-only mount is read-only at its top only
        // unless recursive_read_only asks for all of it.
        read_only_top_only: m.readonly && !m.recursive_read_only,
        pod_shm: false,
    })
}

/// The container's cgroup limits (its OOM score is `SpecRecord`'s own);
/// huge pages and unified (cgroup v2 key=value) settings are refused when
/// they ask for anything.
pub fn limits(r: cri::LinuxContainerResources) -> Result<LimitsRecord, Status> {
    if r.hugepage_limits.iter().any(|h| h.limit != 0) {
        return Err(not_supported("huge page limits"));
    }
    if !r.unified.is_empty() {
        return Err(not_supported("unified cgroup settings"));
    }
    for (field, v) in [
        ("cpu_period", r.cpu_period),
        ("cpu_quota", r.cpu_quota),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if v < 0 {
            return Err(invalid(format!("resources.{field} is negative")));
        }
    }
    let nano_cpus = if r.cpu_quota > 0 && r.cpu_period > 0 {
        i64::try_from(i128::from(r.cpu_quota) * 1_000_000_000 / i128::from(r.cpu_period))
            .map_err(|_| invalid("resources.cpu_quota is out of range"))?
    } else {
        0
    };
    Ok(LimitsRecord {
        memory: r.memory_limit_in_bytes,
        memory_swap: r.memory_swap_limit_in_bytes,
        nano_cpus,
        cpu_shares: u64::try_from(r.cpu_shares).unwrap_or(0),
        pids: 0,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
    })
}

/// User, capabilities, privileges, root file system and seccomp (the
/// deprecated profile fields are read as older kubelets send them).
#[allow(deprecated)]
fn security_context(
    spec: &mut SpecRecord,
    s: cri::LinuxContainerSecurityContext,
) -> Result<(), Status> {
    if let Some(o) = &s.namespace_options {
        if o.pid == ns_mode::TARGET {
            return Err(not_supported("another container's PID namespace"));
        }
        if !matches!(o.ipc, ns_mode::POD | ns_mode::NODE)
            || !matches!(o.network, ns_mode::POD | ns_mode::NODE)
        {
            return Err(not_supported(
                "IPC or network namespaces other than the pod's or the host's",
            ));
        }
    }
    spec.strict_groups = match cri::SupplementalGroupsPolicy::try_from(s.supplemental_groups_policy)
    {
        Ok(cri::SupplementalGroupsPolicy::Merge) => false,
        Ok(cri::SupplementalGroupsPolicy::Strict) => true,
        Err(_) => return Err(invalid("unknown supplemental_groups_policy")),
    };
    // Added to berth's own, never in their place: a request cannot unmask
    // (kubelet's `procMount: Unmasked` is not honoured).
    for (field, paths) in [
        ("masked_paths", &s.masked_paths),
        ("readonly_paths", &s.readonly_paths),
    ] {
        if paths.len() > MAX_EXTRA_PATHS {
            return Err(invalid(format!(
                "security_context.{field}: at most {MAX_EXTRA_PATHS} paths"
            )));
        }
        if let Some(bad) = paths
            .iter()
            .find(|p| p.len() > PATH_MAX || !berth_runtime::plan::is_plain_absolute(p))
        {
            return Err(invalid(format!(
                "security_context.{field}: {:?} is not an absolute path without . or .. (at most {PATH_MAX} bytes)",
                capped(bad)
            )));
        }
    }
    spec.masked_paths = s.masked_paths.clone();
    spec.readonly_paths = s.readonly_paths.clone();
    // Merge: added to those the user has in the image's /etc/group;
    // Strict: to its primary group only.
    spec.group_add = s
        .supplemental_groups
        .iter()
        .map(|g| match u32::try_from(*g) {
            Ok(g) if g <= berth_runtime::user::MAX_ID => Ok(g.to_string()),
            _ => Err(invalid(format!(
                "supplemental group {g} is not a gid (0 to {})",
                berth_runtime::user::MAX_ID
            ))),
        })
        .collect::<Result<_, _>>()?;
    if s.selinux_options
        .as_ref()
        .is_some_and(|o| *o != cri::SeLinuxOption::default())
    {
        return Err(not_supported("SELinux options"));
    }
    if s.apparmor.as_ref().is_some_and(|p| p.profile_type == 2) || !s.apparmor_profile.is_empty() {
        return Err(not_supported("AppArmor profiles"));
    }
    spec.user = match (&s.run_as_user, &s.run_as_group, s.run_as_username.as_str()) {
        (Some(u), Some(g), _) => format!("{}:{}", u.value, g.value),
        (Some(u), None, _) => u.value.to_string(),
        (None, _, name) if !name.is_empty() => name.to_string(),
        (None, Some(_), _) => {
            return Err(invalid("run_as_group needs run_as_user or run_as_username"))
        }
        (None, None, _) => String::new(),
    };
    if let Some(caps) = s.capabilities {
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(not_supported("ambient capabilities"));
        }
        spec.cap_add = caps.add_capabilities;
        spec.cap_drop = caps.drop_capabilities;
    }
    spec.privileged = s.privileged;
    spec.read_only_rootfs = s.readonly_rootfs;
    // kubelet's `allowPrivilegeEscalation` (true unless said otherwise):
    // setuid programs work, as with containerd and Docker.
    spec.allow_privilege_escalation = !s.no_new_privs;
    if s.privileged {
        // Every capability and no filter, whatever else was said, as
        // containerd and CRI-O do for a privileged container.
        spec.cap_add.clear();
        spec.cap_drop.clear();
        return Ok(());
    }
    spec.seccomp = seccomp(s.seccomp.as_ref(), &s.seccomp_profile_path)?;
    Ok(())
}

/// RuntimeDefault is berth's default profile (Docker's, tightened);
/// Localhost reads the profile (Docker's JSON format) from the host. No
/// profile at all is Unconfined, as the CRI defines it (and containerd and
/// CRI-O run it): kubelet always names one (RuntimeDefault with
/// `seccompDefault`, else Unconfined), so only other clients send none.
/// berth's own API keeps its default filter for a container that names
/// none.
fn seccomp(
    profile: Option<&cri::SecurityProfile>,
    legacy_path: &str,
) -> Result<crate::seccomp::Choice, Status> {
    use crate::seccomp::Choice;
    let (kind, path) = match profile {
        Some(p) => (p.profile_type, p.localhost_ref.as_str()),
        None => match legacy_path {
            "runtime/default" | "docker/default" => (0, ""),
            "" | "unconfined" => (1, ""),
            p => (2, p.strip_prefix("localhost/").unwrap_or(p)),
        },
    };
    match kind {
        0 => Ok(Choice::Default),
        1 => Ok(Choice::Unconfined),
        2 => {
            if !path.starts_with('/') || path.len() > PATH_MAX {
                return Err(invalid(
                    "a Localhost seccomp profile needs an absolute path",
                ));
            }
            // Never blocks (a fifo, a device) and never follows a link at
            // the end; only a regular file is read.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| invalid(format!("seccomp profile {:?}: {e}", capped(path))))?;
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(invalid(format!(
                    "seccomp profile {:?} is not a regular file",
                    capped(path)
                )));
            }
            let mut json = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(file, SECCOMP_PROFILE_MAX),
                &mut json,
            )
            .map_err(|e| invalid(format!("seccomp profile {:?}: {e}", capped(path))))?;
            Ok(Choice::Custom {
                json,
                digest: String::new(),
            })
        }
        _ => Err(invalid("unknown seccomp profile type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_follows_the_cri() {
        use crate::seccomp::Choice;
        let kind = |t| cri::SecurityProfile {
            profile_type: t,
            localhost_ref: String::new(),
        };
        assert!(matches!(seccomp(None, ""), Ok(Choice::Unconfined)));
        assert!(matches!(
            seccomp(None, "unconfined"),
            Ok(Choice::Unconfined)
        ));
        assert!(matches!(
            seccomp(None, "runtime/default"),
            Ok(Choice::Default)
        ));
        assert!(matches!(seccomp(Some(&kind(0)), ""), Ok(Choice::Default)));
        assert!(matches!(
            seccomp(Some(&kind(1)), ""),
            Ok(Choice::Unconfined)
        ));
        assert!(seccomp(Some(&kind(2)), "").is_err());
        assert!(seccomp(Some(&kind(7)), "").is_err());
        assert!(seccomp(None, "localhost/relative").is_err());
    }

    fn pod() -> PodRecord {
        PodRecord {
            id: "f".repeat(64),
            name: "web".into(),
            uid: "u".into(),
            namespace: "default".into(),
            attempt: 0,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            hostname: "web".into(),
            log_directory: "/var/log/pods/web".into(),
            runtime_handler: String::new(),
            created_at: 0,
            ready: true,
            host_network: false,
            resolv_conf: None,
            cni: None,
            ips: Vec::new(),
            share_pid: false,
            pid_holder: 0,
            sysctls: BTreeMap::new(),
            host_pid: false,
            host_ipc: false,
            shm: false,
        }
    }

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            command: vec!["/bin/sh".into()],
            args: vec!["-c".into(), "echo hi".into()],
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: b"1".to_vec(),
            }],
            log_path: "app/2.log".into(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: 1000 }),
                    run_as_group: Some(cri::Int64Value { value: 100 }),
                    readonly_rootfs: true,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_config_maps_onto_berths_spec() {
        let s = spec_of(config(), &pod(), Path::new("/ns")).unwrap();
        assert_eq!(s.name, "k8s_app_web_ffffffffffff_2");
        assert_eq!(s.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(s.command, ["-c", "echo hi"]);
        assert_eq!(s.env, ["A=1"]);
        assert_eq!(s.user, "1000:100");
        assert!(s.read_only_rootfs);
        assert_eq!(s.limits.nano_cpus, 500_000_000);
        assert_eq!(s.limits.memory, 64 << 20);
        let p = s.pod.unwrap();
        assert_eq!(p.log_path, "/var/log/pods/web/app/2.log");
        assert_eq!((p.container_name.as_str(), p.attempt), ("app", 2));
    }

    #[test]
    fn supplemental_groups_are_added_groups_merged_or_strict() {
        let mut c = config();
        if let Some(s) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            s.supplemental_groups = vec![1234, 0];
        }
        let s = spec_of(c, &pod(), Path::new("/ns")).unwrap();
        assert_eq!(s.group_add, ["1234", "0"]);
        for bad in [-1, i64::from(u32::MAX)] {
            let mut c = config();
            if let Some(s) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                s.supplemental_groups = vec![bad];
            }
            let e = spec_of(c, &pod(), Path::new("/ns")).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        let mut c = config();
        if let Some(s) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        }
        assert!(spec_of(c, &pod(), Path::new("/ns")).unwrap().strict_groups);
        let mut c = config();
        if let Some(s) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            s.supplemental_groups_policy = 9;
        }
        let e = spec_of(c, &pod(), Path::new("/ns")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn log_paths_stay_in_the_pods_log_directory() {
        for bad in ["../x.log", "/etc/passwd", "a/../../x"] {
            let mut c = config();
            c.log_path = bad.into();
            assert_eq!(
                spec_of(c, &pod(), Path::new("/ns")).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn what_berth_does_not_do_yet_is_refused_by_name() {
        let mut c = config();
        c.linux
            .as_mut()
            .unwrap()
            .resources
            .as_mut()
            .unwrap()
            .unified = [("memory.high".to_string(), "1".to_string())].into();
        let e = spec_of(c, &pod(), Path::new("/ns")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("unified"), "{}", e.message());
    }

    #[test]
    fn long_pod_names_are_left_out_of_the_berth_name() {
        let mut p = pod();
        p.name = "p".repeat(200);
        let n = berth_name(&p, "app", 0);
        assert_eq!(n, "k8s_app_ffffffffffff_0");
        assert!(crate::container::spec::validate_name(&n).is_ok());
        // critest's names (a word and a UUID) and longer ones fit too.
        let long = "c".repeat(200);
        let n = berth_name(&p, &long, 3);
        assert!(crate::container::spec::validate_name(&n).is_ok(), "{n}");
        assert_ne!(n, berth_name(&p, &"c".repeat(199), 3));
    }
}
