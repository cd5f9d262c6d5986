//! Networks.ConnectContainer and DisconnectContainer: a container joins or
//! leaves a network after Create: a user-defined one or the default bridge,
//! the one it was created on included (its first network: see
//! `connect_first`).
//!
//! A running (or paused) container gets or loses its interface at once; a
//! created or exited one only has its record changed, and its next start
//! makes the interface. The record is saved before the call returns, so a
//! connection survives berthd's restart (kill -9 too) and the container's.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use super::connect_first::first_is_empty;
use super::entry::{Announce, Entry};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::Op;
use super::Manager;
use crate::error::capped;
use crate::events::domain::Action;
use crate::network::attach::{self, Attachment, MAX_ATTACHED};
use crate::network::{Mode, NetworkError};

/// Most aliases one connection gives.
pub const MAX_ALIASES: usize = 16;
/// Longest static address string.
pub const MAX_ADDRESS: usize = 64;

/// What a client asks ConnectContainer for.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// Network name, id or unique id prefix.
    pub network: String,
    /// Container name, id or unique id prefix.
    pub container: String,
    /// Names on that network beyond its own.
    pub aliases: Vec<String>,
    /// A static IPv4 address in the network's subnet, or "" for the lowest
    /// free one.
    pub ipv4_address: String,
}

impl Manager {
    /// Connects a container to one more network: a user-defined one or
    /// the default "bridge". One it is on already is ALREADY_EXISTS (Docker
    /// refuses it too); a container in mode host, none or container:<x> is
    /// FAILED_PRECONDITION. A container that has left its first network
    /// gets this one as its first ([`Manager::join_first`]). A failed
    /// connect changes nothing. Returns the record and the network's id
    /// ("bridge" for the default bridge).
    pub async fn connect(&self, req: ConnectRequest) -> Result<(Record, String)> {
        check_aliases(&req.aliases)?;
        let wanted = parse_address(&req.ipv4_address)?;
        let entry = self.get(&req.container)?;
        let _ops = entry.ops.lock().await;
        // Looked up once the lock is held: a network removed while this
        // waited (behind a stop, say) must not be joined.
        let target = self.target(&req.network)?;
        let rec = entry.snapshot();
        if matches!(&rec.network, Mode::Network(id) if self.networks.cni_list(id).is_some()) {
            return Err(NetworkError::Unsupported(
                "connecting a container on a CNI network to another network",
            )
            .into());
        }
        let mode = match &rec.network {
            Mode::Host => Some("host"),
            Mode::None => Some("none"),
            Mode::Container(_) => Some("container"),
            Mode::Pod(_) => Some("pod"),
            Mode::Bridge | Mode::Network(_) => None,
        };
        if let Some(mode) = mode {
            return Err(NetworkError::NotBridged {
                container: rec.name.clone(),
                mode,
            }
            .into());
        }
        if target.has(&rec) {
            return Err(NetworkError::AlreadyConnected {
                container: rec.name.clone(),
                network: target.rec.name.clone(),
            }
            .into());
        }
        let id = target.id().to_string();
        if first_is_empty(&rec) {
            let saved = self
                .join_first(&entry, &target, req.aliases, wanted)
                .await?;
            return Ok((saved, id));
        }
        if !req.aliases.is_empty() && target.mode == Mode::Bridge {
            return Err(ContainerError::invalid(
                "aliases",
                "network aliases need a user-defined network, not \"bridge\"",
            ));
        }
        let bridge = target.bridge.clone();
        let slot = attach::free_slot(&rec.connected).ok_or(NetworkError::TooManyNetworks {
            container: rec.name.clone(),
            max: MAX_ATTACHED,
        })?;
        let settings = attach::address(&bridge, wanted)?;
        let att = Attachment {
            network: id.clone(),
            settings,
            aliases: req.aliases,
            slot,
        };
        // A running container gets its interface before the record says
        // so: a failure leaves neither.
        if let Some(ns) = self.live_namespace(&entry, &rec) {
            if let Err(e) = bridge.attach_more(&rec.id, &att, &ns).await {
                bridge.unclaim(&att.settings);
                return Err(e.into());
            }
        }
        let saved = self.commit(
            &entry,
            Op::Update,
            |r| r.connected.push(att.clone()),
            Announce::Nothing,
        );
        let saved = match saved {
            Ok(r) => r,
            Err(e) => {
                let _ = bridge.detach(&rec.id, &att).await;
                bridge.unclaim(&att.settings);
                return Err(e);
            }
        };
        self.networks
            .announce_connection(&target.rec, &rec.id, Action::Connected);
        // Its peers on the network learn its name, and it theirs.
        self.refresh_hosts(&target.mode);
        Ok((saved, id))
    }

