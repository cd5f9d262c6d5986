//! Networks a container joins after Create (`network connect`): one more
//! veth pair per network, `eth1`, `eth2`, ... inside, with an address from
//! that network's subnet and no default route (the first network keeps
//! it, as with Docker).
//!
//! An attachment lives in the container's record, like its first address:
//! a restarted berthd claims it again while loading the records, and each
//! start of the container makes its interface again.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::bridge::{host, netlink, Bridge, Settings};
use super::{link, NetworkError};

/// Most networks a container joins beyond its first (`eth1` to `eth9`: the
/// host side's name, `bt<n>` and 12 hex digits, fits the kernel's 15 bytes
/// only with one digit).
pub const MAX_ATTACHED: usize = 9;

/// The network id a connection to the default bridge is recorded under
/// (a user-defined network's id is 64 hex digits: never this).
pub const DEFAULT_BRIDGE: &str = "bridge";

/// A network joined after Create, as the container's record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's id.
    pub network: String,
    /// Its address there (from the connect to the disconnect or Remove).
    pub settings: Settings,
    /// Its names on that network beyond its own.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Which `eth<n>` it is inside (1 to [`MAX_ATTACHED`]).
    pub slot: u8,
}

impl Attachment {
    /// The interface's name inside the container.
    pub fn ifname(&self) -> String {
        format!("eth{}", self.slot)
    }

    /// The host side's name for container `id`: `bt<slot><12 hex>`, which
    /// never begins like the first network's `bth<12 hex>` (so the stale
    /// veth sweep at berthd's start, which knows only those, leaves it).
    pub fn host_link(&self, id: &str) -> String {
        format!("bt{}{}", self.slot, &id[..12.min(id.len())])
    }
}

/// The lowest slot that none of `taken` uses, if one is left.
pub fn free_slot(taken: &[Attachment]) -> Option<u8> {
    (1..=MAX_ATTACHED as u8).find(|s| !taken.iter().any(|a| a.slot == *s))
}

/// A connection's address: `wanted` if given (in the subnet, not the
/// gateway, free), else the lowest free one.
pub fn address(bridge: &Bridge, wanted: Option<Ipv4Addr>) -> Result<Settings, NetworkError> {
    let Some(ip) = wanted else {
        return bridge.allocate();
    };
    let cfg = bridge.config();
    if !cfg.subnet.is_host(ip) || ip == cfg.gateway {
        return Err(NetworkError::InvalidField {
            field: "ipv4_address",
            msg: format!(
                "address {ip} is not a free host address of subnet {} (gateway {})",
                cfg.subnet, cfg.gateway
            ),
        });
    }
    let mut s = Settings {
        ip,
        prefix: cfg.subnet.prefix,
        gateway: cfg.gateway,
        bridge: cfg.name.clone(),
        ports: Vec::new(),
        ip6: None,
    };
    if !bridge.claim(&s) {
        return Err(NetworkError::AddressInUse { ip: ip.to_string() });
    }
    // On a dual-stack network the IPv6 address is the lowest free one.
    match bridge.allocate6() {
        Ok(a) => s.ip6 = a,
        Err(e) => {
            bridge.unclaim(&s);
            return Err(e);
        }
    }
    Ok(s)
}

/// Inside the container's namespace: attachment `a`'s interface gets its
/// address (and its IPv6 address on a dual-stack network), no default route.
async fn configure(
    inside: &rtnetlink::Handle,
    a: &Attachment,
    subnet: &super::ipam::Subnet,
) -> Result<(), NetworkError> {
    let ifname = a.ifname();
    link::configure_named(inside, &ifname, a.settings.ip, subnet, None)
        .await
        .map_err(netlink)?;
    if let Some(a6) = &a.settings.ip6 {
        super::dual::configure(inside, &ifname, a6, false)
            .await
            .map_err(netlink)?;
    }
    Ok(())
}

