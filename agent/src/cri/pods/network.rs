//! Pod networks through CNI, as kubelet expects of a runtime: the first
//! network configuration in the CNI configuration directory (berthd's
//! `--cri-cni-conf-dir`, kubelet's `/etc/cni/net.d`), in file name order as
//! libcni picks it, is run for each pod on its pinned network namespace.
//! The plugins, their directories and the durable attachments are those of
//! berth's own `cni` networks (`network::cni`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tonic::Status;

use crate::cri::api_file::v1 as cri;
use crate::cri::unsupported::not_supported;
use crate::network::cni::conflist::{Conflist, PortMapping, RuntimeConfig};
use crate::network::cni::{self, Cni};

/// The default of `--cri-cni-conf-dir` (kubelet's and containerd's).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// The most configuration files looked at in the directory.
const FILES_MAX: usize = 256;

/// The pod network's configuration, or why there is none (NetworkReady's
/// message).
pub fn load(dir: &Path) -> Result<(PathBuf, Conflist), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("no CNI configuration: {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    files.truncate(FILES_MAX);
    let mut skipped = Vec::new();
    for path in files {
        match read(&path) {
            Ok(list) => return Ok((path, list)),
            Err(e) => skipped.push(format!("{}: {e}", path.display())),
        }
    }
    if skipped.is_empty() {
        Err(format!("no CNI configuration in {}", dir.display()))
    } else {
        Err(format!(
            "no usable CNI configuration: {}",
            skipped.join("; ")
        ))
    }
}

/// One file: a conflist, or a single plugin's `.conf` (a list of one, as
/// libcni reads it).
fn read(path: &Path) -> Result<Conflist, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    if text.len() > cni::conflist::MAX_BYTES {
        return Err(format!("larger than {} bytes", cni::conflist::MAX_BYTES));
    }
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
    let text = if is_list {
        text
    } else {
        let Ok(Value::Object(mut plugin)) = serde_json::from_slice::<Value>(&text) else {
            return Err("not a JSON object".into());
        };
        let mut list = Map::new();
        for key in ["cniVersion", "name"] {
            if let Some(v) = plugin.remove(key) {
                list.insert(key.into(), v);
            }
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
        serde_json::to_vec(&Value::Object(list)).map_err(|e| e.to_string())?
    };
    Conflist::parse(&text).map_err(|e| e.to_string())
}