    /// Disconnects a container from a network it is on: the one it was
    /// created on (or first connected to, after leaving that) or one it was
    /// connected to later; the others stay. One it is not on is
    /// FAILED_PRECONDITION. `force`: a running container's interface that
    /// cannot be deleted is logged, not an error, and the connection goes
    /// from the record all the same.
    pub async fn disconnect(&self, network: &str, container: &str, force: bool) -> Result<Record> {
        let entry = self.get(container)?;
        let _ops = entry.ops.lock().await;
        let target = self.target(network)?;
        let rec = entry.snapshot();
        if let (true, Some(first)) = (target.is_first_of(&rec), &rec.net) {
            return self.leave_first(&entry, &rec, &target, first, force).await;
        }
        let Some(att) = rec
            .connected
            .iter()
            .find(|a| a.network == target.id())
            .cloned()
        else {
            return Err(NetworkError::NotConnected {
                container: rec.name.clone(),
                network: target.rec.name.clone(),
            }
            .into());
        };
        if rec.state.is_live() {
            if let Err(e) = target.bridge.detach(&rec.id, &att).await {
                if !force {
                    return Err(e.into());
                }
                tracing::warn!(id = %rec.id, "disconnecting (forced): {e}");
            }
        }
        let saved = self.commit(
            &entry,
            Op::Update,
            |r| r.connected.retain(|a| a.network != att.network),
            Announce::Nothing,
        )?;
        // The pair is gone already; this frees the address (and the
        // network's table when nothing else is on it).
        target
            .bridge
            .release_link(&rec.id, &att.host_link(&rec.id), &att.settings)
            .await;
        self.networks
            .announce_connection(&target.rec, &rec.id, Action::Disconnected);
        self.refresh_hosts(&target.mode);
        self.refresh_hosts_of(&entry);
        Ok(saved)
    }

    /// The network namespace of `rec`'s init when it runs now, checked to
    /// be that very process's (by its pidfd, after the open).
    pub(super) fn live_namespace(&self, entry: &Entry, rec: &Record) -> Option<OwnedFd> {
        if !rec.state.is_live() || rec.pid <= 0 {
            return None;
        }
        let process = entry
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let ns = crate::network::namespace::open_of(rec.pid).ok()?;
        process.signal(0).ok()?;
        Some(ns)
    }

    /// Every connection of the loaded records claimed again (at berthd's
    /// start, as the first address is).
    pub(super) fn claim_connected(&self, rec: &Record) {
        for a in &rec.connected {
            let claimed = self
                .attached_bridge(&a.network)
                .is_some_and(|b| b.claim(&a.settings));
            if !claimed {
                tracing::warn!(
                    id = %rec.id,
                    "connected address {} is outside its network's subnet, taken twice, \
                     or its network is gone",
                    a.settings.ip
                );
            }
        }
    }

    /// A removed container's connections: their veths and addresses go.
    pub(super) async fn release_connected(&self, rec: &Record) {
        for a in &rec.connected {
            if let Some(b) = self.attached_bridge(&a.network) {
                b.release_link(&rec.id, &a.host_link(&rec.id), &a.settings)
                    .await;
            }
        }
    }

    /// At a start, after its first network: the interfaces of the
    /// networks it was connected to, in namespace `ns`.
    pub(super) async fn attach_connected(&self, rec: &Record, ns: &OwnedFd) -> Result<()> {
        for a in &rec.connected {
            let bridge =
                self.attached_bridge(&a.network)
                    .ok_or_else(|| NetworkError::NotFound {
                        key: a.network.clone(),
                    })?;
            bridge.attach_more(&rec.id, a, ns).await?;
        }
        Ok(())
    }
}

fn check_aliases(aliases: &[String]) -> Result<()> {
    if aliases.len() > MAX_ALIASES {
        return Err(ContainerError::invalid(
            "aliases",
            format!("{} aliases; at most {MAX_ALIASES}", aliases.len()),
        ));
    }
    for a in aliases {
        if !super::network::is_hostname(a) {
            return Err(ContainerError::invalid(
                "aliases",
                format!("alias {:?}: 1 to 253 of [a-zA-Z0-9_.-]", capped(a)),
            ));
        }
    }
    Ok(())
}

fn parse_address(ip: &str) -> Result<Option<Ipv4Addr>> {
    if ip.is_empty() {
        return Ok(None);
    }
    if ip.len() > MAX_ADDRESS || ip.contains(':') {
        return Err(ContainerError::invalid(
            "ipv4_address",
            format!("address {:?} is not an IPv4 address", capped(ip)),
        ));
    }
    ip.parse().map(Some).map_err(|_| {
        ContainerError::invalid(
            "ipv4_address",
            format!("address {:?} is not an IPv4 address", capped(ip)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_addresses_are_bounded() {
        assert!(check_aliases(&["db".into(), "db.local".into()]).is_ok());
        assert!(check_aliases(&["bad name".into()]).is_err());
        assert!(check_aliases(&["x".repeat(254)]).is_err());
        assert!(check_aliases(&vec!["a".into(); MAX_ALIASES + 1]).is_err());
        assert_eq!(parse_address("").unwrap(), None);
        assert_eq!(
            parse_address("10.1.2.3").unwrap(),
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
        for bad in ["10.1.2", "fe80::1", "x", &"1".repeat(100)] {
            let e = parse_address(bad).unwrap_err().to_string();
            assert!(e.len() < 200, "{e}");
        }
    }
}
