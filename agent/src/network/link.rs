//! Links, addresses and routes through rtnetlink: the bridge, each
//! container's veth pair, and the container side's address and route.
//!
//! Nothing here runs `ip`: a start makes a few netlink requests and no
//! process.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use futures_util::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::ipam::Subnet;

/// The name of the container's side of its veth pair.
pub const CONTAINER_IFNAME: &str = "eth0";
/// Host-side veth names start with this, then 12 hex digits of the id.
pub const VETH_PREFIX: &str = "bth";

/// What a netlink step failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request (or the socket failed).
    #[error("{0}")]
    Netlink(#[from] rtnetlink::Error),
    /// A link that was just made is not there.
    #[error("{0} is missing")]
    Missing(String),
}

/// Whether `e` is the kernel's error `errno`.
fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The host-side veth name of container `id`.
pub fn veth_name(id: &str) -> String {
    format!("{VETH_PREFIX}{}", &id[..12.min(id.len())])
}

/// A netlink connection in berthd's own network namespace.
pub fn connect() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink connection in the namespace `ns`. The socket is made on a
/// thread of its own that enters `ns` and then ends, so no thread of berthd
/// is left in a container's namespace.
pub async fn connect_in(ns: &OwnedFd) -> std::io::Result<Handle> {
    let ns = ns.try_clone()?;
    let rt = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-socket".into())
        .spawn(move || {
            let made = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    let _in_runtime = rt.enter();
                    TokioSocket::new(NETLINK_ROUTE)
                });
            let _ = tx.send(made);
        })?;
    let socket = rx
        .await
        .map_err(|_| std::io::Error::other("the netns socket thread died"))??;
    let (conn, handle, _) = rtnetlink::from_socket(socket);
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of link `name`, if it exists.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes bridge `name` with address `gateway` in `subnet`, up, unless it
/// is there; returns its index.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    subnet: &Subnet,
    gateway: Ipv4Addr,
) -> Result<u32, Error> {
    let index = match index_of(h, name).await? {
        Some(i) => i,
        None => {
            add_link(h, LinkBridge::new(name).build())
                .await
                .or_else(exists_ok)?;
            index_of(h, name)
                .await?
                .ok_or_else(|| Error::Missing(format!("bridge {name}")))?
        }
    };
    h.address()
        .add(index, IpAddr::V4(gateway), subnet.prefix)
        .execute()
        .await
        .or_else(exists_ok)?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    Ok(index)
}

fn exists_ok(e: rtnetlink::Error) -> Result<(), Error> {
    if is_errno(&e, libc::EEXIST) {
        Ok(())
    } else {
        Err(e.into())
    }
}

/// The IPv4 routes of the main table whose destination overlaps `subnet`,
/// on links other than `bridge` (index): "dst via link-index" for messages.
pub async fn overlapping_routes(
    h: &Handle,
    subnet: &Subnet,
    bridge: Option<u32>,
) -> Result<Vec<String>, Error> {
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut found = Vec::new();
    while let Some(r) = routes.try_next().await? {
        if r.header.table != 254 || r.header.destination_prefix_length == 0 {
            continue;
        }
        let mut dst = None;
        let mut oif = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let Some(dst) = dst else { continue };
        let theirs = Subnet {
            addr: dst,
            prefix: r.header.destination_prefix_length,
        };
        if oif.is_some() && oif == bridge {
            continue;
        }
        if theirs.overlaps(subnet) {
            found.push(format!("{dst}/{}", theirs.prefix));
        }
    }
    Ok(found)
}

/// Makes container `id`'s veth pair: the host side on the bridge, up; the
/// other side, `eth0`, made directly in namespace `ns` (so it is never
/// seen in the host's, and goes with the namespace).
pub async fn add_veth(h: &Handle, id: &str, bridge: u32, ns: &OwnedFd) -> Result<(), Error> {
    add_veth_named(h, &veth_name(id), CONTAINER_IFNAME, bridge, ns).await
}

