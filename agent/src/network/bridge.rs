//! The default bridge network: berth's bridge (`berth0`), its addresses,
//! and the ports published through it.
//!
//! The bridge, its nftables table and the sysctls it needs are made at the
//! first start of a bridge container, not at berthd's start, so a host
//! that never runs one is left as it was. A container's address is taken
//! at Create and kept until Remove (it is in the record, so a restarted
//! berthd claims it again); its veth pair is made at each start in the
//! container's fresh namespace and goes with it when the container ends;
//! its published ports are bound at each start and unbound at its exit.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::ipam::{Ipam, Subnet};
use super::ipam6::{Address6, Ipam6, Net6};
use super::ports::{self, PortMapping};
use super::{link, nft, NetworkError};

/// The default bridge's name.
pub const DEFAULT_NAME: &str = "berth0";
/// The default bridge's subnet (Podman's default too: both can own it only
/// on different hosts; `--bridge-subnet` moves it).
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

/// A bridge container's network, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Its address, from Create to Remove.
    pub ip: Ipv4Addr,
    /// The bridge's subnet prefix length.
    pub prefix: u8,
    /// The bridge's address: the default route.
    pub gateway: Ipv4Addr,
    /// The bridge it is on.
    pub bridge: String,
    /// The host ports its published ports are bound to, while it runs
    /// (and as last bound, after).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Its IPv6 address, on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Address6>,
}

/// What berthd's flags (or a user-defined network) say about a bridge.
#[derive(Debug, Clone)]
pub struct Config {
    /// Link name.
    pub name: String,
    /// Subnet.
    pub subnet: Subnet,
    /// The bridge's own address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// Its nftables table, family and name.
    pub table: String,
    /// No masquerade, nothing forwarded in or out.
    pub internal: bool,
    /// For a user-defined network, the default bridge's name: forwarding
    /// between networks is dropped.
    pub isolate_from: Option<String>,
    /// A dual-stack network's IPv6 prefix and gateway.
    pub v6: Option<Net6>,
}

impl Config {
    /// Checks the flags' values.
    pub fn new(name: &str, subnet: &str) -> Result<Config, String> {
        if name.is_empty()
            || name.len() > 15
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "bridge name {name:?}: 1 to 15 letters, digits, '-', '_' or '.'"
            ));
        }
        let subnet = Subnet::parse(subnet)?;
        Ok(Config {
            name: name.to_string(),
            gateway: subnet.gateway(),
            subnet,
            table: nft::TABLE.to_string(),
            internal: false,
            isolate_from: None,
            v6: None,
        })
    }

    fn rules(&self) -> nft::Rules {
        nft::Rules {
            table: self.table.clone(),
            bridge: self.name.clone(),
            subnet: self.subnet,
            internal: self.internal,
            isolate_from: self.isolate_from.clone(),
            subnet6: self.v6.map(|v| v.subnet),
        }
    }
}

/// Published ports of all of berthd's bridges: one host port is one
/// container's, whichever network it is on.
pub type PublishedPorts = Arc<Mutex<Vec<Published>>>;

/// One published port, live: whose it is and where it goes.
#[derive(Debug, Clone)]
pub struct Published {
    id: String,
    ip: Ipv4Addr,
    port: PortMapping,
}

/// The bridge network of this berthd.
#[derive(Debug)]
pub struct Bridge {
    cfg: Config,
    ipam: Arc<Mutex<Ipam>>,
    /// IPv6 addresses, on a dual-stack network (taken and freed with the
    /// IPv4 ones, under that lock too).
    ipam6: Option<Arc<Mutex<Ipam6>>>,
    /// Published ports of running containers (of every bridge); also
    /// serialises port checks with the nft updates that follow them.
    published: PublishedPorts,
    /// Set once the bridge and table are made (and cleared when the table
    /// goes, [`IDLE_TABLE_GRACE`] after the last container).
    up: Arc<tokio::sync::Mutex<Option<u32>>>,
}

