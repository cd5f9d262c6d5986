//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
//! ListPodSandbox on berth's runtime.
//!
//! A pod is its pinned network, IPC and UTS namespaces (`sys::pin`) and a
//! record: no pause process or image. Its containers are berth containers
//! that enter those namespaces at each start (`SpecRecord::pod`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Status;

use super::store::{PodRecord, PodStore};
use crate::container::Manager;
use crate::cri::api_file::v1 as cri;
use crate::cri::unsupported::not_supported;
use crate::error::capped;

/// The longest name, uid or namespace of a pod's metadata (Kubernetes'
/// object names are DNS subdomains of at most 253 bytes).
pub const META_MAX: usize = 253;
/// The longest hostname (Linux's own limit).
pub const HOSTNAME_MAX: usize = 64;
/// The longest log directory or log path.
pub const PATH_MAX: usize = 4096;
/// The most labels plus annotations of one pod or container.
pub const TAGS_MAX: usize = 256;
/// The most bytes of all labels and annotations of one pod or container.
pub const TAG_BYTES_MAX: usize = 256 * 1024;
/// The most DNS servers, searches or options.
pub const DNS_ITEMS_MAX: usize = 32;

/// `NamespaceMode` values of cri-api.
pub mod ns_mode {
    /// Shared by the pod's containers.
    pub const POD: i32 = 0;
    /// The container's own.
    pub const CONTAINER: i32 = 1;
    /// The host's.
    pub const NODE: i32 = 2;
    /// Another container's.
    pub const TARGET: i32 = 3;
}

/// The pod RPCs' state: the pods and the containers they hold.
pub struct Pods {
    pub(in crate::cri) store: PodStore,
    pub(in crate::cri) mgr: Arc<Manager>,
    /// Where the pod network's CNI configuration is looked up.
    pub(in crate::cri) cni_conf_dir: std::path::PathBuf,
    /// The plugins (berth's `--cni-bin-dir`) and the pods' own attachment
    /// store (`<state>/cri/cni`: berth's reconciliation of its containers'
    /// attachments never sees a pod's).
    pub(in crate::cri) cni: crate::network::cni::Cni,
    /// Where pod events go (berth's event log).
    pub(in crate::cri) events: Arc<dyn crate::events::domain::EventSink>,
    /// Per-pod locks of the calls that change a pod or its containers.
    pub(in crate::cri) locks:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Full names of pods being made: reserved, not yet visible.
    pub(in crate::cri) creating: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// Checks labels and annotations against their limits.
pub fn check_tags(
    what: &str,
    labels: &std::collections::HashMap<String, String>,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<(), Status> {
    let count = labels.len() + annotations.len();
    let bytes: usize = labels
        .iter()
        .chain(annotations)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if count > TAGS_MAX || bytes > TAG_BYTES_MAX {
        return Err(invalid(format!(
            "{what}: {count} labels and annotations of {bytes} bytes; at most \
             {TAGS_MAX} of {TAG_BYTES_MAX} bytes are accepted"
        )));
    }
    if labels
        .keys()
        .chain(annotations.keys())
        .any(String::is_empty)
    {
        return Err(invalid(format!("{what}: a label or annotation has no key")));
    }
    Ok(())
}

fn sorted(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// The namespace modes of a pod: network shared by the pod or the host's;
/// IPC the pod's; PID the pod's (cri-api's default, also without
/// `namespace_options`) or each container's own. Returns (host network,
/// shared PID namespace).
pub fn check_namespaces(opts: Option<&cri::NamespaceOption>) -> Result<PodNamespaces, Status> {
    let default = cri::NamespaceOption::default();
    let o = opts.unwrap_or(&default);
    let (share_pid, host_pid) = match o.pid {
        ns_mode::POD => (true, false),
        ns_mode::CONTAINER => (false, false),
        ns_mode::NODE => (false, true),
        _ => {
            return Err(invalid(
                "namespace_options.pid must be POD, CONTAINER or NODE for a pod",
            ))
        }
    };
    let host_ipc = match o.ipc {
        ns_mode::POD => false,
        ns_mode::NODE => true,
        _ => {
            return Err(invalid(
                "namespace_options.ipc must be POD or NODE for a pod",
            ))
        }
    };
    if o.userns_options
        .as_ref()
        .is_some_and(|u| u.mode != ns_mode::NODE)
    {
        return Err(not_supported("pods in a user namespace of their own"));
    }
    let host_network = match o.network {
        ns_mode::POD => false,
        ns_mode::NODE => true,
        _ => {
            return Err(invalid(
                "namespace_options.network must be POD or NODE for a pod",
            ))
        }
    };
    Ok(PodNamespaces {
        host_network,
        share_pid,
        host_pid,
        host_ipc,
    })
}

/// A pod's namespace modes, as kubelet asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The host's network (`NODE`).
    pub host_network: bool,
    /// One PID namespace for the pod's containers (`POD`).
    pub share_pid: bool,
    /// The host's PID namespace (`NODE`).
    pub host_pid: bool,
    /// The host's IPC namespace (`NODE`).
    pub host_ipc: bool,
}

/// resolv.conf as kubelet's DNS config asks (servers, searches, options),
/// or `None` to derive it from the host's as for any berth container.
fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Result<Option<String>, Status> {
    let Some(dns) = dns else { return Ok(None) };
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for (key, items) in [
        ("nameserver", &dns.servers),
        ("search", &dns.searches),
        ("options", &dns.options),
    ] {
        if items.len() > DNS_ITEMS_MAX {
            return Err(invalid(format!(
                "dns_config: {} {key} entries; at most {DNS_ITEMS_MAX}",
                items.len()
            )));
        }
        for item in items {
            if item.is_empty() || item.len() > 256 || item.chars().any(char::is_whitespace) {
                return Err(invalid(format!(
                    "dns_config: bad {key} entry {:?}",
                    capped(item)
                )));
            }
        }
        if items.is_empty() {
            continue;
        }
        if key == "nameserver" {
            for s in items {
                if s.parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid(format!(
                        "dns_config: server {:?} is not an IP address",
                        capped(s)
                    )));
                }
                out.push_str(&format!("nameserver {s}\n"));
            }
        } else {
            out.push_str(&format!("{key} {}\n", items.join(" ")));
        }
    }
    Ok(Some(out))
}

