//! The network a ConnectContainer or DisconnectContainer names, and the
//! container's first network (`eth0`: its default route and published
//! ports) joined or left that way.
//!
//! A container created on "bridge" or a user-defined network can leave
//! that network like any other, as with Docker: its interface, address
//! and published ports go, its other networks stay, and with none left it
//! has only `lo`. Its record keeps its mode (so it stays connectable, unlike
//! one created with `none`) with no first address. The next network it is
//! connected to then becomes its first again: `eth0`, the default route,
//! its published ports.

use std::sync::Arc;

use super::entry::{Announce, Entry};
use super::error::{ContainerError, Result};
use super::record::Record;
use super::state::Op;
use super::Manager;
use crate::events::domain::Action;
use crate::network::attach::{self, DEFAULT_BRIDGE};
use crate::network::bridge::{Bridge, Settings};
use crate::network::user::NetworkRecord;
use crate::network::{Mode, NetworkError};

/// A network a container can be connected to: the default bridge or a
/// user-defined bridge network.
pub(super) struct Target {
    /// The network as events show it (for the default bridge: id and name
    /// "bridge").
    pub rec: NetworkRecord,
    /// Its bridge.
    pub bridge: Arc<Bridge>,
    /// The container's mode when this is its first network.
    pub mode: Mode,
}

impl Target {
    /// The id connections to it are recorded under.
    pub fn id(&self) -> &str {
        &self.rec.id
    }

    /// Whether `rec` is on it as its first network.
    pub fn is_first_of(&self, rec: &Record) -> bool {
        rec.net.is_some() && rec.network == self.mode
    }

    /// Whether `rec` is on it, first or connected later.
    pub fn has(&self, rec: &Record) -> bool {
        self.is_first_of(rec) || rec.connected.iter().any(|a| a.network == self.id())
    }
}

/// Whether `rec` was on a bridge network and has left its first one (its
/// next connection becomes its first).
pub(super) fn first_is_empty(rec: &Record) -> bool {
    matches!(rec.network, Mode::Bridge | Mode::Network(_)) && rec.net.is_none()
}

impl Manager {
    /// The network `key` names: "bridge" is the default bridge; "host",
    /// "none" and "default" are NETWORK_PREDEFINED; a CNI network is not
    /// supported.
    pub(super) fn target(&self, key: &str) -> Result<Target> {
        if key == DEFAULT_BRIDGE {
            let bridge = self.networks.default_bridge().clone();
            let cfg = bridge.config();
            let rec = NetworkRecord {
                id: DEFAULT_BRIDGE.to_string(),
                name: DEFAULT_BRIDGE.to_string(),
                subnet: cfg.subnet.to_string(),
                gateway: cfg.gateway,
                internal: false,
                subnet6: None,
                gateway6: None,
                labels: Default::default(),
                created_at: 0,
                cni: None,
            };
            return Ok(Target {
                rec,
                bridge,
                mode: Mode::Bridge,
            });
        }
        let net = self.networks.get(key)?;
        let bridge = net.bridge.clone().ok_or(NetworkError::Unsupported(
            "connecting a container to, or disconnecting it from, a CNI network after Create",
        ))?;
        Ok(Target {
            rec: net.rec.clone(),
            bridge,
            mode: Mode::Network(net.rec.id.clone()),
        })
    }

    /// The bridge of a connection's network (`network` an id, or
    /// [`DEFAULT_BRIDGE`]), if it still exists.
    pub(super) fn attached_bridge(&self, network: &str) -> Option<Arc<Bridge>> {
        if network == DEFAULT_BRIDGE {
            return Some(self.networks.default_bridge().clone());
        }
        self.networks.bridge(network)
    }

    /// Connects `entry`, which has no first network, to `target` as its
    /// first: a running container gets `eth0` with the default route, and
    /// its published ports on the new address, before the record says so;
    /// any failure leaves neither.
    pub(super) async fn join_first(
        &self,
        entry: &Entry,
        target: &Target,
        aliases: Vec<String>,
        wanted: Option<std::net::Ipv4Addr>,
    ) -> Result<Record> {
        if !aliases.is_empty() && target.mode == Mode::Bridge {
            return Err(ContainerError::invalid(
                "aliases",
                "network aliases need a user-defined network, not \"bridge\"",
            ));
        }
        // Serialized with the exit's teardown: an exit either comes after
        // the commit below (and unpublishes the ports it records) or before
        // this looks (and nothing is attached or published).
        let _teardown = entry.teardown.lock().await;
        let rec = &entry.snapshot();
        let mut settings = attach::address(&target.bridge, wanted)?;
        let ns = self.live_namespace(entry, rec);
        let live = ns.is_some();
        if let Some(ns) = &ns {
            if let Err(e) = target.bridge.attach(&rec.id, &settings, ns).await {
                target.bridge.unclaim(&settings);
                return Err(e.into());
            }
            match target
                .bridge
                .publish(&rec.id, settings.ip, &rec.spec.ports)
                .await
            {
                Ok(bound) => settings.ports = bound,
                Err(e) => {
                    target.bridge.release(&rec.id, &settings).await;
                    return Err(e.into());
                }
            }
        }
        let saved = self.commit(
            entry,
            Op::Update,
            |r| {
                r.network = target.mode.clone();
                r.net = Some(settings.clone());
                r.spec.network_aliases = aliases;
            },
            Announce::Nothing,
        );
        let saved = match saved {
            Ok(r) => r,
            Err(e) => {
                if live {
                    unpublish(&target.bridge, &rec.id).await;
                }
                target.bridge.release(&rec.id, &settings).await;
                return Err(e);
            }
        };
        self.networks
            .announce_connection(&target.rec, &rec.id, Action::Connected);
        self.refresh_hosts(&target.mode);
        self.refresh_hosts_of(entry);
        Ok(saved)
    }

    /// Disconnects `rec` from its first network `target` with `settings`:
    /// a running container's `eth0` goes first (so no traffic passes once
    /// this returns), then the record, its published ports and address.
    pub(super) async fn leave_first(
        &self,
        entry: &Entry,
        rec: &Record,
        target: &Target,
        settings: &Settings,
        force: bool,
    ) -> Result<Record> {
        let live = rec.state.is_live();
        if live {
            if let Err(e) = target
                .bridge
                .unlink(&crate::network::link::veth_name(&rec.id))
                .await
            {
                if !force {
                    return Err(e.into());
                }
                tracing::warn!(id = %rec.id, "disconnecting (forced): {e}");
            }
        }
        let saved = self.commit(
            entry,
            Op::Update,
            |r| {
                r.net = None;
                // They named it on that network only.
                r.spec.network_aliases.clear();
            },
            Announce::Nothing,
        )?;
        if live {
            unpublish(&target.bridge, &rec.id).await;
        }
        target.bridge.release(&rec.id, settings).await;
        self.networks
            .announce_connection(&target.rec, &rec.id, Action::Disconnected);
        self.refresh_hosts(&target.mode);
        self.refresh_hosts_of(entry);
        Ok(saved)
    }
}

/// Container `id`'s published ports on `bridge` taken down (nft runs in
/// place, off the async threads).
async fn unpublish(bridge: &Arc<Bridge>, id: &str) {
    let (bridge, id) = (bridge.clone(), id.to_string());
    let _ = tokio::task::spawn_blocking(move || bridge.unpublish(&id)).await;
}
