//! Conversions between the API's messages and the agent's records.

use berth::v1 as pb;

use crate::container::record::{LimitsRecord, Record, SpecRecord};
use crate::container::restart::Policy;
use crate::container::secopts::DeviceMapping;
use crate::container::state::State;
use crate::error::Error;
use crate::events::wire::{exit_to_proto, nanos_to_ts};
use crate::image::ImageRecord;
use crate::network::ports::PortMapping;
use crate::seccomp::Choice;

/// API spec to stored spec.
pub fn spec_from_proto(s: pb::ContainerSpec) -> Result<SpecRecord, Error> {
    let security = s.security.clone().unwrap_or_default();
    Ok(SpecRecord {
        image: s.image,
        name: s.name,
        command: s.command,
        entrypoint: s.entrypoint.map(|l| l.values),
        env: s.env,
        working_dir: s.working_dir,
        user: s.user,
        hostname: s.hostname,
        labels: s.labels.into_iter().collect(),
        limits: limits_from_proto(s.resources.unwrap_or_default()),
        auto_remove: s.auto_remove,
        stop_signal: s.stop_signal,
        stop_timeout_seconds: s.stop_timeout_seconds,
        restart_policy: s
            .restart_policy
            .map(policy_from_proto)
            .transpose()?
            .unwrap_or_default(),
        seccomp: seccomp_from_proto(security.seccomp)?,
        cap_add: security.cap_add,
        cap_drop: security.cap_drop,
        read_only_rootfs: security.read_only_rootfs,
        privileged: security.privileged,
        userns: security.userns,
        devices: s
            .devices
            .into_iter()
            .map(|d| DeviceMapping {
                host_path: d.host_path,
                container_path: d.container_path,
                permissions: d.permissions,
            })
            .collect(),
        network: s.network,
        ports: s
            .ports
            .into_iter()
            .map(|p| PortMapping::parse(&p.host_ip, p.host_port, p.container_port, &p.protocol))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Container(e.into()))?,
        dns: s.dns,
        extra_hosts: s.extra_hosts,
        network_aliases: s.network_aliases,
        mounts: super::mounts::from_proto(s.mounts)?,
        open_stdin: s.open_stdin,
        tty: s.tty,
        publish_all: s.publish_all,
        storage_size_bytes: s.storage_size_bytes,
        oom_score_adj: s.oom_score_adj,
        sysctls: s.sysctls.into_iter().collect(),
        group_add: s.group_add,
        // The CRI front end's alone (kubelet's security context).
        stdin_once: false,
        allow_privilege_escalation: false,
        strict_groups: false,
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
        pod: None,
    })
}

/// API seccomp profile to the agent's choice (checked at Create).
fn seccomp_from_proto(p: Option<pb::SeccompProfile>) -> Result<Choice, Error> {
    use pb::seccomp_profile::Kind;
    let Some(p) = p else {
        return Ok(Choice::Unset);
    };
    let kind = Kind::try_from(p.kind).map_err(|_| Error::InvalidRequest {
        field: "spec.security.seccomp.kind",
        reason: "unknown kind",
    })?;
    if kind != Kind::Custom && !p.json.is_empty() {
        return Err(Error::InvalidRequest {
            field: "spec.security.seccomp.json",
            reason: "a profile's JSON goes with KIND_CUSTOM only",
        });
    }
    Ok(match kind {
        Kind::Unspecified => Choice::Unset,
        Kind::Default => Choice::Default,
        Kind::Unconfined => Choice::Unconfined,
        Kind::Custom => Choice::Custom {
            json: p.json,
            digest: String::new(),
        },
    })
}

fn seccomp_to_proto(c: &Choice) -> Option<pb::SeccompProfile> {
    use pb::seccomp_profile::Kind;
    let (kind, digest) = match c {
        Choice::Unset => return None,
        Choice::Default => (Kind::Default, String::new()),
        Choice::Unconfined => (Kind::Unconfined, String::new()),
        Choice::Custom { digest, .. } => (Kind::Custom, digest.clone()),
    };
    Some(pb::SeccompProfile {
        kind: kind as i32,
        json: String::new(),
        digest,
    })
}

