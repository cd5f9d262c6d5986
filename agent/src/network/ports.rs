//! Published ports: what a spec asks for, checked at Create, and the host
//! ports a start binds them to.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::error::capped;

/// Most published ports one container may ask for.
pub const MAX_PORTS: usize = 256;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// "tcp" or "udp".
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: as asked for (host port 0: any free one) or as
/// bound by a start (host port set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it is published on; `None`: all of the host's.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port; 0 in a request for one the kernel picks.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// Transport.
    pub proto: Proto,
}

impl PortMapping {
    /// Checks one requested mapping as the client gave it.
    pub fn parse(
        host_ip: &str,
        host_port: u32,
        container_port: u32,
        protocol: &str,
    ) -> Result<PortMapping, NetworkError> {
        let invalid = |m: String| Err(NetworkError::InvalidPorts(m));
        let proto = match protocol {
            "" | "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => return Err(NetworkError::Unsupported("publishing sctp ports")),
            p => return invalid(format!("port protocol {:?} is not tcp or udp", capped(p))),
        };
        let host_ip = match host_ip {
            "" | "0.0.0.0" => None,
            s => match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => Some(ip),
                Ok(std::net::IpAddr::V6(_)) => {
                    return Err(NetworkError::Unsupported(
                        "publishing ports on IPv6 addresses",
                    ))
                }
                Err(_) => return invalid(format!("host ip {:?} is not an address", capped(s))),
            },
        };
        let Ok(container_port @ 1..) = u16::try_from(container_port) else {
            return invalid(format!("container port {container_port} is not 1 to 65535"));
        };
        let Ok(host_port) = u16::try_from(host_port) else {
            return invalid(format!("host port {host_port} is not 0 to 65535"));
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
        })
    }

    /// Whether the two use the same host port (same protocol and port, and
    /// addresses that meet: equal, or either one all of them).
    pub fn clashes(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    /// `[ip:]host:container/proto`, as `berthctl port` shows it.
    pub fn describe(&self) -> String {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        format!(
            "{}/{} -> {ip}:{}",
            self.container_port,
            self.proto.as_str(),
            self.host_port
        )
    }
}

/// Checks a spec's requested mappings together.
pub fn check_requests(ports: &[PortMapping]) -> Result<(), NetworkError> {
    if ports.len() > MAX_PORTS {
        return Err(NetworkError::InvalidPorts(format!(
            "{} published ports; at most {MAX_PORTS}",
            ports.len()
        )));
    }
    for (i, p) in ports.iter().enumerate() {
        if p.host_port != 0 && ports[..i].iter().any(|q| q.clashes(p)) {
            return Err(NetworkError::InvalidPorts(format!(
                "host port {}/{} is published twice",
                p.host_port,
                p.proto.as_str()
            )));
        }
    }
    Ok(())
}

/// What `-P` adds to `asked`: each of the image's `exposed` ports
/// ("80/tcp", "53/udp", "8000-8009/tcp", "80" for tcp) that `asked` does
/// not already publish, on a host port chosen at each start. Entries that
/// are not tcp or udp ports (sctp, or malformed: the image author's text)
/// are left out; at most `MAX_PORTS` are returned, so a hostile image
/// cannot make a huge list (`check_requests` then refuses too many).
pub fn publish_all(asked: &[PortMapping], exposed: &[String]) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for e in exposed {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => continue,
        };
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
            continue;
        };
        if lo == 0 || hi < lo {
            continue;
        }
        for port in lo..=hi {
            if out.len() > MAX_PORTS {
                return out;
            }
            let taken = |p: &PortMapping| p.container_port == port && p.proto == proto;
            if asked.iter().chain(&out).any(taken) {
                continue;
            }
            out.push(PortMapping {
                host_ip: None,
                host_port: 0,
                container_port: port,
                proto,
            });
        }
    }
    out
}

/// Binds the host port `p` asks for on this host, to learn whether a
/// process holds it (and, for port 0, which one the kernel gives); the
/// socket is closed at once. Returns the port.
pub fn probe(p: &PortMapping) -> std::io::Result<u16> {
    let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
    match p.proto {
        Proto::Tcp => Ok(TcpListener::bind(addr)?.local_addr()?.port()),
        Proto::Udp => Ok(UdpSocket::bind(addr)?.local_addr()?.port()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn publish_all_adds_what_the_image_exposes_once_and_bounded() {
        let asked = [PortMapping::parse("", 8080, 80, "tcp").unwrap()];
        let exposed: Vec<String> = [
            "80/tcp",
            "53/udp",
            "443",
            "8000-8002/tcp",
            "9/sctp",
            "x/tcp",
            "0/tcp",
            "5-4/tcp",
            "53/udp",
        ]
        .map(String::from)
        .to_vec();
        let got: Vec<(u16, Proto, u16)> = publish_all(&asked, &exposed)
            .iter()
            .map(|p| (p.container_port, p.proto, p.host_port))
            .collect();
        assert_eq!(
            got,
            [
                (53, Proto::Udp, 0),
                (443, Proto::Tcp, 0),
                (8000, Proto::Tcp, 0),
                (8001, Proto::Tcp, 0),
                (8002, Proto::Tcp, 0),
            ]
        );
        let hostile = vec!["1-65535/tcp".to_string()];
        let many = publish_all(&[], &hostile);
        assert!(many.len() <= MAX_PORTS + 1, "{}", many.len());
        assert!(
            check_requests(&many).is_err(),
            "more than MAX_PORTS is refused"
        );
    }

    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        let p = PortMapping::parse("127.0.0.1", 8080, 80, "").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.proto, Proto::Tcp);
        assert!(PortMapping::parse("", 0, 53, "udp").is_ok());
        for (ip, h, c, proto) in [
            ("", 80, 0, "tcp"),
            ("", 70000, 80, "tcp"),
            ("", 80, 70000, "tcp"),
            ("x", 80, 80, "tcp"),
            ("", 80, 80, "icmp"),
        ] {
            assert!(
                matches!(
                    PortMapping::parse(ip, h, c, proto),
                    Err(NetworkError::InvalidPorts(_))
                ),
                "{ip} {h} {c} {proto}"
            );
        }
        assert!(matches!(
            PortMapping::parse("::1", 80, 80, "tcp"),
            Err(NetworkError::Unsupported(_))
        ));
    }

    #[test]
    fn the_same_host_port_twice_is_refused() {
        let a = PortMapping::parse("", 8080, 80, "tcp").unwrap();
        let b = PortMapping::parse("127.0.0.1", 8080, 81, "tcp").unwrap();
        let c = PortMapping::parse("", 8080, 80, "udp").unwrap();
        assert!(a.clashes(&b));
        assert!(!a.clashes(&c));
        assert!(check_requests(&[a.clone(), c]).is_ok());
        assert!(check_requests(&[a, b]).is_err());
        let any = PortMapping::parse("", 0, 80, "tcp").unwrap();
        assert!(check_requests(&[any.clone(), any]).is_ok());
    }

    #[test]
    fn a_held_port_fails_the_probe() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let p = PortMapping::parse("127.0.0.1", port.into(), 80, "tcp").unwrap();
        assert!(probe(&p).is_err());
        let any = PortMapping::parse("127.0.0.1", 0, 80, "tcp").unwrap();
        assert_ne!(probe(&any).unwrap(), 0);
    }
}