/// The record of a new pod from kubelet's config, checked, and its port
/// mappings (for the CNI network, at the run).
pub fn record_of(
    config: cri::PodSandboxConfig,
    runtime_handler: String,
) -> Result<(PodRecord, Vec<cri::PortMapping>), Status> {
    let meta = config
        .metadata
        .ok_or_else(|| invalid("config.metadata is required"))?;
    for (field, v) in [
        ("name", &meta.name),
        ("uid", &meta.uid),
        ("namespace", &meta.namespace),
    ] {
        if v.is_empty() || v.len() > META_MAX || v.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "config.metadata.{field} must be 1 to {META_MAX} printable bytes"
            )));
        }
    }
    if !runtime_handler.is_empty() && runtime_handler != "berth" {
        return Err(not_supported("runtime handlers other than the default"));
    }
    check_tags("config", &config.labels, &config.annotations)?;
    let linux = config.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let PodNamespaces {
        host_network,
        share_pid,
        host_pid,
        host_ipc,
    } = check_namespaces(security.namespace_options.as_ref())?;
    check_sysctls(&linux.sysctls, host_network, host_ipc)?;
    let hostname = if !config.hostname.is_empty() {
        config.hostname
    } else if host_network {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        meta.name.chars().take(HOSTNAME_MAX).collect()
    };
    if hostname.is_empty()
        || hostname.len() > HOSTNAME_MAX
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(invalid(format!(
            "config.hostname {:?} is not a hostname",
            capped(&hostname)
        )));
    }
    if config.log_directory.len() > PATH_MAX
        || (!config.log_directory.is_empty() && !config.log_directory.starts_with('/'))
    {
        return Err(invalid(
            "config.log_directory must be an absolute path of at most 4096 bytes",
        ));
    }
    let rec = PodRecord {
        id: crate::container::spec::new_id(),
        name: meta.name,
        uid: meta.uid,
        namespace: meta.namespace,
        attempt: meta.attempt,
        labels: sorted(config.labels),
        annotations: sorted(config.annotations),
        hostname,
        log_directory: config.log_directory,
        runtime_handler,
        created_at: crate::container::now_nanos(),
        ready: true,
        host_network,
        resolv_conf: resolv_conf(config.dns_config.as_ref())?,
        cni: None,
        ips: Vec::new(),
        share_pid,
        pid_holder: 0,
        sysctls: sorted(linux.sysctls),
        host_pid,
        host_ipc,
        shm: false,
    };
    Ok((rec, config.port_mappings))
}

/// Pod sysctls: each of the pod's own namespaces (see
/// `berth_runtime::sysctl`, the list kubelet's own check allows); none of
/// the host's namespaces the pod is in.
fn check_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<(), Status> {
    use berth_runtime::sysctl;
    let on_host = sysctl::HostNamespaces {
        network: host_network,
        ipc: host_ipc,
    };
    sysctl::check_all(
        sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        on_host,
    )
    .map_err(|e| invalid(format!("config.linux.sysctls: {e}")))
}

/// The CRI metadata of a pod.
pub fn metadata(p: &PodRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: p.name.clone(),
        uid: p.uid.clone(),
        namespace: p.namespace.clone(),
        attempt: p.attempt,
    }
}

fn state(p: &PodRecord) -> i32 {
    if p.ready {
        cri::PodSandboxState::SandboxReady as i32
    } else {
        cri::PodSandboxState::SandboxNotready as i32
    }
}

fn hash(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A pod as ListPodSandbox shows it.
pub fn to_cri_pod(p: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: p.id.clone(),
        metadata: Some(metadata(p)),
        state: state(p),
        created_at: p.created_at,
        labels: hash(&p.labels),
        annotations: hash(&p.annotations),
        runtime_handler: p.runtime_handler.clone(),
    }
}