/// The stored security options as the API has them; unset when all are
/// defaults, as before there were any but seccomp.
fn security_to_proto(s: &SpecRecord) -> Option<pb::SecurityOptions> {
    let out = pb::SecurityOptions {
        seccomp: seccomp_to_proto(&s.seccomp),
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        read_only_rootfs: s.read_only_rootfs,
        privileged: s.privileged,
        userns: s.userns.clone(),
    };
    (out != pb::SecurityOptions::default()).then_some(out)
}

/// API restart policy to the agent's; a mode this agent does not know is
/// refused, not taken for "no".
pub fn policy_from_proto(p: pb::RestartPolicy) -> Result<Policy, Error> {
    use pb::restart_policy::Mode;
    let mode = Mode::try_from(p.mode).map_err(|_| Error::InvalidRequest {
        field: "restart_policy.mode",
        reason: "unknown restart policy mode: use MODE_NO, MODE_ON_FAILURE, MODE_ALWAYS or MODE_UNLESS_STOPPED",
    })?;
    Ok(match mode {
        Mode::Unspecified | Mode::No => Policy::No,
        Mode::OnFailure => Policy::OnFailure {
            max_retries: p.max_retries,
        },
        Mode::Always => Policy::Always,
        Mode::UnlessStopped => Policy::UnlessStopped,
    })
}

fn policy_to_proto(p: Policy) -> pb::RestartPolicy {
    use pb::restart_policy::Mode;
    let (mode, max_retries) = match p {
        Policy::No => (Mode::No, 0),
        Policy::OnFailure { max_retries } => (Mode::OnFailure, max_retries),
        Policy::Always => (Mode::Always, 0),
        Policy::UnlessStopped => (Mode::UnlessStopped, 0),
    };
    pb::RestartPolicy {
        mode: mode as i32,
        max_retries,
    }
}

/// API resources to stored limits.
pub fn limits_from_proto(r: pb::Resources) -> LimitsRecord {
    LimitsRecord {
        memory: r.memory_bytes,
        memory_swap: r.memory_swap_bytes,
        nano_cpus: r.nano_cpus,
        cpu_shares: r.cpu_shares,
        pids: r.pids_limit,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
    }
}