/// Makes a veth pair: `host` on the bridge, up; `inside` made directly in
/// namespace `ns`.
pub async fn add_veth_named(
    h: &Handle,
    host: &str,
    inside: &str,
    bridge: u32,
    ns: &OwnedFd,
) -> Result<(), Error> {
    let peer = LinkUnspec::new_with_name(inside)
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let msg: LinkMessage = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(host.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .up()
        .build();
    Ok(add_link(h, msg).await?)
}

/// Adds a link, trying again while the kernel says its kind is not
/// supported: a link kind's module (veth, bridge) is loaded on first use,
/// and while one request loads it a concurrent one can get EOPNOTSUPP
/// (seen on a freshly booted VM, two containers' first veths at once).
async fn add_link(h: &Handle, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
    let mut attempt = 0u64;
    loop {
        match h.link().add(msg.clone()).execute().await {
            Err(e) if attempt < 10 && is_errno(&e, libc::EOPNOTSUPP) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Inside the container's namespace (`h` connected there): `eth0` gets
/// `ip`, comes up, and the default route goes through `gateway`.
pub async fn configure_inside(
    h: &Handle,
    ip: Ipv4Addr,
    subnet: &Subnet,
    gateway: Ipv4Addr,
) -> Result<(), Error> {
    configure_named(h, CONTAINER_IFNAME, ip, subnet, Some(gateway)).await
}

/// Inside the container's namespace: link `ifname` gets `ip` and comes
/// up; with `gateway`, the default route goes through it (a network
/// connected after the first gets none: the first keeps the default
/// route, as with Docker).
pub async fn configure_named(
    h: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    subnet: &Subnet,
    gateway: Option<Ipv4Addr>,
) -> Result<(), Error> {
    let index = index_of(h, ifname)
        .await?
        .ok_or_else(|| Error::Missing(format!("{ifname} in the container's namespace")))?;
    h.address()
        .add(index, IpAddr::V4(ip), subnet.prefix)
        .execute()
        .await?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    if let Some(gateway) = gateway {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build(),
            )
            .execute()
            .await?;
    }
    Ok(())
}

/// Deletes link `name` if it is there (a veth that a previous run of the
/// same container left while its namespace was still being torn down, or
/// one of a removed container). ENODEV is fine: it went meanwhile.
pub async fn delete_if_present(h: &Handle, name: &str) -> Result<(), Error> {
    let Some(index) = index_of(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The names of the links whose name starts with `prefix`.
pub async fn names_with_prefix(h: &Handle, prefix: &str) -> Result<Vec<String>, Error> {
    let mut links = h.link().get().execute();
    let mut found = Vec::new();
    while let Some(link) = links.try_next().await? {
        for a in &link.attributes {
            if let LinkAttribute::IfName(n) = a {
                if n.starts_with(prefix) {
                    found.push(n.clone());
                }
            }
        }
    }
    Ok(found)
}

/// Deletes host-side veths of berth whose container is not in `keep`
/// (ids); returns the names deleted.
pub async fn remove_stale_veths(
    h: &Handle,
    keep: &std::collections::HashSet<String>,
) -> Result<Vec<String>, Error> {
    let keep: std::collections::HashSet<String> = keep.iter().map(|id| veth_name(id)).collect();
    let mut links = h.link().get().execute();
    let mut stale = Vec::new();
    while let Some(link) = links.try_next().await? {
        let name = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if let Some(name) = name {
            if name.starts_with(VETH_PREFIX) && !keep.contains(&name) {
                stale.push((link.header.index, name));
            }
        }
    }
    let mut gone = Vec::new();
    for (index, name) in stale {
        match h.link().del(index).execute().await {
            Ok(()) => gone.push(name),
            // Gone meanwhile (its namespace went away).
            Err(e) if is_errno(&e, libc::ENODEV) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(gone)
}
