//! berth's nftables table (`table inet berth`): masquerading for the
//! bridge's subnet and DNAT for published ports.
//!
//! The rules are fixed at bridge setup; a published port is one element in
//! one of four maps (by protocol, and by whether it is bound to one host
//! address or all), so a start or an exit adds or deletes elements and
//! never looks for a rule handle. Scripts go to `nft -f -` in one
//! transaction each: all of a container's ports, or none.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::ipam::Subnet;
use super::ipam6::Subnet6;
use super::ports::PortMapping;

/// The default bridge's table: family and name.
pub const TABLE: &str = "inet berth";
/// User-defined networks' tables are this, `_`, then 12 hex digits of the
/// network's id.
pub const NETWORK_TABLE_PREFIX: &str = "inet berth_";
/// Link names of user-defined networks' bridges start with this.
pub const NETWORK_BRIDGE_PREFIX: &str = "br-";

/// What one bridge's table says beyond its published ports.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Family and name of the table.
    pub table: String,
    /// The bridge's link name.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// No masquerade, and nothing forwarded in or out of the bridge.
    pub internal: bool,
    /// For a user-defined network: the default bridge's name. Forwarding
    /// between this bridge and that one or another network's bridge is
    /// dropped, as Docker isolates its networks.
    pub isolate_from: Option<String>,
    /// A dual-stack network's IPv6 prefix: masqueraded like the IPv4
    /// subnet. (Isolation and internal drops match interfaces, in the
    /// `inet` family: they hold for IPv6 as they are.)
    pub subnet6: Option<Subnet6>,
}
/// Longest stderr of nft kept in an error.
const MAX_ERR: usize = 1024;

/// What running nft failed with.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The binary is missing or could not be run.
    #[error("cannot run nft (install nftables): {0}")]
    Spawn(#[source] std::io::Error),
    /// nft refused the script.
    #[error("nft failed: {0}")]
    Failed(String),
}

/// The nft binary: where Debian and most distributions put it, else PATH.
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Runs `script` through `nft -f -`.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new(nft_binary())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if err.len() > MAX_ERR {
        let mut end = MAX_ERR;
        while !err.is_char_boundary(end) {
            end -= 1;
        }
        err.truncate(end);
    }
    Err(NftError::Failed(err))
}

