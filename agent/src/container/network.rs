//! A container's network at Create (the mode, resolved) and at Start (the
//! namespace its init enters).

use super::error::{ContainerError, Result};
use super::record::{Record, SpecRecord};
use super::Manager;
use crate::network::{self, Mode, Netns, NetworkError, Requested};

impl Manager {
    /// Resolves the spec's network (`container:<x>` to `x`'s id) and the
    /// hostname it implies when the spec gives none: the host's for `host`,
    /// the other container's for `container:<x>` (which, as with Docker,
    /// cannot be combined with a hostname of its own).
    pub(super) fn resolve_network(&self, spec: &SpecRecord) -> Result<(Mode, Option<String>)> {
        match Requested::parse(&spec.network)? {
            Requested::None => Ok((Mode::None, None)),
            Requested::Host => {
                let host = nix::unistd::gethostname()
                    .map_err(|e| ContainerError::io("reading the host's hostname", e.into()))?;
                Ok((Mode::Host, Some(host.to_string_lossy().into_owned())))
            }
            Requested::Container(key) => {
                if !spec.hostname.is_empty() {
                    return Err(ContainerError::invalid(
                        "hostname",
                        "a container in another container's network has that container's \
                         hostname: give no hostname with network container:<x>",
                    ));
                }
                let peer = self.get(&key)?.snapshot();
                Ok((Mode::Container(peer.id), Some(peer.hostname)))
            }
        }
    }

    /// The namespace `rec`'s init enters on this start. `container:<x>`
    /// needs `x` running now: its namespace is opened here, and held until
    /// the init has entered it.
    pub(super) fn network_namespace(&self, rec: &Record) -> Result<Netns> {
        let peer_id = match &rec.network {
            // A spare belongs to the host's user namespace: a container in
            // one of its own creates its network namespace itself.
            Mode::None if rec.userns.is_some() => return Ok(Netns::Own(None)),
            Mode::None => return Ok(Netns::Own(self.netns.take())),
            Mode::Host => return Ok(Netns::Host),
            Mode::Container(id) => id,
        };
        let peer = self.get(peer_id).map_err(|e| match e {
            ContainerError::NotFound { .. } => NetworkError::PeerNotRunning {
                name: format!("{} (removed)", &peer_id[..12.min(peer_id.len())]),
            }
            .into(),
            other => other,
        })?;
        let snap = peer.snapshot();
        let process = peer
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let not_running = || NetworkError::PeerNotRunning {
            name: snap.name.clone(),
        };
        let (true, Some(process)) = (snap.state.is_live() && snap.pid > 0, process) else {
            return Err(not_running().into());
        };
        let ns = network::namespace::open_of(snap.pid).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => not_running(),
            _ => NetworkError::Join {
                name: snap.name.clone(),
                source,
            },
        })?;
        // The pidfd names that very process: if it still takes signals, the
        // pid was not reused between the snapshot and the open.
        process.signal(0).map_err(|_| not_running())?;
        Ok(Netns::Joined(ns))
    }
}
