//! The Networks service: user-defined networks.

use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::networks_server::Networks;
use tonic::{Request, Response, Status};

use crate::container::record::Record;
use crate::container::{ConnectRequest, Manager};
use crate::events::wire::nanos_to_ts;
use crate::network::user::{CreateRequest, UserNetwork};
use crate::network::{Mode, NetworkError};

/// Longest network or container key accepted.
const MAX_KEY: usize = 256;

/// Serves `berth.v1.Networks`.
pub struct NetworksService {
    mgr: Arc<Manager>,
}

impl NetworksService {
    /// Serves the networks of `mgr`.
    pub fn new(mgr: Arc<Manager>) -> Self {
        NetworksService { mgr }
    }
}

fn key(field: &'static str, v: &str) -> Result<(), Status> {
    if v.len() > MAX_KEY {
        return Err(NetworkError::InvalidField {
            field,
            msg: format!(
                "{field} {:?} is longer than {MAX_KEY} bytes",
                crate::error::capped(v)
            ),
        }
        .into());
    }
    Ok(())
}

fn to_proto(n: &UserNetwork) -> pb::Network {
    pb::Network {
        id: n.rec.id.clone(),
        name: n.rec.name.clone(),
        subnet: n.rec.subnet.clone(),
        gateway: if n.rec.cni.is_some() {
            String::new()
        } else {
            n.rec.gateway.to_string()
        },
        internal: n.rec.internal,
        labels: n.rec.labels.clone().into_iter().collect(),
        bridge: if n.bridge.is_some() {
            n.rec.bridge_name()
        } else {
            String::new()
        },
        created_at: Some(nanos_to_ts(n.rec.created_at)),
        driver: if n.rec.cni.is_some() { "cni" } else { "bridge" }.into(),
        cni_plugins: n
            .rec
            .cni
            .as_ref()
            .map(|l| l.types().into_iter().map(String::from).collect())
            .unwrap_or_default(),
        enable_ipv6: n.rec.subnet6.is_some(),
        ipv6_subnet: n.rec.subnet6.clone().unwrap_or_default(),
        ipv6_gateway: n.rec.gateway6.map(|g| g.to_string()).unwrap_or_default(),
    }
}

/// Container `c`'s place on network `id`: the one it was created on, or
/// one connected later.
fn endpoint(c: &Record, id: &str) -> Option<pb::NetworkEndpoint> {
    let (s, aliases, interface) = match (&c.network, &c.net) {
        (Mode::Network(n), Some(s)) if n == id => (
            s,
            c.spec.network_aliases.clone(),
            crate::network::link::CONTAINER_IFNAME.to_string(),
        ),
        (Mode::Bridge, Some(s)) if id == crate::network::attach::DEFAULT_BRIDGE => (
            s,
            c.spec.network_aliases.clone(),
            crate::network::link::CONTAINER_IFNAME.to_string(),
        ),
        _ => {
            let a = c.connected.iter().find(|a| a.network == id)?;
            (&a.settings, a.aliases.clone(), a.ifname())
        }
    };
    Some(pb::NetworkEndpoint {
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        ip_address: s.ip.to_string(),
        prefix_length: u32::from(s.prefix),
        aliases,
        interface,
        ipv6_address: s.ip6.map(|a| a.ip.to_string()).unwrap_or_default(),
        ipv6_prefix_length: s.ip6.map(|a| u32::from(a.prefix)).unwrap_or_default(),
    })
}

/// Container `c` on `cni` network `id`: its address from the plugins'
/// stored result while it is attached.
fn cni_endpoint(mgr: &Manager, c: &Record, id: &str) -> Option<pb::NetworkEndpoint> {
    if c.network != Mode::Network(id.to_string()) {
        return None;
    }
    let summary = mgr.cni_summary(&c.id);
    let addr = summary.as_ref().and_then(|s| s.ipv4());
    let addr6 = summary.as_ref().and_then(|s| s.ipv6());
    Some(pb::NetworkEndpoint {
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        ip_address: addr.map(|a| a.ip.to_string()).unwrap_or_default(),
        prefix_length: addr.map_or(0, |a| u32::from(a.prefix)),
        aliases: Vec::new(),
        interface: crate::network::cni::IFNAME.to_string(),
        ipv6_address: addr6.map(|a| a.ip.to_string()).unwrap_or_default(),
        ipv6_prefix_length: addr6.map_or(0, |a| u32::from(a.prefix)),
    })
}