impl Bridge {
    /// Puts attachment `a` of container `id` into namespace `ns`: its veth
    /// pair, its address, no route beyond its subnet. When this fails, the
    /// pair is deleted again.
    pub async fn attach_more(
        &self,
        id: &str,
        a: &Attachment,
        ns: &OwnedFd,
    ) -> Result<(), NetworkError> {
        let h = link::connect().map_err(|e| host("opening a netlink socket", e))?;
        let bridge = self.ensure(&h).await?;
        let outside = a.host_link(id);
        // A previous run's namespace may still be going, with its pair.
        link::delete_if_present(&h, &outside)
            .await
            .map_err(netlink)?;
        link::add_veth_named(&h, &outside, &a.ifname(), bridge, ns)
            .await
            .map_err(netlink)?;
        let configured = match link::connect_in(ns).await {
            Ok(inside) => configure(&inside, a, &self.config().subnet).await,
            Err(e) => Err(host(
                "opening a netlink socket in the container's namespace",
                e,
            )),
        };
        if configured.is_err() {
            let _ = link::delete_if_present(&h, &outside).await;
        }
        configured
    }

    /// Deletes attachment `a`'s veth pair of container `id` (a running
    /// container's interface goes with it). One that is not there is fine.
    pub async fn detach(&self, id: &str, a: &Attachment) -> Result<(), NetworkError> {
        self.unlink(&a.host_link(id)).await
    }

    /// Deletes the veth pair whose host side is `veth` (the container's
    /// interface goes with it). One that is not there is fine.
    pub async fn unlink(&self, veth: &str) -> Result<(), NetworkError> {
        let h = link::connect().map_err(|e| host("opening a netlink socket", e))?;
        link::delete_if_present(&h, veth).await.map_err(netlink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(slot: u8) -> Attachment {
        Attachment {
            network: "n".into(),
            settings: Settings {
                ip: Ipv4Addr::new(10, 0, 0, 2),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                bridge: "br-x".into(),
                ports: Vec::new(),
                ip6: None,
            },
            aliases: Vec::new(),
            slot,
        }
    }

    #[test]
    fn slots_are_reused_lowest_first_and_bounded() {
        assert_eq!(free_slot(&[]), Some(1));
        assert_eq!(free_slot(&[att(1), att(3)]), Some(2));
        let all: Vec<_> = (1..=MAX_ATTACHED as u8).map(att).collect();
        assert_eq!(free_slot(&all), None);
    }

    #[test]
    fn host_links_fit_and_never_look_like_the_first_veth() {
        let id = "0123456789abcdef".repeat(4);
        for slot in 1..=MAX_ATTACHED as u8 {
            let name = att(slot).host_link(&id);
            assert!(name.len() <= 15, "{name}");
            assert!(!name.starts_with(link::VETH_PREFIX), "{name}");
        }
        assert_eq!(att(2).ifname(), "eth2");
    }

    #[test]
    fn static_addresses_are_checked_against_the_subnet() {
        let cfg = super::super::bridge::Config::new("br-t", "10.77.0.0/24").unwrap();
        let b = Bridge::new(cfg);
        let bad = |ip: [u8; 4]| address(&b, Some(Ipv4Addr::from(ip))).is_err();
        assert!(bad([10, 77, 1, 5]), "outside");
        assert!(bad([10, 77, 0, 1]), "gateway");
        assert!(
            bad([10, 77, 0, 0]) && bad([10, 77, 0, 255]),
            "network, broadcast"
        );
        assert_eq!(
            address(&b, Some(Ipv4Addr::new(10, 77, 0, 9))).unwrap().ip,
            Ipv4Addr::new(10, 77, 0, 9)
        );
        assert!(matches!(
            address(&b, Some(Ipv4Addr::new(10, 77, 0, 9))),
            Err(NetworkError::AddressInUse { .. })
        ));
        assert_eq!(address(&b, None).unwrap().ip, Ipv4Addr::new(10, 77, 0, 2));
    }
}
