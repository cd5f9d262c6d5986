//! What berthd reads from a CNI ADD result: the container's addresses
//! (for inspect and its /etc/hosts) and DNS servers (for its
//! /etc/resolv.conf). The result itself is kept whole, as the plugins gave
//! it, for the `prevResult` of CHECK and DEL.

use std::net::IpAddr;

use serde_json::Value;

use super::CniError;

/// Most addresses or DNS servers read from one result.
pub const MAX_ENTRIES: usize = 16;

/// One address of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// The parts of a result berthd uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Addresses, in the result's order.
    pub ips: Vec<Address>,
    /// DNS servers (unparseable ones skipped).
    pub nameservers: Vec<IpAddr>,
}

impl Summary {
    /// The first IPv4 address, if any.
    pub fn ipv4(&self) -> Option<Address> {
        self.ips.iter().copied().find(|a| a.ip.is_ipv4())
    }

    /// Its first IPv6 address, if the plugins gave one.
    pub fn ipv6(&self) -> Option<Address> {
        self.ips.iter().copied().find(|a| a.ip.is_ipv6())
    }
}

/// Reads a result (CNI 0.3.0 and later: `ips[].address` as "ip/prefix",
/// `dns.nameservers`).
pub fn summarize(result: &Value) -> Result<Summary, CniError> {
    let bad = |m: String| CniError::BadResult(m);
    if !result.is_object() {
        return Err(bad("the result is not a JSON object".into()));
    }
    let mut s = Summary::default();
    if let Some(ips) = result.get("ips") {
        let Value::Array(ips) = ips else {
            return Err(bad("\"ips\" is not a list".into()));
        };
        for entry in ips.iter().take(MAX_ENTRIES) {
            let Some(addr) = entry.get("address").and_then(Value::as_str) else {
                return Err(bad("an \"ips\" entry has no \"address\" string".into()));
            };
            s.ips.push(parse_cidr(addr).ok_or_else(|| {
                bad(format!(
                    "address {:?} is not ip/prefix",
                    crate::error::capped(addr)
                ))
            })?);
        }
    }
    if let Some(ns) = result
        .get("dns")
        .and_then(|d| d.get("nameservers"))
        .and_then(Value::as_array)
    {
        s.nameservers = ns
            .iter()
            .take(MAX_ENTRIES)
            .filter_map(|n| n.as_str()?.parse().ok())
            .collect();
    }
    Ok(s)
}

/// `result` with every container-side interface's `sandbox` set to
/// `netns` (the same namespace, named by another path).
pub fn with_sandbox(result: &Value, netns: &str) -> Value {
    let mut r = result.clone();
    if let Some(Value::Array(ifaces)) = r.get_mut("interfaces") {
        for i in ifaces.iter_mut() {
            if let Some(s) = i.get_mut("sandbox") {
                if s.as_str().is_some_and(|s| !s.is_empty()) {
                    *s = Value::String(netns.to_string());
                }
            }
        }
    }
    r
}

fn parse_cidr(s: &str) -> Option<Address> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Address { ip, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_and_dns_are_read_from_a_bridge_result() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [
                {"address": "fd00::5/64", "interface": 1},
                {"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 1}
            ],
            "dns": {"nameservers": ["10.22.0.1", "not-an-ip"]}
        });
        let s = summarize(&r).unwrap();
        assert_eq!(s.ips.len(), 2);
        let v4 = s.ipv4().unwrap();
        assert_eq!(v4.ip.to_string(), "10.22.0.5");
        assert_eq!(v4.prefix, 24);
        assert_eq!(s.nameservers, vec!["10.22.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn only_container_side_sandboxes_are_renamed() {
        let r =
            json!({"interfaces": [{"name": "br"}, {"name": "eth0", "sandbox": "/proc/1/fd/9"}]});
        let r = with_sandbox(&r, "/proc/7/ns/net");
        assert!(r["interfaces"][0].get("sandbox").is_none());
        assert_eq!(r["interfaces"][1]["sandbox"], "/proc/7/ns/net");
    }

    #[test]
    fn an_empty_result_has_no_address_and_bad_ones_are_refused() {
        assert_eq!(summarize(&json!({})).unwrap(), Summary::default());
        assert!(summarize(&json!([])).is_err());
        assert!(summarize(&json!({"ips": {}})).is_err());
        assert!(summarize(&json!({"ips": [{"address": "10.0.0.1"}]})).is_err());
        assert!(summarize(&json!({"ips": [{"address": "10.0.0.1/33"}]})).is_err());
    }
}
