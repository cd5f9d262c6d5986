//! The IPv6 side of a dual-stack network's links: the bridge's address
//! and sysctls, and a container interface's address and default route.
//!
//! Addresses are added with `nodad`: berth hands out each address once
//! per prefix, so Duplicate Address Detection would only hold an address
//! "tentative" (unusable as a source) for a second or more after every
//! start.

use std::net::{IpAddr, Ipv6Addr};

use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::bridge::netlink;
use super::ipam6::{Address6, Net6};
use super::{link, NetworkError};

/// Adds `ip/prefix` to link `index` without DAD; one already there is fine.
async fn add_nodad(h: &Handle, index: u32, ip: Ipv6Addr, prefix: u8) -> Result<(), link::Error> {
    let mut req = h.address().add(index, IpAddr::V6(ip), prefix);
    let msg = req.message_mut();
    msg.header.flags = AddressHeaderFlags::Nodad;
    msg.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `value` to sysctl file `path`.
fn sysctl(path: &str, value: &str, what: &str) -> Result<(), NetworkError> {
    std::fs::write(path, value).map_err(|e| NetworkError::Host {
        what: format!("{what} ({path})"),
        source: e,
    })
}

/// The bridge `name` (index `index`) of a dual-stack network: IPv6 on,
/// IPv6 forwarding on (as Docker sets it for IPv6 networks), and the
/// gateway's address.
pub async fn bridge_up(h: &Handle, name: &str, index: u32, v6: &Net6) -> Result<(), NetworkError> {
    sysctl(
        &format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"),
        "0",
        "enabling IPv6 on the bridge",
    )?;
    // Routers send no router solicitations and take no router
    // advertisements on the bridge.
    sysctl(
        &format!("/proc/sys/net/ipv6/conf/{name}/accept_ra"),
        "0",
        "turning off router advertisements on the bridge",
    )?;
    sysctl(
        "/proc/sys/net/ipv6/conf/all/forwarding",
        "1",
        "enabling IPv6 forwarding",
    )?;
    add_nodad(h, index, v6.gateway, v6.subnet.prefix)
        .await
        .map_err(netlink)
}

/// Inside the container's namespace: link `ifname` gets `a` (and, with
/// `default_route`, the IPv6 default route through the gateway).
pub async fn configure(
    h: &Handle,
    ifname: &str,
    a: &Address6,
    default_route: bool,
) -> Result<(), link::Error> {
    let index = link::index_of(h, ifname)
        .await?
        .ok_or_else(|| link::Error::Missing(format!("{ifname} in the container's namespace")))?;
    add_nodad(h, index, a.ip, a.prefix).await?;
    if default_route {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(a.gateway)
                    .output_interface(index)
                    .build(),
            )
            .execute()
            .await?;
    }
    Ok(())
}