fn spec_to_proto(s: &SpecRecord) -> pb::ContainerSpec {
    let l = &s.limits;
    pb::ContainerSpec {
        image: s.image.clone(),
        name: s.name.clone(),
        command: s.command.clone(),
        entrypoint: s.entrypoint.clone().map(|values| pb::StringList { values }),
        env: s.env.clone(),
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        labels: s.labels.clone().into_iter().collect(),
        resources: Some(pb::Resources {
            memory_bytes: l.memory,
            memory_swap_bytes: l.memory_swap,
            nano_cpus: l.nano_cpus,
            cpu_shares: l.cpu_shares,
            pids_limit: l.pids,
            cpuset_cpus: l.cpuset_cpus.clone(),
            cpuset_mems: l.cpuset_mems.clone(),
        }),
        auto_remove: s.auto_remove,
        stop_signal: s.stop_signal.clone(),
        stop_timeout_seconds: s.stop_timeout_seconds,
        restart_policy: Some(policy_to_proto(s.restart_policy)),
        security: security_to_proto(s),
        devices: s
            .devices
            .iter()
            .map(|d| pb::DeviceMapping {
                host_path: d.host_path.clone(),
                container_path: d.container_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        network: s.network.clone(),
        ports: s.ports.iter().map(port_to_proto).collect(),
        dns: s.dns.clone(),
        extra_hosts: s.extra_hosts.clone(),
        network_aliases: s.network_aliases.clone(),
        mounts: super::mounts::to_proto(&s.mounts),
        open_stdin: s.open_stdin,
        tty: s.tty,
        publish_all: s.publish_all,
        storage_size_bytes: s.storage_size_bytes,
        oom_score_adj: s.oom_score_adj,
        sysctls: s
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        group_add: s.group_add.clone(),
    }
}

/// State to its API enum.
pub fn state_to_proto(s: State) -> pb::ContainerState {
    match s {
        State::Created => pb::ContainerState::Created,
        State::Running => pb::ContainerState::Running,
        State::Exited => pb::ContainerState::Exited,
        State::Paused => pb::ContainerState::Paused,
        State::Restarting => pb::ContainerState::Restarting,
    }
}

/// Record to API container.
pub fn container_to_proto(r: &Record, cgroup_parent: &str) -> pb::Container {
    pb::Container {
        id: r.id.clone(),
        name: r.name.clone(),
        spec: Some(spec_to_proto(&r.spec)),
        image: r.spec.image.clone(),
        image_id: r.image_id.clone(),
        state: state_to_proto(r.state) as i32,
        pid: r.pid,
        created_at: Some(nanos_to_ts(r.created_at)),
        started_at: (r.started_at > 0).then(|| nanos_to_ts(r.started_at)),
        exit: r.exit.as_ref().map(exit_to_proto),
        args: r.args.clone(),
        effective_env: r.env.clone(),
        cgroup_path: format!("/{}/{}", cgroup_parent, r.id),
        labels: r.spec.labels.clone().into_iter().collect(),
        start_count: r.start_count,
        restart_count: r.restart_count,
        stopped_by_user: r.stopped_by_user,
        network: r.network.to_string(),
        userns: r.userns.map(|m| pb::UserNamespaceMapping {
            host_uid: m.uid,
            host_gid: m.gid,
            size: m.size,
        }),
        network_settings: r.net.as_ref().map(|n| pb::NetworkSettings {
            ip_address: n.ip.to_string(),
            prefix_length: n.prefix.into(),
            gateway: n.gateway.to_string(),
            bridge: n.bridge.clone(),
            ports: n.ports.iter().map(port_to_proto).collect(),
            ipv6_address: n.ip6.map(|a| a.ip.to_string()).unwrap_or_default(),
            ipv6_prefix_length: n.ip6.map(|a| u32::from(a.prefix)).unwrap_or_default(),
            ipv6_gateway: n.ip6.map(|a| a.gateway.to_string()).unwrap_or_default(),
        }),
        mounts: super::mounts::points_to_proto(&r.mounts),
        connected_networks: r
            .connected
            .iter()
            .map(|a| pb::ConnectedNetwork {
                network_id: a.network.clone(),
                ip_address: a.settings.ip.to_string(),
                prefix_length: a.settings.prefix.into(),
                bridge: a.settings.bridge.clone(),
                interface: a.ifname(),
                aliases: a.aliases.clone(),
                ipv6_address: a.settings.ip6.map(|a| a.ip.to_string()).unwrap_or_default(),
                ipv6_prefix_length: a
                    .settings
                    .ip6
                    .map(|a| u32::from(a.prefix))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

fn port_to_proto(p: &PortMapping) -> pb::PortMapping {
    pb::PortMapping {
        host_ip: p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
        host_port: p.host_port.into(),
        container_port: p.container_port.into(),
        protocol: p.proto.as_str().into(),
    }
}

/// Image record to API image.
pub fn image_to_proto(i: &ImageRecord) -> pb::Image {
    pb::Image {
        id: i.id.clone(),
        references: i.references.clone(),
        manifest_digest: i.manifest_digest.clone(),
        size_bytes: i.size_bytes as i64,
        created_at: i
            .created
            .as_deref()
            .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
            .map(prost_types::Timestamp::from),
        imported_at: Some(nanos_to_ts(i.imported_at_unix_nanos as i64)),
        os: i.os.clone(),
        architecture: i.architecture.clone(),
        config: Some(pb::ImageConfig {
            entrypoint: i.config.entrypoint.clone(),
            cmd: i.config.cmd.clone(),
            env: i.config.env.clone(),
            working_dir: i.config.working_dir.clone(),
            user: i.config.user.clone(),
            stop_signal: i.config.stop_signal.clone(),
            labels: i.config.labels.clone().into_iter().collect(),
            exposed_ports: i.config.exposed_ports.clone(),
            volumes: i.config.volumes.clone(),
        }),
        layers: i.layers.clone(),
        // Disk usage needs the whole store: filled in by the Images service.
        ..Default::default()
    }
}