/// Whether `table` (family and name) exists.
pub fn table_exists(table: &str) -> bool {
    Command::new(nft_binary())
        .args(["list", "table"])
        .args(table.split(' '))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The whole table, replacing whatever the table held: the fixed rules
/// and the elements for `published` (container address, mapping).
pub fn table(rules: &Rules, published: &[(Ipv4Addr, PortMapping)]) -> String {
    let Rules {
        table,
        bridge,
        subnet,
        ..
    } = rules;
    // Rules only a network's containers' traffic can match: masquerade
    // out of the bridge, isolation in the forward hook. route_localnet
    // (set on the bridge so the host's 127.0.0.1:<port> can be DNATed onto
    // it) would also let a container send to the host's loopback services
    // (a frame to the gateway's MAC for 127.0.0.1: CVE-2020-8558's class),
    // so anything for 127.0.0.0/8 arriving on the bridge is dropped before
    // routing; replies to the host's own localhost connections arrive
    // addressed to the gateway and are un-NATed later.
    let masquerade = if rules.internal {
        String::new()
    } else {
        let mut m = format!("\x20   ip saddr {subnet} oifname != \"{bridge}\" masquerade\n");
        if let Some(s6) = &rules.subnet6 {
            m.push_str(&format!(
                "\x20   ip6 saddr {s6} oifname != \"{bridge}\" masquerade\n"
            ));
        }
        m
    };
    let mut forward = String::new();
    if rules.internal {
        forward.push_str(&format!(
            "\x20   iifname \"{bridge}\" oifname != \"{bridge}\" drop\n\
             \x20   oifname \"{bridge}\" iifname != \"{bridge}\" drop\n"
        ));
    }
    if let Some(default) = &rules.isolate_from {
        let others = format!("{NETWORK_BRIDGE_PREFIX}*");
        forward.push_str(&format!(
            "\x20   iifname \"{bridge}\" oifname \"{others}\" oifname != \"{bridge}\" drop\n\
             \x20   oifname \"{bridge}\" iifname \"{others}\" iifname != \"{bridge}\" drop\n\
             \x20   iifname \"{bridge}\" oifname \"{default}\" drop\n\
             \x20   iifname \"{default}\" oifname \"{bridge}\" drop\n"
        ));
    }
    let forward = if forward.is_empty() {
        forward
    } else {
        format!(
            "\x20 chain forward {{ type filter hook forward priority filter; policy accept;\n\
             {forward}\x20 }}\n"
        )
    };
    let mut s = format!(
        "add table {table}\ndelete table {table}\ntable {table} {{\n\
         \x20 map tcp_any {{ type inet_service : ipv4_addr . inet_service; }}\n\
         \x20 map udp_any {{ type inet_service : ipv4_addr . inet_service; }}\n\
         \x20 map tcp_ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n\
         \x20 map udp_ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n\
         \x20 chain publish {{\n\
         \x20   dnat ip to ip daddr . tcp dport map @tcp_ip\n\
         \x20   dnat ip to ip daddr . udp dport map @udp_ip\n\
         \x20   dnat ip to tcp dport map @tcp_any\n\
         \x20   dnat ip to udp dport map @udp_any\n\
         \x20 }}\n\
         \x20 chain martians {{ type filter hook prerouting priority raw; policy accept;\n\
         \x20   iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop\n\
         \x20 }}\n\
         \x20 chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   fib daddr type local jump publish\n\
         \x20 }}\n\
         \x20 chain output {{ type nat hook output priority -100; policy accept;\n\
         \x20   fib daddr type local jump publish\n\
         \x20 }}\n\
         {forward}\
         \x20 chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         {masquerade}\
         \x20   oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         \x20   oifname \"{bridge}\" ct status dnat ip saddr {subnet} masquerade\n\
         \x20 }}\n\
         }}\n"
    );
    for (ip, p) in published {
        s.push_str(&element(table, "add", *ip, p));
    }
    s
}

/// Deletes `table` (nothing if there is none).
pub fn drop_table(table: &str) -> String {
    format!("add table {table}\ndelete table {table}\n")
}

/// The line that adds (`op` "add") or deletes ("delete") the element of
/// mapping `p` to container address `ip` in `table`.
pub fn element(table: &str, op: &str, ip: Ipv4Addr, p: &PortMapping) -> String {
    let proto = p.proto.as_str();
    let (map, key) = match p.host_ip {
        Some(host) => ("ip", format!("{host} . {}", p.host_port)),
        None => ("any", p.host_port.to_string()),
    };
    let value = if op == "add" {
        format!(" : {ip} . {}", p.container_port)
    } else {
        String::new()
    };
    format!("{op} element {table} {proto}_{map} {{ {key}{value} }}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_name_the_right_map() {
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        let any = PortMapping::parse("", 8080, 80, "tcp").unwrap();
        let one = PortMapping::parse("127.0.0.1", 53, 53, "udp").unwrap();
        assert_eq!(
            element(TABLE, "add", ip, &any),
            "add element inet berth tcp_any { 8080 : 10.88.0.2 . 80 }\n"
        );
        assert_eq!(
            element(TABLE, "delete", ip, &one),
            "delete element inet berth udp_ip { 127.0.0.1 . 53 }\n"
        );
    }

    fn rules(internal: bool, isolate: bool) -> Rules {
        Rules {
            table: "inet berth_0123456789ab".into(),
            bridge: "br-0123456789ab".into(),
            subnet: Subnet::parse("10.89.3.0/24").unwrap(),
            internal,
            isolate_from: isolate.then(|| "berth0".into()),
            subnet6: None,
        }
    }

    #[test]
    fn a_network_is_isolated_and_an_internal_one_not_masqueraded() {
        let t = table(&rules(false, true), &[]);
        assert!(t.contains("ip saddr 10.89.3.0/24 oifname != \"br-0123456789ab\" masquerade"));
        assert!(t.contains(
            "iifname \"br-0123456789ab\" oifname \"br-*\" oifname != \"br-0123456789ab\" drop"
        ));
        assert!(t.contains("iifname \"berth0\" oifname \"br-0123456789ab\" drop"));
        let t = table(&rules(true, true), &[]);
        assert!(!t.contains("ip saddr 10.89.3.0/24 oifname"), "{t}");
        assert!(t.contains("iifname \"br-0123456789ab\" oifname != \"br-0123456789ab\" drop"));
        // A dual-stack network masquerades its IPv6 prefix too, unless
        // it is internal.
        let mut dual = rules(false, true);
        dual.subnet6 = Some(Subnet6::parse("fd00:7::/64").unwrap());
        let t = table(&dual, &[]);
        assert!(t.contains("ip6 saddr fd00:7::/64 oifname != \"br-0123456789ab\" masquerade"));
        dual.internal = true;
        assert!(!table(&dual, &[]).contains("ip6 saddr"));
        // The default bridge filters nothing, as before.
        let t = table(&rules(false, false), &[]);
        assert!(!t.contains("chain forward"), "{t}");
        // No network lets a container reach the host's loopback.
        for t in [
            table(&rules(false, false), &[]),
            table(&rules(true, true), &[]),
        ] {
            assert!(
                t.contains("iifname \"br-0123456789ab\" ip daddr 127.0.0.0/8 drop"),
                "{t}"
            );
        }
    }
}
