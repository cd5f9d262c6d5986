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
use super::ports::PortMapping;

/// The table's family and name.
pub const TABLE: &str = "inet berth";
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

/// The whole table, replacing whatever berth's table held: the fixed rules
/// and the elements for `published` (container address, mapping).
pub fn table(bridge: &str, subnet: &Subnet, published: &[(Ipv4Addr, PortMapping)]) -> String {
    let mut s = format!(
        "add table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n\
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
         \x20 chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   fib daddr type local jump publish\n\
         \x20 }}\n\
         \x20 chain output {{ type nat hook output priority -100; policy accept;\n\
         \x20   fib daddr type local jump publish\n\
         \x20 }}\n\
         \x20 chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \x20   oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         \x20   oifname \"{bridge}\" ct status dnat ip saddr {subnet} masquerade\n\
         \x20 }}\n\
         }}\n"
    );
    for (ip, p) in published {
        s.push_str(&element("add", *ip, p));
    }
    s
}

/// Deletes berth's table (nothing if there is none).
pub fn drop_table() -> String {
    format!("add table {TABLE}\ndelete table {TABLE}\n")
}

/// The line that adds (`op` "add") or deletes ("delete") the element of
/// mapping `p` to container address `ip`.
pub fn element(op: &str, ip: Ipv4Addr, p: &PortMapping) -> String {
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
    format!("{op} element {TABLE} {proto}_{map} {{ {key}{value} }}\n")
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
            element("add", ip, &any),
            "add element inet berth tcp_any { 8080 : 10.88.0.2 . 80 }\n"
        );
        assert_eq!(
            element("delete", ip, &one),
            "delete element inet berth udp_ip { 127.0.0.1 . 53 }\n"
        );
    }
}
