//! Containers on `cni` networks: Create checks what such a network can
//! give, each start runs the list's ADD in the container's fresh
//! namespace, its exit and its Remove run DEL, and berthd's start runs
//! CHECK for running containers and DEL for those gone while it was away.

use std::sync::Arc;

use super::entry::Entry;
use super::error::{ContainerError, Result};
use super::record::{Record, SpecRecord};
use super::Manager;
use crate::network::cni::{self, conflist, result::Summary, Attachment, RuntimeConfig};
use crate::network::{Mode, Netns, NetworkError};

/// What a start on a `cni` network got: the addresses and DNS servers for
/// the init's files, and the attachment, DEL'd again unless the start
/// succeeds.
pub(super) struct CniStart {
    pub(super) summary: Summary,
    undo: Option<Undo>,
}

struct Undo {
    mgr: Arc<Manager>,
    entry: Arc<Entry>,
    attachment: Attachment,
}

impl CniStart {
    /// The start succeeded: the attachment stays until the container exits.
    pub(super) fn disarm(mut self) {
        self.undo = None;
    }

    /// `rec` as the init's files see it: the plugins' address under its
    /// hostname and name in /etc/hosts, their DNS servers in resolv.conf
    /// unless the spec names some.
    pub(super) fn for_launch(&self, rec: &Record) -> Record {
        let mut r = rec.clone();
        if let Some(a) = self.summary.ipv4().or(self.summary.ips.first().copied()) {
            r.spec
                .extra_hosts
                .push(format!("{}:{}", rec.hostname, a.ip));
            if rec.name != rec.hostname {
                r.spec.extra_hosts.push(format!("{}:{}", rec.name, a.ip));
            }
        }
        if r.spec.dns.is_empty() {
            r.spec.dns = cni::nameservers(&self.summary);
        }
        r
    }
}

impl Drop for CniStart {
    fn drop(&mut self) {
        let Some(u) = self.undo.take() else {
            return;
        };
        // After the failed start lets go of the container's ops lock, and
        // before any later start takes it: DEL'd only if it is still the
        // attachment this start made.
        tokio::spawn(async move {
            let _ops = u.entry.ops.lock().await;
            let stored = u.mgr.networks.cni().store.load(&u.attachment.container);
            if matches!(stored, Ok(Some(ref a)) if *a == u.attachment) {
                u.mgr.cni_detach(&u.attachment).await;
            }
        });
    }
}

impl Manager {
    /// The `cni` network list of mode `mode`, if it is one.
    fn cni_list_of(&self, mode: &Mode) -> Option<(String, cni::Conflist)> {
        let Mode::Network(id) = mode else {
            return None;
        };
        Some((id.clone(), self.networks.cni_list(id)?))
    }

    /// At Create: published ports need a plugin with the `portMappings`
    /// capability, and a host port each (the plugins pick none); network
    /// aliases are berth's bridge networks' only.
    pub(super) fn check_cni_create(&self, mode: &Mode, spec: &SpecRecord) -> Result<()> {
        let Some((_, list)) = self.cni_list_of(mode) else {
            return Ok(());
        };
        if !spec.network_aliases.is_empty() {
            return Err(ContainerError::invalid(
                "network_aliases",
                "network aliases need a bridge network, not a CNI one",
            ));
        }
        if (!spec.ports.is_empty() || spec.publish_all) && !list.supports_ports() {
            return Err(NetworkError::InvalidPorts(format!(
                "published ports on a CNI network need a plugin with the \"{}\" capability \
                 (e.g. portmap) in its conflist",
                conflist::PORT_MAPPINGS
            ))
            .into());
        }
        if spec.publish_all || spec.ports.iter().any(|p| p.host_port == 0) {
            return Err(NetworkError::InvalidPorts(
                "published ports on a CNI network need a host port each (-p HOST:CONTAINER)".into(),
            )
            .into());
        }
        Ok(())
    }

    /// For a container on a `cni` network: ADD in its namespace, the
    /// result stored. None for any other network.
    pub(super) async fn connect_cni(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        rec: &Record,
        netns: &Netns,
    ) -> Result<Option<CniStart>> {
        let Mode::Network(id) = &rec.network else {
            return Ok(None);
        };
        if self.networks.cni_list(id).is_none() {
            return Ok(None);
        }
        let Some(path) = netns.path() else {
            return Err(NetworkError::Invalid(
                "a CNI network needs a network namespace of the container's own".into(),
            )
            .into());
        };
        let list = self.networks.cni_claim(id, &rec.id)?;
        let runtime = RuntimeConfig {
            port_mappings: rec
                .spec
                .ports
                .iter()
                .map(|p| conflist::PortMapping {
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.proto.as_str().into(),
                    host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                })
                .collect(),
        };
        let attached = self
            .networks
            .cni()
            .attach(id, &list, &rec.id, &path, runtime)
            .await;
        let (attachment, summary) = match attached {
            Ok(a) => a,
            Err(e) => {
                self.networks.cni_unclaim(&rec.id);
                return Err(NetworkError::from(e).into());
            }
        };
        Ok(Some(CniStart {
            summary,
            undo: Some(Undo {
                mgr: self.clone(),
                entry: entry.clone(),
                attachment,
            }),
        }))
    }

    /// DEL for attachment `a`; a failure is logged (and the attachment
    /// kept, for the next berthd start to try again).
    async fn cni_detach(&self, a: &Attachment) {
        let Some(list) = self.networks.cni_list(&a.network) else {
            tracing::warn!(id = %a.container, "CNI network {} is gone: forgetting its attachment", a.network);
            let _ = self.networks.cni().store.remove(&a.container);
            self.networks.cni_unclaim(&a.container);
            return;
        };
        match self.networks.cni().detach(&list, a).await {
            Ok(()) => self.networks.cni_unclaim(&a.container),
            Err(e) => tracing::warn!(id = %a.container, "CNI DEL: {e}"),
        }
    }

    /// After container `id` exited or was removed: DEL for its attachment,
    /// if it has one.
    pub(super) async fn disconnect_cni(&self, id: &str) {
        match self.networks.cni().store.load(id) {
            Ok(Some(a)) => self.cni_detach(&a).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(%id, "{e}"),
        }
    }

    /// At berthd's start: CHECK for each attachment of a running container
    /// (a failure is logged: the container runs as it is), DEL for the
    /// others.
    pub(super) async fn reconcile_cni(&self) {
        let live: std::collections::BTreeMap<String, i32> = self
            .list()
            .into_iter()
            .filter(|r| r.state.is_live() && r.pid > 0)
            .map(|r| (r.id, r.pid))
            .collect();
        for a in self.networks.cni().store.all() {
            let (Some(pid), Some(list)) =
                (live.get(&a.container), self.networks.cni_list(&a.network))
            else {
                tracing::info!(id = %a.container, "releasing the CNI attachment of a container that no longer runs");
                self.cni_detach(&a).await;
                continue;
            };
            if let Err(e) = self.networks.cni().check(&list, &a, *pid).await {
                tracing::warn!(id = %a.container, "CNI CHECK of a re-adopted container: {e}");
            }
        }
    }

    /// The address the plugins gave container `id` (for inspect).
    pub fn cni_summary(&self, id: &str) -> Option<Summary> {
        self.networks.cni().summary(id)
    }
}
