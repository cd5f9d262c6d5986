//! User-defined networks (Docker's `docker network create`): each is a
//! bridge of its own (`br-<12 hex of its id>`) with a subnet of its own,
//! an nftables table of its own (`inet berth_<12 hex>`), and containers
//! that reach each other but not other networks.
//!
//! A network's record is a 0600 JSON file in the state directory's
//! `networks/`, written (synced) before Create returns and deleted at
//! Remove, so the set of networks survives restarts and kill -9. As for
//! the default bridge, a container's address lives in its own record; the
//! bridge and table are made at the first start of a container on the
//! network and adopted as they are after a restart.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::bridge::{self, Bridge};
use super::ipam::Subnet;
use super::ipam6::{Net6, Subnet6};
use super::user_request::check;
pub(super) use super::user_request::invalid;
pub use super::user_request::{
    check_name, CreateRequest, MAX_ADDR, MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_NAME,
    RESERVED,
};
use super::{nft, NetworkError};
use crate::error::capped;
use crate::events::domain::{Action, Event, EventSink, Object};
use crate::fsutil::{write_atomic, WriteOptions};

/// Where subnets of networks created without one come from, a /24 each.
pub const POOL: &str = "10.89.0.0/16";
/// Where IPv6 prefixes of dual-stack networks created without one come
/// from, a /64 each (a ULA prefix: "berth" in its global id).
pub const POOL6: &str = "fd62:6572:7468::/48";

/// A user-defined network, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 lowercase hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `a.b.c.d/n`.
    pub subnet: String,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// No outbound NAT and nothing forwarded in or out.
    pub internal: bool,
    /// A dual-stack network's IPv6 prefix, `x::/n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// Its bridge's IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
    /// Labels as given.
    pub labels: BTreeMap<String, String>,
    /// Unix nanos.
    pub created_at: i64,
    /// A `cni` network's list (then `subnet` is "" and `gateway`
    /// 0.0.0.0: the plugins choose addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<super::cni::Conflist>,
}

impl NetworkRecord {
    /// The bridge's link name (15 bytes, the kernel's limit).
    pub fn bridge_name(&self) -> String {
        format!("{}{}", nft::NETWORK_BRIDGE_PREFIX, &self.id[..12])
    }

    /// Its nftables table, family and name.
    pub fn table(&self) -> String {
        format!("{}{}", nft::NETWORK_TABLE_PREFIX, &self.id[..12])
    }
}

/// A network and its bridge.
#[derive(Debug)]
pub struct UserNetwork {
    /// What is stored.
    pub rec: NetworkRecord,
    /// Its bridge (addresses, link, rules); none for a `cni` network,
    /// whose plugins do that.
    pub bridge: Option<Arc<Bridge>>,
}

impl UserNetwork {
    /// Its bridge, or what a `cni` network answers to a request that needs
    /// one (ConnectContainer).
    pub fn bridge(&self) -> Result<&Arc<Bridge>, NetworkError> {
        self.bridge.as_ref().ok_or(NetworkError::Unsupported(
            "connecting a container to a CNI network after Create",
        ))
    }
}

/// All networks of this berthd: the default bridge and the user-defined
/// ones.
pub struct Networks {
    dir: PathBuf,
    default: Arc<Bridge>,
    events: Arc<dyn EventSink>,
    /// By id. Allocations of addresses on a user network are made under
    /// this lock, so a Remove that finds a network unused cannot race a
    /// Create onto it.
    nets: Mutex<BTreeMap<String, Arc<UserNetwork>>>,
    /// Plugin directories and stored attachments of `cni` networks.
    cni: super::cni::Cni,
    /// Containers attached (or being attached) to a `cni` network, and
    /// which: changed under `nets`'s lock, as allocations are.
    cni_users: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks").field("dir", &self.dir).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io(what: impl Into<String>, source: std::io::Error) -> NetworkError {
    NetworkError::Host {
        what: what.into(),
        source,
    }
}

