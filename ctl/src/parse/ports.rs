//! `-p` values: published ports.

/// One `-p` value: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`, ports or
/// equal-length ranges (`8000-8009:80-89`); several mappings for a range.
/// A missing host port (also `IP::PORT`) is 0: the agent takes a free one.
pub fn ports(s: &str) -> Result<Vec<berth::v1::PortMapping>, String> {
    let bad = |why: &str| format!("invalid port mapping {s:?}: {why}");
    let (rest, protocol) = match s.rsplit_once('/') {
        Some((r, p @ ("tcp" | "udp"))) => (r, p),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (s, "tcp"),
    };
    // An IPv6 host address would be bracketed; IPv4 has no colon.
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(bad("expected [IP:][HOST_PORT:]CONTAINER_PORT")),
    };
    let range = |r: &str| -> Result<(u32, u32), String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(u32::from)
                .ok_or_else(|| bad("a port is 1 to 65535"))
        };
        match r.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(bad("a range goes from low to high"));
                }
                Ok((a, b))
            }
            None => port(r).map(|p| (p, p)),
        }
    };
    let (c_lo, c_hi) = range(container)?;
    let host = if host.is_empty() {
        None
    } else {
        Some(range(host)?)
    };
    if let Some((h_lo, h_hi)) = host {
        if h_hi - h_lo != c_hi - c_lo {
            return Err(bad("the host and container ranges differ in length"));
        }
    }
    Ok((c_lo..=c_hi)
        .enumerate()
        .map(|(i, c)| berth::v1::PortMapping {
            host_ip: ip.to_string(),
            host_port: host.map(|(lo, _)| lo + i as u32).unwrap_or(0),
            container_port: c,
            protocol: protocol.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::ports;

    #[test]
    fn publish_values_parse_like_dockers() {
        let p = ports("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p[0].host_ip.as_str(), p[0].host_port, p[0].container_port),
            ("127.0.0.1", 8080, 80)
        );
        assert_eq!(p[0].protocol, "udp");
        assert_eq!(ports("80").unwrap()[0].host_port, 0);
        assert_eq!(ports("127.0.0.1::80").unwrap()[0].host_port, 0);
        let r = ports("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter()
                .map(|m| (m.host_port, m.container_port))
                .collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
        for bad in ["8080:80/sctp", "0:80", "8000-8001:80", "a:b:c:d", "90-80"] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }
}