/// How long berth's nftables table outlives the last container of a
/// bridge. Making it again costs a start about 25 ms (two `nft` runs), so
/// back-to-back `run --rm` on the default bridge would pay it every time;
/// a host that stops using the bridge is still left clean soon after.
pub const IDLE_TABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bridge {
    /// The bridge of `cfg`; nothing is made on the host yet.
    pub fn new(cfg: Config) -> Bridge {
        Bridge::sharing(cfg, Arc::default())
    }

    /// The bridge of `cfg`, whose host ports are checked against
    /// `published` (shared with the other bridges).
    pub fn sharing(cfg: Config, published: PublishedPorts) -> Bridge {
        Bridge {
            ipam: Arc::new(Mutex::new(Ipam::with_gateway(cfg.subnet, cfg.gateway))),
            ipam6: cfg
                .v6
                .map(|v| Arc::new(Mutex::new(Ipam6::new(v.subnet, v.gateway)))),
            cfg,
            published,
            up: Arc::default(),
        }
    }

    /// The published ports shared by this bridge.
    pub fn published(&self) -> PublishedPorts {
        self.published.clone()
    }

    /// Whether no container has an address on it.
    pub fn is_unused(&self) -> bool {
        lock(&self.ipam).is_empty()
    }

    /// Deletes the bridge and its table (a removed network's). A bridge
    /// that is not there is fine.
    pub async fn destroy(&self) -> Result<(), NetworkError> {
        let mut up = self.up.lock().await;
        let h = link::connect().map_err(|e| host("opening a netlink socket", e))?;
        link::delete_if_present(&h, &self.cfg.name)
            .await
            .map_err(netlink)?;
        match apply(nft::drop_table(&self.cfg.table)).await {
            // Without nft there can be no table of berth's.
            Ok(()) | Err(NetworkError::Nft(nft::NftError::Spawn(_))) => {}
            Err(e) => return Err(e),
        }
        *up = None;
        Ok(())
    }

    /// The bridge's name and subnet.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A new container's settings: the lowest free address (and, on a
    /// dual-stack network, the lowest free IPv6 address).
    pub fn allocate(&self) -> Result<Settings, NetworkError> {
        let mut ipam = lock(&self.ipam);
        let ip = ipam
            .allocate()
            .ok_or_else(|| NetworkError::Exhausted(self.cfg.subnet.to_string()))?;
        let ip6 = match self.allocate6() {
            Ok(a) => a,
            Err(e) => {
                ipam.release(ip);
                return Err(e);
            }
        };
        Ok(Settings {
            ip,
            prefix: self.cfg.subnet.prefix,
            gateway: self.cfg.gateway,
            bridge: self.cfg.name.clone(),
            ports: Vec::new(),
            ip6,
        })
    }

    /// The lowest free IPv6 address, now taken; `None` on an IPv4-only
    /// network.
    pub fn allocate6(&self) -> Result<Option<Address6>, NetworkError> {
        let (Some(ipam6), Some(v6)) = (&self.ipam6, self.cfg.v6) else {
            return Ok(None);
        };
        let ip = lock(ipam6)
            .allocate()
            .ok_or_else(|| NetworkError::Exhausted(v6.subnet.to_string()))?;
        Ok(Some(Address6 {
            ip,
            prefix: v6.subnet.prefix,
            gateway: v6.gateway,
        }))
    }

    /// Takes a loaded record's addresses again. False (logged by the
    /// caller) when one is outside the subnet or already someone's; then
    /// neither is taken.
    pub fn claim(&self, s: &Settings) -> bool {
        let mut ipam = lock(&self.ipam);
        if !ipam.claim(s.ip) {
            return false;
        }
        let v6 = match (&s.ip6, &self.ipam6) {
            (None, _) => true,
            (Some(a), Some(ipam6)) => lock(ipam6).claim(a.ip),
            // A record with an IPv6 address on a network without IPv6.
            (Some(_), None) => false,
        };
        if !v6 {
            ipam.release(s.ip);
        }
        v6
    }

    /// Frees the addresses a failed Create (or connect) took.
    pub fn unclaim(&self, s: &Settings) {
        lock(&self.ipam).release(s.ip);
        self.release6(s);
    }

    fn release6(&self, s: &Settings) {
        if let (Some(a), Some(ipam6)) = (&s.ip6, &self.ipam6) {
            lock(ipam6).release(a.ip);
        }
    }

    /// Frees a removed container's address. When it was the last, berth's
    /// nftables table goes too, [`IDLE_TABLE_GRACE`] later unless another
    /// container came meanwhile (the bridge stays, as Docker's does).
    pub async fn release(&self, id: &str, s: &Settings) {
        self.release_link(id, &link::veth_name(id), s).await
    }

    /// Frees container `id`'s address `s` whose host-side veth is `veth`
    /// (its first network's, or one connected later).
    pub async fn release_link(&self, id: &str, veth: &str, s: &Settings) {
        // Its veth goes now rather than whenever the kernel frees the
        // namespace (a `container:` joiner may even keep that alive).
        match link::connect() {
            Ok(h) => {
                if let Err(e) = link::delete_if_present(&h, veth).await {
                    tracing::warn!(%id, "removing the container's veth: {e}");
                }
            }
            Err(e) => tracing::warn!(%id, "opening a netlink socket: {e}"),
        }
        let empty = {
            let mut ipam = lock(&self.ipam);
            ipam.release(s.ip);
            self.release6(s);
            ipam.is_empty()
        };
        if empty {
            let (up, ipam) = (self.up.clone(), self.ipam.clone());
            let table = self.cfg.table.clone();
            tokio::spawn(async move {
                tokio::time::sleep(IDLE_TABLE_GRACE).await;
                let mut up = up.lock().await;
                // Checked again under the lock: a create may have come
                // since (and gone again, whose own timer then finds the
                // table gone).
                if lock(&ipam).is_empty() && up.is_some() {
                    match apply(nft::drop_table(&table)).await {
                        Ok(()) => *up = None,
                        Err(e) => tracing::warn!("removing berth's nftables table: {e}"),
                    }
                }
            });
        }
    }

    /// Makes the bridge, its table and sysctls if this berthd has not yet;
    /// returns the bridge's index.
    pub(super) async fn ensure(&self, h: &rtnetlink::Handle) -> Result<u32, NetworkError> {
        let mut up = self.up.lock().await;
        if let Some(index) = *up {
            return Ok(index);
        }
        let name = &self.cfg.name;
        let subnet = &self.cfg.subnet;
        let existing = link::index_of(h, name).await.map_err(netlink)?;
        let clash = link::overlapping_routes(h, subnet, existing)
            .await
            .map_err(netlink)?;
        if !clash.is_empty() {
            return Err(NetworkError::SubnetInUse {
                subnet: subnet.to_string(),
                routes: clash.join(", "),
            });
        }
        if self.cfg.v6.is_some() {
            // Checked before anything is made: a host without IPv6 gets a
            // clear error, not a half-made bridge.
            super::ipam6::host_supports_ipv6().map_err(NetworkError::NoIpv6)?;
        }
        let index = link::ensure_bridge(h, name, subnet, self.cfg.gateway)
            .await
            .map_err(netlink)?;
        if let Some(v6) = self.cfg.v6 {
            super::dual::bridge_up(h, name, index, &v6).await?;
        }
        // Forwarding, so containers reach beyond the host (as Docker sets
        // it); route_localnet, so the host's 127.0.0.1:<port> can be
        // DNATed onto the bridge.
        for (path, what) in [
            (
                "/proc/sys/net/ipv4/ip_forward".to_string(),
                "IPv4 forwarding",
            ),
            (
                format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
                "route_localnet",
            ),
        ] {
            std::fs::write(&path, "1").map_err(|e| NetworkError::Host {
                what: format!("enabling {what} ({path})"),
                source: e,
            })?;
        }
        let live: Vec<(Ipv4Addr, PortMapping)> = lock(&self.published)
            .iter()
            .filter(|p| subnet.contains(p.ip))
            .map(|p| (p.ip, p.port.clone()))
            .collect();
        apply(nft::table(&self.cfg.rules(), &live)).await?;
        *up = Some(index);
        Ok(index)
    }

    /// Connects a starting container: its veth pair into namespace `ns`,
    /// address and default route inside. When this fails, what it made goes
    /// with the namespace.
    pub async fn attach(&self, id: &str, s: &Settings, ns: &OwnedFd) -> Result<(), NetworkError> {
        let h = link::connect().map_err(|e| host("opening a netlink socket", e))?;
        let bridge = self.ensure(&h).await?;
        // The namespace of this container's previous run is torn down by
        // the kernel in the background, its veth with it: one still there
        // would make the new pair's name clash.
        link::delete_if_present(&h, &link::veth_name(id))
            .await
            .map_err(netlink)?;
        link::add_veth(&h, id, bridge, ns).await.map_err(netlink)?;
        let inside = link::connect_in(ns)
            .await
            .map_err(|e| host("opening a netlink socket in the container's namespace", e))?;
        let mut configured =
            link::configure_inside(&inside, s.ip, &self.cfg.subnet, self.cfg.gateway).await;
        if let (Ok(()), Some(a)) = (&configured, &s.ip6) {
            configured = super::dual::configure(&inside, link::CONTAINER_IFNAME, a, true).await;
        }
        if let Err(e) = configured {
            // The namespace may outlive this start (a spare's fd is held a
            // little longer): delete the pair now.
            if let Ok(Some(i)) = link::index_of(&h, &link::veth_name(id)).await {
                let _ = h.link().del(i).execute().await;
            }
            return Err(netlink(e));
        }
        Ok(())
    }

    /// Binds container `id`'s requested ports (`ip` its address) to host
    /// ports and adds their DNAT, all or none. A host port another
    /// container has is ALREADY_EXISTS; one a host process holds is
    /// FAILED_PRECONDITION.
    pub async fn publish(
        &self,
        id: &str,
        ip: Ipv4Addr,
        requests: &[PortMapping],
    ) -> Result<Vec<PortMapping>, NetworkError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut bound = Vec::with_capacity(requests.len());
        {
            // Checked and claimed under one lock, so two starts cannot both
            // take a port.
            let mut published = lock(&self.published);
            for r in requests {
                if r.host_port != 0 {
                    if let Some(other) = published.iter().find(|p| p.port.clashes(r)) {
                        return Err(NetworkError::PortTaken {
                            port: r.describe_host(),
                            by: format!("container {}", &other.id[..12.min(other.id.len())]),
                        });
                    }
                }
                let port = ports::probe(r).map_err(|e| NetworkError::PortBusy {
                    port: r.describe_host(),
                    source: e,
                })?;
                bound.push(PortMapping {
                    host_port: port,
                    ..r.clone()
                });
            }
            published.extend(bound.iter().map(|p| Published {
                id: id.to_string(),
                ip,
                port: p.clone(),
            }));
        }
        let table = &self.cfg.table;
        let script: String = bound
            .iter()
            .map(|p| nft::element(table, "add", ip, p))
            .collect();
        if let Err(e) = apply(script).await {
            lock(&self.published).retain(|p| p.id != id);
            return Err(e);
        }
        Ok(bound)
    }

    /// Removes container `id`'s DNAT (at its exit, or a failed start).
    /// Runs nft in place (blocking, a few milliseconds), so that the
    /// removal is done before anything can publish the same ports again.
    pub fn unpublish(&self, id: &str) {
        let gone: Vec<Published> = {
            let mut published = lock(&self.published);
            let (gone, kept) = published
                .drain(..)
                .partition(|p| p.id == id && self.cfg.subnet.contains(p.ip));
            *published = kept;
            gone
        };
        if gone.is_empty() {
            return;
        }
        let script: String = gone
            .iter()
            .map(|p| nft::element(&self.cfg.table, "delete", p.ip, &p.port))
            .collect();
        if let Err(e) = nft::apply(&script) {
            tracing::warn!(%id, "removing published ports: {e}");
        }
    }

    /// At berthd's start, after the records are loaded: running
    /// containers on this bridge (`live`: id, settings; those of other
    /// bridges are passed too, and only their veths kept) keep their ports;
    /// veths and table entries of anything else go. Done only when the
    /// bridge exists (a host that never ran a container on it is not
    /// touched).
    pub async fn reconcile(
        &self,
        live: &[(String, Settings)],
        stale_veths: bool,
    ) -> Result<(), NetworkError> {
        let h = link::connect().map_err(|e| host("opening a netlink socket", e))?;
        if link::index_of(&h, &self.cfg.name)
            .await
            .map_err(netlink)?
            .is_none()
        {
            return Ok(());
        }
        if stale_veths {
            let keep: HashSet<String> = live.iter().map(|(id, _)| id.clone()).collect();
            let gone = link::remove_stale_veths(&h, &keep).await.map_err(netlink)?;
            if !gone.is_empty() {
                tracing::info!(
                    "removed {} veth(s) of containers gone: {gone:?}",
                    gone.len()
                );
            }
        }
        {
            let mut published = lock(&self.published);
            published.retain(|p| !self.cfg.subnet.contains(p.ip));
            for (id, s) in live.iter().filter(|(_, s)| s.bridge == self.cfg.name) {
                published.extend(s.ports.iter().map(|p| Published {
                    id: id.clone(),
                    ip: s.ip,
                    port: p.clone(),
                }));
            }
        }
        if lock(&self.ipam).is_empty() {
            apply(nft::drop_table(&self.cfg.table)).await?;
            return Ok(());
        }
        // The table as the records say, in one transaction: elements of
        // containers that ended while berthd was away go.
        self.ensure(&h).await?;
        Ok(())
    }
}

impl PortMapping {
    /// `[ip:]port/proto` of the host side.
    pub fn describe_host(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}:{}/{}", self.host_port, self.proto.as_str()),
            None => format!("{}/{}", self.host_port, self.proto.as_str()),
        }
    }
}

async fn apply(script: String) -> Result<(), NetworkError> {
    tokio::task::spawn_blocking(move || nft::apply(&script))
        .await
        .map_err(|e| host("running nft", std::io::Error::other(e)))?
        .map_err(NetworkError::Nft)
}

pub(super) fn netlink(e: link::Error) -> NetworkError {
    NetworkError::Netlink(e.to_string())
}

pub(super) fn host(what: &str, source: std::io::Error) -> NetworkError {
    NetworkError::Host {
        what: what.to_string(),
        source,
    }
}