impl Networks {
    /// Loads the networks stored in `dir` (made if missing); `default` is
    /// the default bridge. A record that cannot be read is logged and
    /// left where it is.
    pub fn open(
        dir: PathBuf,
        default: Arc<Bridge>,
        events: Arc<dyn EventSink>,
    ) -> Result<Networks, NetworkError> {
        if !dir.exists() {
            crate::state_dir::create_private_dir(&dir)
                .map_err(|e| io(format!("creating {}", dir.display()), e))?;
        }
        let mut nets = BTreeMap::new();
        let entries =
            std::fs::read_dir(&dir).map_err(|e| io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(format!("reading {}", dir.display()), e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let rec: NetworkRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("network record {}: {e}", path.display());
                    continue;
                }
            };
            // Names of links and tables are cut from the id: a record
            // whose id is not the 64 hex digits of its file name is left
            // alone, never sliced.
            let named = path.file_stem().and_then(|s| s.to_str()) == Some(rec.id.as_str());
            if !named || rec.id.len() != 64 || !rec.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                tracing::error!("network record {}: not a network id", path.display());
                continue;
            }
            match build(&rec, &default) {
                Ok(bridge) => {
                    nets.insert(rec.id.clone(), Arc::new(UserNetwork { rec, bridge }));
                }
                Err(e) => tracing::error!("network record {}: {e}", path.display()),
            }
        }
        let cni = super::cni::Cni {
            dirs: super::cni::PluginDirs::parse(super::cni::DEFAULT_BIN_DIRS),
            store: super::cni::Store::open(dir.join("cni")).map_err(NetworkError::from)?,
        };
        let cni_users = cni
            .store
            .all()
            .into_iter()
            .map(|a| (a.container, a.network))
            .collect();
        Ok(Networks {
            dir,
            default,
            events,
            nets: Mutex::new(nets),
            cni,
            cni_users: Mutex::new(cni_users),
        })
    }

    /// Looks CNI plugins up in `dirs` (berthd's `--cni-bin-dir`).
    pub fn with_cni_plugin_dirs(mut self, dirs: super::cni::PluginDirs) -> Self {
        self.cni.dirs = dirs;
        self
    }

    /// Plugin directories and stored attachments of `cni` networks.
    pub fn cni(&self) -> &super::cni::Cni {
        &self.cni
    }

    /// Marks `container` as attaching to `cni` network `id` (under the lock
    /// a Remove takes, so a network in use is never removed); its list.
    pub fn cni_claim(
        &self,
        id: &str,
        container: &str,
    ) -> Result<super::cni::Conflist, NetworkError> {
        let nets = lock(&self.nets);
        let net = find(&nets, id)?;
        let list = net.rec.cni.clone().ok_or(NetworkError::Invalid(format!(
            "network {} is not a CNI network",
            net.rec.name
        )))?;
        lock(&self.cni_users).insert(container.to_string(), id.to_string());
        Ok(list)
    }

    /// `container` is no longer attached to a `cni` network.
    pub fn cni_unclaim(&self, container: &str) {
        lock(&self.cni_users).remove(container);
    }

    /// The list of `cni` network `id`, if it exists and is one.
    pub fn cni_list(&self, id: &str) -> Option<super::cni::Conflist> {
        lock(&self.nets).get(id).and_then(|n| n.rec.cni.clone())
    }

    /// The default bridge.
    pub fn default_bridge(&self) -> &Arc<Bridge> {
        &self.default
    }

    /// The bridge of user network `id`, if it exists.
    pub fn bridge(&self, id: &str) -> Option<Arc<Bridge>> {
        lock(&self.nets).get(id).and_then(|n| n.bridge.clone())
    }

    /// All user networks, by name.
    pub fn list(&self) -> Vec<Arc<UserNetwork>> {
        let mut all: Vec<_> = lock(&self.nets).values().cloned().collect();
        all.sort_by(|a, b| a.rec.name.cmp(&b.rec.name));
        all
    }

    /// The network named `key` (name, id or unique id prefix).
    pub fn get(&self, key: &str) -> Result<Arc<UserNetwork>, NetworkError> {
        find(&lock(&self.nets), key)
    }

    /// An address on network `key` for a new container: the network's id
    /// and the container's settings (none on a `cni` network: its
    /// plugins give one at each start).
    pub fn allocate(&self, key: &str) -> Result<(String, Option<bridge::Settings>), NetworkError> {
        let nets = lock(&self.nets);
        let net = find(&nets, key)?;
        let settings = net.bridge.as_ref().map(|b| b.allocate()).transpose()?;
        Ok((net.rec.id.clone(), settings))
    }

    /// Creates a network.
    pub fn create(&self, req: CreateRequest) -> Result<Arc<UserNetwork>, NetworkError> {
        check(&req)?;
        let cni = super::cni::check_create(&req, &self.cni.dirs)?;
        let mut nets = lock(&self.nets);
        if nets.values().any(|n| n.rec.name == req.name) {
            return Err(NetworkError::NameInUse {
                name: req.name.clone(),
            });
        }
        let taken: Vec<(Subnet, String)> = std::iter::once((
            self.default.config().subnet,
            format!("the default bridge ({})", self.default.config().name),
        ))
        .chain(nets.values().filter_map(|n| {
            Subnet::parse(&n.rec.subnet)
                .ok()
                .map(|s| (s, format!("network {}", n.rec.name)))
        }))
        .collect();
        let subnet = if cni.is_some() {
            // Unused: the plugins choose addresses.
            Subnet {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            }
        } else if req.subnet.is_empty() {
            pick(&taken)?
        } else {
            let s = Subnet::parse(&req.subnet).map_err(|e| invalid("subnet", e))?;
            if let Some((other, whose)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                return Err(NetworkError::Overlap {
                    subnet: s.to_string(),
                    other: format!("{other} of {whose}"),
                });
            }
            s
        };
        let gateway = if cni.is_some() {
            Ipv4Addr::UNSPECIFIED
        } else if req.gateway.is_empty() {
            subnet.gateway()
        } else {
            let g: Ipv4Addr = req.gateway.parse().map_err(|_| {
                invalid(
                    "gateway",
                    format!("gateway {:?} is not an IPv4 address", capped(&req.gateway)),
                )
            })?;
            if !subnet.is_host(g) {
                return Err(invalid(
                    "gateway",
                    format!("gateway {g} is not a host address of subnet {subnet}"),
                ));
            }
            g
        };
        let v6 = if req.ipv6 {
            super::ipam6::host_supports_ipv6().map_err(NetworkError::NoIpv6)?;
            Some(super::user6::net6(&nets, &req)?)
        } else {
            None
        };
        let id = loop {
            let id = crate::container::spec::new_id();
            // The bridge and table names use 12 digits: they must be unique
            // too, and a name must not read as an id prefix of another.
            if !nets.keys().any(|k| k[..12] == id[..12]) {
                break id;
            }
        };
        let rec = NetworkRecord {
            id: id.clone(),
            name: req.name,
            subnet: if cni.is_some() {
                String::new()
            } else {
                subnet.to_string()
            },
            gateway,
            internal: req.internal,
            subnet6: v6.map(|v| v.subnet.to_string()),
            gateway6: v6.map(|v| v.gateway),
            labels: req.labels,
            created_at: now_nanos(),
            cni,
        };
        let bridge = build(&rec, &self.default)?;
        let json = serde_json::to_vec_pretty(&rec)
            .map_err(|e| io("encoding the network record", std::io::Error::other(e)))?;
        let path = self.dir.join(format!("{id}.json"));
        write_atomic(&path, &json, WriteOptions::synced().with_mode(0o600))
            .map_err(|e| io(format!("writing {}", path.display()), e))?;
        let net = Arc::new(UserNetwork { rec, bridge });
        nets.insert(id, net.clone());
        drop(nets);
        self.announce(&net.rec, Action::Created);
        Ok(net)
    }

    /// Removes network `key`: refused while a container has an address on
    /// it; its bridge and table go.
    pub async fn remove(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        // Out of the table first, under the lock that allocations take: no
        // container can join it from here on.
        let net = {
            let mut nets = lock(&self.nets);
            let net = find(&nets, key)?;
            let cni_used = lock(&self.cni_users).values().any(|n| *n == net.rec.id);
            if cni_used || !net.bridge.as_ref().is_none_or(|b| b.is_unused()) {
                return Err(NetworkError::InUse {
                    name: net.rec.name.clone(),
                });
            }
            nets.remove(&net.rec.id);
            net
        };
        // The bridge and table before the record: a failure (or a crash)
        // in between leaves a network that is still stored, whose bridge
        // is made again at its next use.
        let destroyed = match &net.bridge {
            Some(b) => b.destroy().await,
            None => Ok(()),
        };
        let gone = match destroyed {
            Ok(()) => {
                let path = self.dir.join(format!("{}.json", net.rec.id));
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io(format!("removing {}", path.display()), e)),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = gone {
            lock(&self.nets).insert(net.rec.id.clone(), net.clone());
            return Err(e);
        }
        self.announce(&net.rec, Action::Removed);
        Ok(net.rec.clone())
    }

    /// Announces that container `container` (its id) joined or left
    /// network `rec` ([`Action::Connected`], [`Action::Disconnected`]).
    pub fn announce_connection(&self, rec: &NetworkRecord, container: &str, action: Action) {
        let mut ev = Event::new(Object::Network, action, rec.id.clone());
        ev.name = rec.name.clone();
        ev.labels = rec.labels.clone();
        ev.container = container.to_string();
        self.events.publish(ev);
    }

    fn announce(&self, rec: &NetworkRecord, action: Action) {
        let mut ev = Event::new(Object::Network, action, rec.id.clone());
        ev.name = rec.name.clone();
        ev.labels = rec.labels.clone();
        self.events.publish(ev);
    }

    /// At berthd's start: bridges and tables of networks that are no
    /// longer stored (removed while their deletion failed) go.
    pub async fn remove_unknown(&self) {
        let known: Vec<String> = lock(&self.nets)
            .values()
            .filter(|n| n.bridge.is_some())
            .map(|n| n.rec.bridge_name())
            .collect();
        let Ok(h) = super::link::connect() else {
            return;
        };
        match super::link::names_with_prefix(&h, nft::NETWORK_BRIDGE_PREFIX).await {
            Ok(names) => {
                for name in names.into_iter().filter(|n| !known.contains(n)) {
                    // Only bridges with berth's naming and a table of berth
                    // are berth's: Docker's br-<id> must be left alone.
                    let table = format!(
                        "{}{}",
                        nft::NETWORK_TABLE_PREFIX,
                        &name[nft::NETWORK_BRIDGE_PREFIX.len()..]
                    );
                    if nft::table_exists(&table) {
                        tracing::info!("removing {name}, bridge of a removed network");
                        let _ = super::link::delete_if_present(&h, &name).await;
                        let _ = nft::apply(&nft::drop_table(&table));
                    }
                }
            }
            Err(e) => tracing::warn!("listing bridges: {e}"),
        }
    }
}

