//! A container's network at Create (the mode, resolved) and at Start (the
//! namespace its init enters).

use super::error::{ContainerError, Result};
use super::record::{Record, SpecRecord};
use super::Manager;
use crate::network::ports::{self, PortMapping};
use crate::network::{self, Mode, Netns, NetworkError, Requested};
use std::sync::Arc;

/// Most `dns` servers.
const MAX_DNS: usize = 8;
/// Most `extra_hosts` entries.
const MAX_EXTRA_HOSTS: usize = 64;
/// Most `network_aliases`.
const MAX_ALIASES: usize = 16;

impl Manager {
    /// Resolves the spec's network (`container:<x>` to `x`'s id) and the
    /// hostname it implies when the spec gives none: the host's for `host`,
    /// the other container's for `container:<x>` (which, as with Docker,
    /// cannot be combined with a hostname of its own).
    pub(super) fn resolve_network(&self, spec: &SpecRecord) -> Result<(Mode, Option<String>)> {
        if let Some(pod) = &spec.pod {
            // The CRI front end builds these specs: the pod decides.
            let mode = if pod.host_network {
                Mode::Host
            } else {
                Mode::Pod(pod.id.clone())
            };
            return Ok((mode, Some(pod.hostname.clone())));
        }
        let requested =
            Requested::parse_or(&spec.network, self.default_network, !spec.userns.is_empty())?;
        check_names(spec, &requested)?;
        match requested {
            Requested::None => Ok((Mode::None, None)),
            Requested::Bridge => Ok((Mode::Bridge, None)),
            Requested::Network(key) => {
                Ok((Mode::Network(self.networks.get(&key)?.rec.id.clone()), None))
            }
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
            // The bridge needs the namespace now, to put the veth in it.
            Mode::Bridge | Mode::Network(_) => {
                let spare = match self.netns.take() {
                    Some(s) => s,
                    None => crate::netns_pool::create_now()
                        .map_err(|e| ContainerError::io("creating a network namespace", e))?,
                };
                return Ok(Netns::Own(Some(spare)));
            }
            Mode::Host => return Ok(Netns::Host),
            Mode::Pod(_) => return pod_namespace(rec),
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

/// The network namespace pinned for `rec`'s pod, opened now (and held by
/// the caller until the init has entered it).
fn pod_namespace(rec: &Record) -> Result<Netns> {
    let Some(pod) = &rec.spec.pod else {
        return Err(ContainerError::invalid(
            "network",
            "a pod network without a pod",
        ));
    };
    let path = pod.ns_dir.join("net");
    if !crate::sys::pin::is_pinned(&path) {
        return Err(ContainerError::PodGone {
            pod: pod.id.clone(),
        });
    }
    let ns = std::fs::File::open(&path)
        .map_err(|e| ContainerError::io("opening the pod's network namespace", e))?;
    Ok(Netns::Joined(ns.into()))
}

/// Published ports, DNS servers and extra hosts, checked against the mode.
fn check_names(spec: &SpecRecord, mode: &Requested) -> Result<()> {
    let bridged = matches!(mode, Requested::Bridge | Requested::Network(_));
    if !spec.ports.is_empty() && !bridged {
        return Err(NetworkError::InvalidPorts(
            "published ports need network \"bridge\" or a user-defined network".into(),
        )
        .into());
    }
    if !spec.network_aliases.is_empty() && !matches!(mode, Requested::Network(_)) {
        return Err(ContainerError::invalid(
            "network_aliases",
            "network aliases need a user-defined network",
        ));
    }
    if spec.network_aliases.len() > MAX_ALIASES {
        return Err(ContainerError::invalid(
            "network_aliases",
            format!(
                "{} network aliases; at most {MAX_ALIASES}",
                spec.network_aliases.len()
            ),
        ));
    }
    for a in &spec.network_aliases {
        if !is_hostname(a) {
            return Err(ContainerError::invalid(
                "network_aliases",
                format!(
                    "network alias {:?}: 1 to 253 of [a-zA-Z0-9_.-]",
                    crate::error::capped(a)
                ),
            ));
        }
    }
    ports::check_requests(&spec.ports)?;
    if spec.dns.len() > MAX_DNS {
        return Err(ContainerError::invalid(
            "dns",
            format!("{} DNS servers; at most {MAX_DNS}", spec.dns.len()),
        ));
    }
    if !spec.dns.is_empty() && *mode == Requested::Host {
        return Err(ContainerError::invalid(
            "dns",
            "a container in the host's network uses the host's resolv.conf: give no dns",
        ));
    }
    for d in &spec.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(ContainerError::invalid(
                "dns",
                format!(
                    "DNS server {:?} is not an IP address",
                    crate::error::capped(d)
                ),
            ));
        }
    }
    if spec.extra_hosts.len() > MAX_EXTRA_HOSTS {
        return Err(ContainerError::invalid(
            "extra_hosts",
            format!(
                "{} extra hosts; at most {MAX_EXTRA_HOSTS}",
                spec.extra_hosts.len()
            ),
        ));
    }
    for h in &spec.extra_hosts {
        extra_host(h)?;
    }
    Ok(())
}

/// `name:address` as an /etc/hosts line.
pub(super) fn extra_host(entry: &str) -> Result<String> {
    let bad = || {
        ContainerError::invalid(
            "extra_hosts",
            format!(
                "extra host {:?} is not name:address (a hostname and an IP address)",
                crate::error::capped(entry)
            ),
        )
    };
    let (name, addr) = entry.split_once(':').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    if !is_hostname(name) {
        return Err(bad());
    }
    Ok(format!("{addr}\t{name}"))
}

/// A name /etc/hosts can hold.
pub(super) fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl Manager {
    /// At berthd's start: what the kernel holds for the bridge made to
    /// agree with the loaded records (stale veths and port forwards of
    /// containers gone while berthd was away removed). A failure is logged:
    /// the containers run whatever it says.
    pub async fn reconcile_network(&self) {
        let live: Vec<_> = self
            .list()
            .into_iter()
            .filter(|r| r.state.is_live())
            .filter_map(|r| r.net.map(|n| (r.id, n)))
            .collect();
        if let Err(e) = self.networks.default_bridge().reconcile(&live, true).await {
            tracing::warn!("reconciling the bridge network: {e}");
        }
        for net in self.networks.list() {
            let Some(bridge) = &net.bridge else {
                continue;
            };
            if let Err(e) = bridge.reconcile(&live, true).await {
                tracing::warn!(network = %net.rec.name, "reconciling the network: {e}");
            }
        }
        self.networks.remove_unknown().await;
        self.reconcile_cni().await;
    }

    /// For a bridge container: its veth and address in `netns`, and its
    /// ports published. The guard takes the ports down again unless the
    /// start succeeds and disarms it.
    pub(super) async fn connect_bridge(
        &self,
        rec: &Record,
        netns: &Netns,
    ) -> Result<Option<(Vec<PortMapping>, Unpublish)>> {
        let Netns::Own(Some(spare)) = netns else {
            return Ok(None);
        };
        let Some(net) = &rec.net else {
            // It left its first network: only those connected later.
            self.attach_connected(rec, spare.fd()).await?;
            return Ok(None);
        };
        let Some(bridge) = self.bridge_of(&rec.network) else {
            return Err(NetworkError::NotFound {
                key: rec.network.to_string(),
            }
            .into());
        };
        bridge.attach(&rec.id, net, spare.fd()).await?;
        self.attach_connected(rec, spare.fd()).await?;
        let bound = bridge.publish(&rec.id, net.ip, &rec.spec.ports).await?;
        let guard = Unpublish {
            bridge,
            id: Some(rec.id.clone()),
        };
        Ok(Some((bound, guard)))
    }
}

/// Takes a failed start's published ports down when dropped.
pub(super) struct Unpublish {
    bridge: std::sync::Arc<network::bridge::Bridge>,
    id: Option<String>,
}

impl Unpublish {
    /// The start succeeded: the ports stay until the container exits.
    pub(super) fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.bridge.unpublish(&id);
        }
    }
}

impl Manager {
    /// The network counters of a running container's namespace; None for
    /// one in the host's network (those are the host's counters, which
    /// Docker does not show as a container's either) or not running.
    pub fn network_counters(
        &self,
        entry: &super::entry::Entry,
    ) -> Option<Vec<network::counters::InterfaceCounters>> {
        let current = || {
            entry
                .process
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        // The process first, then the pid: both of one run, checked again
        // after the read (a restart between would pair them wrongly).
        let process = current()?;
        let (pid, host) = {
            let r = entry.lock_record();
            (r.pid, r.network.is_host())
        };
        if host || pid <= 0 {
            return None;
        }
        let counters = network::counters::of_process(pid)?;
        // The pidfd names the container's init: if it still takes
        // signals, the pid was not reused by another process meanwhile.
        process.signal(0).ok()?;
        let same_run =
            current().is_some_and(|p| Arc::ptr_eq(&p, &process)) && entry.lock_record().pid == pid;
        same_run.then_some(counters)
    }
}