/// A pod as PodSandboxStatus shows it: its IP is its CNI network's (none
/// on the host's network, or without a CNI configuration).
pub fn to_cri_status(p: &PodRecord) -> cri::PodSandboxStatus {
    let network = if p.host_network {
        ns_mode::NODE
    } else {
        ns_mode::POD
    };
    cri::PodSandboxStatus {
        id: p.id.clone(),
        metadata: Some(metadata(p)),
        state: state(p),
        created_at: p.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: p.ips.first().cloned().unwrap_or_default(),
            additional_ips: p
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network,
                    pid: if p.host_pid {
                        ns_mode::NODE
                    } else if p.share_pid {
                        ns_mode::POD
                    } else {
                        ns_mode::CONTAINER
                    },
                    ipc: if p.host_ipc {
                        ns_mode::NODE
                    } else {
                        ns_mode::POD
                    },
                    ..Default::default()
                }),
            }),
        }),
        labels: hash(&p.labels),
        annotations: hash(&p.annotations),
        runtime_handler: p.runtime_handler.clone(),
    }
}

/// Whether `p` passes ListPodSandbox's filter.
pub fn matches(p: &PodRecord, f: &cri::PodSandboxFilter) -> bool {
    (f.id.is_empty() || p.id.starts_with(&f.id))
        && f.state.as_ref().is_none_or(|s| s.state == state(p))
        && f.label_selector
            .iter()
            .all(|(k, v)| p.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: ns_mode::CONTAINER,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_config_becomes_a_record_named_after_the_pod() {
        let (r, ports) = record_of(config(), String::new()).unwrap();
        assert!(ports.is_empty());
        assert_eq!((r.name.as_str(), r.attempt), ("web", 1));
        assert_eq!(r.hostname, "web");
        assert!(r.ready && !r.host_network);
        assert_eq!(r.id.len(), 64);
    }

    fn with_options(pid: i32, ipc: i32) -> cri::PodSandboxConfig {
        let mut c = config();
        if let Some(o) = c
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
        {
            o.pid = pid;
            o.ipc = ipc;
        }
        c
    }

    #[test]
    fn the_hosts_pid_and_ipc_namespaces_are_the_pods_when_asked() {
        let (r, _) = record_of(with_options(ns_mode::NODE, ns_mode::NODE), String::new()).unwrap();
        assert!(r.host_pid && r.host_ipc && !r.share_pid);
        let (r, _) = record_of(with_options(ns_mode::POD, ns_mode::POD), String::new()).unwrap();
        assert!(!r.host_pid && !r.host_ipc && r.share_pid);
        // TARGET is a container's, never a pod's.
        let e = record_of(with_options(ns_mode::TARGET, ns_mode::POD), String::new()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // IPC sysctls would be the host's.
        let mut c = with_options(ns_mode::POD, ns_mode::NODE);
        if let Some(l) = c.linux.as_mut() {
            l.sysctls = [("kernel.shmmax".to_string(), "1".to_string())].into();
        }
        let e = record_of(c, String::new()).unwrap_err();
        assert!(e.message().contains("host's IPC"), "{}", e.message());
    }

    #[test]
    fn without_namespace_options_a_pod_shares_its_pid_namespace() {
        let mut c = config();
        c.linux = None;
        let (r, _) = record_of(c, String::new()).unwrap();
        assert!(r.share_pid && !r.host_network);
        let (r, _) = record_of(config(), String::new()).unwrap();
        assert!(!r.share_pid);
    }

    #[test]
    fn bad_metadata_and_hostnames_are_invalid() {
        let mut c = config();
        c.metadata.as_mut().unwrap().name = String::new();
        assert_eq!(
            record_of(c, String::new()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        c.hostname = "a b".into();
        assert_eq!(
            record_of(c, String::new()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        c.metadata = None;
        assert_eq!(
            record_of(c, String::new()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn dns_config_writes_resolv_conf_as_kubelet_asks() {
        let dns = cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap().unwrap(),
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        let bad = cri::DnsConfig {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        };
        assert!(resolv_conf(Some(&bad)).is_err());
        assert_eq!(resolv_conf(None).unwrap(), None);
    }

    #[test]
    fn filters_select_by_id_prefix_state_and_labels() {
        let (mut r, _) = record_of(config(), String::new()).unwrap();
        r.labels.insert("app".into(), "web".into());
        let f = |id: &str, state: Option<i32>, label: Option<(&str, &str)>| cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|state| cri::PodSandboxStateValue { state }),
            label_selector: label
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(matches(&r, &f("", None, None)));
        assert!(matches(&r, &f(&r.id[..6], Some(0), Some(("app", "web")))));
        assert!(!matches(&r, &f("zz", None, None)));
        assert!(!matches(&r, &f("", Some(1), None)));
        assert!(!matches(&r, &f("", None, Some(("app", "db")))));
    }
}