/// kubelet's port mappings (hostPort) as the `portMappings` capability
/// hands them to plugins; refused when the list has no plugin for them.
pub fn port_mappings(list: &Conflist, ports: &[cri::PortMapping]) -> Result<RuntimeConfig, Status> {
    // kubelet sends one for each declared container port; only those with
    // a host port publish anything (as containerd reads them).
    let ports: Vec<&cri::PortMapping> = ports.iter().filter(|p| p.host_port > 0).collect();
    if ports.is_empty() {
        return Ok(RuntimeConfig::default());
    }
    if !list.supports_ports() {
        return Err(not_supported(
            "port mappings (hostPort) on a CNI network without a portMappings plugin (portmap)",
        ));
    }
    let port = |p: i32, what: &str| {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Status::invalid_argument(format!("port_mappings: bad {what} {p}")))
    };
    let port_mappings = ports
        .into_iter()
        .map(|m| {
            let protocol = match cri::Protocol::try_from(m.protocol) {
                Ok(cri::Protocol::Tcp) => "tcp",
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                Err(_) => return Err(Status::invalid_argument("port_mappings: bad protocol")),
            };
            if !m.host_ip.is_empty() && m.host_ip.parse::<std::net::IpAddr>().is_err() {
                return Err(Status::invalid_argument("port_mappings: bad host_ip"));
            }
            Ok(PortMapping {
                host_port: port(m.host_port, "host_port")?,
                container_port: port(m.container_port, "container_port")?,
                protocol: protocol.into(),
                host_ip: m.host_ip.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(RuntimeConfig { port_mappings })
}

/// ADD for pod `id` on its namespace at `netns`: the pod's addresses,
/// IPv4 first.
pub async fn attach(
    cni: &Cni,
    list: &Conflist,
    id: &str,
    netns: &Path,
    runtime: RuntimeConfig,
) -> Result<Vec<String>, Status> {
    let (_, summary) = cni
        .attach(&list.name, list, id, &netns.to_string_lossy(), runtime)
        .await
        .map_err(|e| Status::unavailable(format!("pod network {:?}: {e}", list.name)))?;
    Ok(summary
        .ipv4()
        .into_iter()
        .chain(summary.ipv6())
        .map(|a| a.ip.to_string())
        .collect())
}

/// DEL for pod `id` (its addresses and the plugins' rules are released;
/// the namespace may be gone). With its stored ADD result when there is
/// one; without, the list's DEL still runs: an ADD that never finished
/// (berthd killed, the call abandoned) may have allocated what only a DEL
/// frees, and CNI requires DEL to accept a missing or partial ADD.
///
/// The namespace at `netns` is named while it is still pinned, so the
/// plugins remove the pod's interface there and then (its veth would
/// otherwise go only when the kernel gets to tearing the namespace down).
pub async fn detach(cni: &Cni, list: &Conflist, id: &str, netns: &Path) -> Result<(), Status> {
    let unavailable =
        |e: cni::CniError| Status::unavailable(format!("pod network {:?}: {e}", list.name));
    let stored = cni
        .store
        .load(id)
        .map_err(|e| Status::internal(format!("reading the pod's CNI attachment: {e}")))?;
    let target = cni::invoke::Target {
        container_id: id.to_string(),
        netns: if crate::sys::pin::is_pinned(netns) {
            netns.to_string_lossy().into_owned()
        } else {
            String::new()
        },
        ifname: cni::IFNAME.to_string(),
    };
    match stored {
        Some(a) => {
            cni::chain::del(&cni.dirs, list, &target, Some(&a.result), &a.runtime)
                .await
                .map_err(unavailable)?;
            cni.store.remove(&a.container).map_err(unavailable)
        }
        None => cni::chain::del(&cni.dirs, list, &target, None, &RuntimeConfig::default())
            .await
            .map_err(unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn the_first_usable_file_by_name_is_the_pod_network() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path())
            .unwrap_err()
            .contains("no CNI configuration"));
        std::fs::write(dir.path().join("00-broken.conflist"), "{").unwrap();
        std::fs::write(dir.path().join("10-pods.conflist"), LIST).unwrap();
        std::fs::write(
            dir.path().join("20-other.conf"),
            r#"{"cniVersion":"1.0.0","name":"other","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        let (path, list) = load(dir.path()).unwrap();
        assert!(path.ends_with("10-pods.conflist"));
        assert_eq!(list.name, "podnet");
        assert_eq!(list.types(), ["bridge", "portmap"]);
    }

    #[test]
    fn a_single_plugin_conf_is_a_list_of_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-one.conf"),
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"b0"}"#,
        )
        .unwrap();
        let (_, list) = load(dir.path()).unwrap();
        assert_eq!(
            (list.name.as_str(), list.cni_version.as_str()),
            ("one", "0.4.0")
        );
        assert_eq!(list.plugins[0].get("bridge"), Some(&Value::from("b0")));
    }

    #[test]
    fn host_ports_need_a_port_mapping_plugin() {
        let with = Conflist::parse(LIST.as_bytes()).unwrap();
        let without =
            Conflist::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#)
                .unwrap();
        let ports = [cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        }];
        let rc = port_mappings(&with, &ports).unwrap();
        assert_eq!(rc.port_mappings[0].host_port, 8080);
        assert_eq!(rc.port_mappings[0].protocol, "tcp");
        assert_eq!(
            port_mappings(&without, &ports).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let bad = [cri::PortMapping {
            host_port: 70000,
            ..ports[0].clone()
        }];
        // Container ports without a host port publish nothing.
        let unpublished = [cri::PortMapping {
            host_port: 0,
            ..ports[0].clone()
        }];
        assert!(port_mappings(&without, &unpublished)
            .unwrap()
            .port_mappings
            .is_empty());
        assert_eq!(
            port_mappings(&with, &bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