fn find(
    nets: &BTreeMap<String, Arc<UserNetwork>>,
    key: &str,
) -> Result<Arc<UserNetwork>, NetworkError> {
    let not_found = || NetworkError::NotFound {
        key: capped(key).into_owned(),
    };
    if key.is_empty() {
        return Err(invalid("network", "no network given".into()));
    }
    if RESERVED.contains(&key) {
        return Err(NetworkError::Predefined {
            name: key.to_string(),
        });
    }
    if let Some(n) = nets.values().find(|n| n.rec.name == key) {
        return Ok(n.clone());
    }
    if !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let mut matches = nets
        .range(key.to_string()..)
        .take_while(|(k, _)| k.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some((_, n)), None) => Ok(n.clone()),
        (None, _) => Err(not_found()),
        (Some(_), Some(_)) => Err(NetworkError::Ambiguous {
            key: capped(key).into_owned(),
        }),
    }
}

/// The bridge of a network record (none for a `cni` network).
fn build(rec: &NetworkRecord, default: &Bridge) -> Result<Option<Arc<Bridge>>, NetworkError> {
    if rec.cni.is_some() {
        return Ok(None);
    }
    let subnet = Subnet::parse(&rec.subnet).map_err(NetworkError::Invalid)?;
    let v6 = match (&rec.subnet6, rec.gateway6) {
        (Some(s), Some(gateway)) => Some(Net6 {
            subnet: Subnet6::parse(s).map_err(NetworkError::Invalid)?,
            gateway,
        }),
        _ => None,
    };
    let cfg = bridge::Config {
        name: rec.bridge_name(),
        subnet,
        gateway: rec.gateway,
        table: rec.table(),
        internal: rec.internal,
        isolate_from: Some(default.config().name.clone()),
        v6,
    };
    Ok(Some(Arc::new(Bridge::sharing(cfg, default.published()))))
}

/// The first /24 of [`POOL`] that overlaps nothing taken.
fn pick(taken: &[(Subnet, String)]) -> Result<Subnet, NetworkError> {
    let pool = Subnet::parse(POOL).map_err(NetworkError::Invalid)?;
    let base = u32::from(pool.addr);
    let count = 1u32 << (24 - pool.prefix);
    (0..count)
        .map(|i| Subnet {
            addr: Ipv4Addr::from(base + (i << 8)),
            prefix: 24,
        })
        .find(|s| !taken.iter().any(|(t, _)| t.overlaps(s)))
        .ok_or(NetworkError::PoolExhausted)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
