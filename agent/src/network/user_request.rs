//! What a client may ask Networks.Create for: the request, its limits
//! and the checks made on it alone, before any network is looked at.

use std::collections::BTreeMap;

use super::NetworkError;
use crate::error::capped;

/// Longest network name.
pub const MAX_NAME: usize = 64;
/// Most labels of a network.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY: usize = 256;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 4096;
/// Longest subnet or gateway string.
pub const MAX_ADDR: usize = 64;
/// Names that are network modes, not networks.
pub const RESERVED: [&str; 4] = ["bridge", "default", "host", "none"];

/// What a client asks Create for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Name.
    pub name: String,
    /// Subnet, or "" for one from [`super::user::POOL`].
    pub subnet: String,
    /// Gateway, or "" for the subnet's first address.
    pub gateway: String,
    /// Internal.
    pub internal: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Driver: "", "bridge" or "cni".
    pub driver: String,
    /// The CNI conflist of a `cni` network (JSON, at most
    /// [`super::cni::conflist::MAX_BYTES`]).
    pub cni_conflist: Vec<u8>,
    /// IPv6 too (a dual-stack network).
    pub ipv6: bool,
    /// IPv6 prefix, or "" for a /64 from [`super::user::POOL6`] (with `ipv6`).
    pub subnet6: String,
    /// IPv6 gateway, or "" for the prefix's `::1` (needs `subnet6`).
    pub gateway6: String,
}

pub(in crate::network) fn invalid(field: &'static str, msg: String) -> NetworkError {
    NetworkError::InvalidField { field, msg }
}

/// Docker's rule for names, bounded, and not a mode or an id.
pub fn check_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(invalid(
            "name",
            format!(
                "network name {:?}: 1 to {MAX_NAME} characters, [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                capped(name)
            ),
        ));
    }
    if RESERVED.contains(&name) {
        return Err(invalid(
            "name",
            format!("network name {name:?} is reserved"),
        ));
    }
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "name",
            "a network name must not look like a network id".into(),
        ));
    }
    Ok(())
}

/// Checks `req` on its own (no other network looked at).
pub(super) fn check(req: &CreateRequest) -> Result<(), NetworkError> {
    check_name(&req.name)?;
    if !matches!(req.driver.as_str(), "" | "bridge" | "cni") {
        return Err(invalid(
            "driver",
            format!(
                "network driver {:?}: \"bridge\" or \"cni\"",
                capped(&req.driver)
            ),
        ));
    }
    for (field, v) in [
        ("subnet", &req.subnet),
        ("gateway", &req.gateway),
        ("ipv6_subnet", &req.subnet6),
        ("ipv6_gateway", &req.gateway6),
    ] {
        if v.len() > MAX_ADDR {
            return Err(invalid(
                field,
                format!("{field} {:?} is longer than {MAX_ADDR} bytes", capped(v)),
            ));
        }
    }
    for (field, v) in [("subnet", &req.subnet), ("gateway", &req.gateway)] {
        if v.contains(':') {
            return Err(invalid(
                field,
                format!(
                    "{field} {:?} is IPv6: give it as the IPv6 subnet or gateway, \
                     with IPv6 enabled",
                    capped(v)
                ),
            ));
        }
    }
    if !req.gateway.is_empty() && req.subnet.is_empty() {
        return Err(invalid(
            "gateway",
            "a gateway needs a subnet to be in".into(),
        ));
    }
    let asks_v6 = !req.subnet6.is_empty() || !req.gateway6.is_empty();
    if asks_v6 && !req.ipv6 {
        return Err(invalid(
            "ipv6_subnet",
            "an IPv6 subnet or gateway needs IPv6 enabled (--ipv6)".into(),
        ));
    }
    if !req.gateway6.is_empty() && req.subnet6.is_empty() {
        return Err(invalid(
            "ipv6_gateway",
            "an IPv6 gateway needs an IPv6 subnet to be in".into(),
        ));
    }
    if req.labels.len() > MAX_LABELS {
        return Err(invalid(
            "labels",
            format!("{} labels; at most {MAX_LABELS}", req.labels.len()),
        ));
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY || v.len() > MAX_LABEL_VALUE {
            return Err(invalid(
                "labels",
                format!(
                    "label {:?}: keys 1 to {MAX_LABEL_KEY} bytes, values at most \
                     {MAX_LABEL_VALUE}",
                    capped(k)
                ),
            ));
        }
    }
    Ok(())
}