#[tonic::async_trait]
impl Networks for NetworksService {
    async fn create_network(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::CreateNetworkResponse>, Status> {
        let r = req.into_inner();
        let net = self.mgr.networks().create(CreateRequest {
            name: r.name,
            subnet: r.subnet,
            gateway: r.gateway,
            internal: r.internal,
            labels: r.labels.into_iter().collect(),
            driver: r.driver,
            cni_conflist: r.cni_conflist,
            ipv6: r.enable_ipv6,
            subnet6: r.ipv6_subnet,
            gateway6: r.ipv6_gateway,
        })?;
        Ok(Response::new(pb::CreateNetworkResponse {
            network: Some(to_proto(&net)),
        }))
    }

    async fn list_networks(
        &self,
        _: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let networks = self
            .mgr
            .networks()
            .list()
            .iter()
            .map(|n| to_proto(n))
            .collect();
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn inspect_network(
        &self,
        req: Request<pb::InspectNetworkRequest>,
    ) -> Result<Response<pb::InspectNetworkResponse>, Status> {
        let r = req.into_inner();
        key("network", &r.network)?;
        let net = self.mgr.networks().get(&r.network)?;
        let mut endpoints: Vec<pb::NetworkEndpoint> = self
            .mgr
            .list()
            .iter()
            .filter_map(|c| {
                if net.rec.cni.is_some() {
                    cni_endpoint(&self.mgr, c, &net.rec.id)
                } else {
                    endpoint(c, &net.rec.id)
                }
            })
            .collect();
        endpoints.sort_by(|a, b| a.container_name.cmp(&b.container_name));
        Ok(Response::new(pb::InspectNetworkResponse {
            network: Some(to_proto(&net)),
            endpoints,
        }))
    }

    async fn remove_network(
        &self,
        req: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::RemoveNetworkResponse>, Status> {
        let r = req.into_inner();
        key("network", &r.network)?;
        // A CNI network holds no address for a container that is not
        // running: its containers (in any state) are counted here, as a
        // bridge network's addresses are.
        let net = self.mgr.networks().get(&r.network)?;
        let on_it = Mode::Network(net.rec.id.clone());
        if net.rec.cni.is_some() && self.mgr.list().iter().any(|c| c.network == on_it) {
            return Err(NetworkError::InUse {
                name: net.rec.name.clone(),
            }
            .into());
        }
        let rec = self.mgr.networks().remove(&net.rec.id).await?;
        Ok(Response::new(pb::RemoveNetworkResponse { id: rec.id }))
    }

    async fn connect_container(
        &self,
        req: Request<pb::ConnectContainerRequest>,
    ) -> Result<Response<pb::ConnectContainerResponse>, Status> {
        let r = req.into_inner();
        key("network", &r.network)?;
        key("container", &r.container)?;
        let (rec, id) = self
            .mgr
            .connect(ConnectRequest {
                network: r.network,
                container: r.container,
                aliases: r.aliases,
                ipv4_address: r.ipv4_address,
            })
            .await?;
        Ok(Response::new(pb::ConnectContainerResponse {
            endpoint: endpoint(&rec, &id),
        }))
    }

    async fn disconnect_container(
        &self,
        req: Request<pb::DisconnectContainerRequest>,
    ) -> Result<Response<pb::DisconnectContainerResponse>, Status> {
        let r = req.into_inner();
        key("network", &r.network)?;
        key("container", &r.container)?;
        self.mgr
            .disconnect(&r.network, &r.container, r.force)
            .await?;
        Ok(Response::new(pb::DisconnectContainerResponse {}))
    }
}
