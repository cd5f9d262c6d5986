//! The IPv6 side of a new dual-stack user-defined network: its prefix
//! (asked for, or the next free /64 of [`POOL6`]) and gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ipam6::{Net6, Subnet6};
use super::user::{invalid, CreateRequest, UserNetwork, POOL6};
use super::NetworkError;
use crate::error::capped;

/// The IPv6 prefix and gateway of a new dual-stack network: the one
/// asked for (refused when it overlaps another network's), else the
/// first free /64 of [`POOL6`].
pub(super) fn net6(
    nets: &BTreeMap<String, Arc<UserNetwork>>,
    req: &CreateRequest,
) -> Result<Net6, NetworkError> {
    let taken: Vec<(Subnet6, &str)> = nets
        .values()
        .filter_map(|n| {
            let s = Subnet6::parse(n.rec.subnet6.as_deref()?).ok()?;
            Some((s, n.rec.name.as_str()))
        })
        .collect();
    let subnet = if req.subnet6.is_empty() {
        pick6(&taken)?
    } else {
        let s = Subnet6::parse(&req.subnet6).map_err(|e| invalid("ipv6_subnet", e))?;
        if let Some((other, whose)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
            return Err(NetworkError::Overlap {
                subnet: s.to_string(),
                other: format!("{other} of network {whose}"),
            });
        }
        s
    };
    let gateway = if req.gateway6.is_empty() {
        subnet.gateway()
    } else {
        let g: std::net::Ipv6Addr = req.gateway6.parse().map_err(|_| {
            invalid(
                "ipv6_gateway",
                format!(
                    "IPv6 gateway {:?} is not an IPv6 address",
                    capped(&req.gateway6)
                ),
            )
        })?;
        if !subnet.is_host(g) {
            return Err(invalid(
                "ipv6_gateway",
                format!("IPv6 gateway {g} is not a host address of {subnet}"),
            ));
        }
        g
    };
    Ok(Net6 { subnet, gateway })
}

/// The first /64 of [`POOL6`] that overlaps nothing taken (as many
/// probes as there are dual-stack networks, at most).
fn pick6(taken: &[(Subnet6, &str)]) -> Result<Subnet6, NetworkError> {
    let pool = POOL6
        .split_once('/')
        .and_then(|(a, _)| a.parse::<std::net::Ipv6Addr>().ok())
        .map(u128::from)
        .ok_or_else(|| NetworkError::Invalid(format!("bad IPv6 pool {POOL6}")))?;
    (0..=taken.len() as u128)
        .map(|i| Subnet6 {
            addr: std::net::Ipv6Addr::from(pool + (i << 64)),
            prefix: 64,
        })
        .find(|s| !taken.iter().any(|(t, _)| t.overlaps(s)))
        .ok_or(NetworkError::PoolExhausted)
}
