//! IPv6 addresses of a dual-stack network: its prefix, which addresses
//! are taken, and the next free one.
//!
//! As for IPv4 ([`super::ipam`]), the container records are the durable
//! state: a container's IPv6 address is in its record from Create to
//! Remove and claimed again when a restarted berthd loads the records.
//! Addresses are handed out from the bottom of the prefix, lowest free
//! first, so the cost of an allocation depends on how many containers
//! are on the network, never on the size of the prefix.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

/// Shortest IPv6 prefix a network may have: a /64, the size SLAAC and
/// Docker's examples use; a shorter one on one bridge is a mistake.
pub const MIN_PREFIX: u8 = 64;
/// Longest: a /120 leaves 255 host addresses.
pub const MAX_PREFIX: u8 = 120;

/// An IPv6 prefix: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    /// The network address (host bits zero).
    pub addr: Ipv6Addr,
    /// Prefix length, [`MIN_PREFIX`] to [`MAX_PREFIX`].
    pub prefix: u8,
}

impl Subnet6 {
    /// Parses `x::/n` with [`MIN_PREFIX`] <= n <= [`MAX_PREFIX`], host
    /// bits clear, not a link-local, multicast, loopback or unspecified
    /// prefix (those cannot be a bridge's subnet).
    pub fn parse(s: &str) -> Result<Subnet6, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("IPv6 subnet {s:?} is not of the form x::/n"))?;
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("IPv6 subnet {s:?}: {addr:?} is not an IPv6 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (MIN_PREFIX..=MAX_PREFIX).contains(p))
            .ok_or_else(|| {
                format!("IPv6 subnet {s:?}: the prefix length must be {MIN_PREFIX} to {MAX_PREFIX}")
            })?;
        let sub = Subnet6 { addr, prefix };
        if u128::from(addr) & !sub.mask() != 0 {
            return Err(format!("IPv6 subnet {s:?} has host bits set"));
        }
        let first = addr.segments()[0];
        if addr.is_unspecified()
            || addr.is_loopback()
            || addr.is_multicast()
            || first & 0xffc0 == 0xfe80
        {
            return Err(format!(
                "IPv6 subnet {s:?}: a link-local, multicast or loopback prefix cannot be a \
                 network's"
            ));
        }
        Ok(sub)
    }

    fn mask(&self) -> u128 {
        u128::MAX << (128 - self.prefix)
    }

    /// Whether `ip` is in this prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Subnet6) -> bool {
        let mask = self.mask() & other.mask();
        u128::from(self.addr) & mask == u128::from(other.addr) & mask
    }

    /// The bridge's own address by default: `::1` of the prefix.
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) + 1)
    }

    /// Whether `ip` may be a host of this prefix: in it and not its
    /// all-zeros address (the subnet-router anycast address).
    pub fn is_host(&self, ip: Ipv6Addr) -> bool {
        self.contains(ip) && ip != self.addr
    }

    fn last(&self) -> u128 {
        u128::from(self.addr) | !self.mask()
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A dual-stack network's IPv6 side: its prefix and the bridge's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net6 {
    /// The prefix.
    pub subnet: Subnet6,
    /// The bridge's address, the containers' IPv6 default route.
    pub gateway: Ipv6Addr,
}

/// A container's IPv6 address on a dual-stack network, kept in its record
/// next to its IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address6 {
    /// Its address, from Create (or connect) to Remove (or disconnect).
    pub ip: Ipv6Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The bridge's address: the IPv6 default route.
    pub gateway: Ipv6Addr,
}

/// The IPv6 addresses of one prefix in use by containers.
#[derive(Debug)]
pub struct Ipam6 {
    subnet: Subnet6,
    gateway: u128,
    used: BTreeSet<u128>,
    /// No address below this is free: the scan of [`Ipam6::allocate`]
    /// starts here, so filling a prefix from the bottom costs each
    /// allocation a lookup, not a walk over every address taken.
    low: u128,
}

impl Ipam6 {
    /// Nothing allocated yet; `gateway` (in the prefix) is never handed out.
    pub fn new(subnet: Subnet6, gateway: Ipv6Addr) -> Ipam6 {
        Ipam6 {
            subnet,
            gateway: u128::from(gateway),
            used: BTreeSet::new(),
            low: u128::from(subnet.addr) + 1,
        }
    }

    /// The lowest free address (the all-zeros address and the gateway
    /// excluded), now taken; `None` when the prefix is full.
    pub fn allocate(&mut self) -> Option<Ipv6Addr> {
        let first = self.low;
        let last = self.subnet.last();
        if first > last {
            return None;
        }
        // One pass over what is taken from `low` on: the first gap wins.
        let mut candidate = first;
        let mut used = self.used.range(first..=last).peekable();
        loop {
            if candidate == self.gateway {
                candidate += 1;
                continue;
            }
            match used.peek() {
                Some(&&u) if u < candidate => {
                    used.next();
                }
                Some(&&u) if u == candidate => {
                    used.next();
                    candidate += 1;
                }
                _ => break,
            }
        }
        self.low = candidate;
        (candidate <= last).then(|| {
            self.used.insert(candidate);
            self.low = candidate + 1;
            Ipv6Addr::from(candidate)
        })
    }

    /// Marks `ip` taken (a loaded record's, or a static one). False when
    /// it is not a host of the prefix, is the gateway or is already taken.
    pub fn claim(&mut self, ip: Ipv6Addr) -> bool {
        self.subnet.is_host(ip)
            && u128::from(ip) != self.gateway
            && self.used.insert(u128::from(ip))
    }

    /// Frees `ip`.
    pub fn release(&mut self, ip: Ipv6Addr) {
        let ip = u128::from(ip);
        if self.used.remove(&ip) {
            self.low = self.low.min(ip);
        }
    }
}

/// Whether this host can have IPv6 on a bridge: the kernel has IPv6 and
/// it is not disabled for new interfaces. `Err` says why not.
pub fn host_supports_ipv6() -> Result<(), String> {
    let path = "/proc/sys/net/ipv6/conf/default/disable_ipv6";
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == "0" => Ok(()),
        Ok(_) => Err(format!("IPv6 is disabled on this host ({path} is not 0)")),
        Err(e) => Err(format!("this host has no IPv6 ({path}: {e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_bad_ones_are_refused() {
        let s = Subnet6::parse("fd00:1::/64").unwrap();
        assert_eq!(s.gateway(), ip("fd00:1::1"));
        assert!(s.contains(ip("fd00:1::ffff:ffff:ffff:ffff")));
        assert!(!s.contains(ip("fd00:2::1")));
        assert_eq!(s.to_string(), "fd00:1::/64");
        for bad in [
            "fd00:1::",
            "fd00:1::1/64",
            "fd00::/63",
            "fd00::/121",
            "fe80::/64",
            "ff02::/64",
            "::/64",
            "10.0.0.0/24",
            "fd00::/x",
        ] {
            assert!(Subnet6::parse(bad).is_err(), "{bad}");
        }
        let wide = Subnet6 {
            addr: ip("fd00::"),
            prefix: 16,
        };
        assert!(wide.overlaps(&s) && s.overlaps(&wide));
        assert!(!s.overlaps(&Subnet6::parse("fd00:2::/64").unwrap()));
    }

    #[test]
    fn allocation_is_lowest_free_bounded_and_reuses() {
        let sub = Subnet6::parse("fd00::/124").unwrap_err();
        assert!(sub.contains("prefix length"), "{sub}");
        let sub = Subnet6::parse("fd00::/120").unwrap();
        let mut ipam = Ipam6::new(sub, sub.gateway());
        let got: Vec<_> = std::iter::from_fn(|| ipam.allocate()).collect();
        // ::0 is the subnet-router anycast address, ::1 the gateway.
        assert_eq!(got.len(), 254);
        assert_eq!(got[0], ip("fd00::2"));
        assert_eq!(got[253], ip("fd00::ff"));
        ipam.release(ip("fd00::7"));
        assert_eq!(ipam.allocate(), Some(ip("fd00::7")));
        assert_eq!(ipam.allocate(), None);
        assert!(!ipam.claim(ip("fd00::7")), "claimed twice");
        assert!(!ipam.claim(ip("fd00::1:2")), "outside the prefix");
        assert!(!ipam.claim(ip("fd00::1")), "the gateway");
    }

    #[test]
    fn a_chosen_gateway_and_claimed_addresses_are_skipped() {
        let sub = Subnet6::parse("fd00:5::/64").unwrap();
        let mut ipam = Ipam6::new(sub, ip("fd00:5::3"));
        assert!(ipam.claim(ip("fd00:5::2")));
        assert_eq!(ipam.allocate(), Some(ip("fd00:5::1")));
        assert_eq!(ipam.allocate(), Some(ip("fd00:5::4")));
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    /// `cargo test -p berth-agent --lib ipam6::measure -- --ignored --nocapture`:
    /// the cost of one allocation (and release) on an empty /64 and with
    /// 10,000 and 60,000 addresses taken.
    #[test]
    #[ignore]
    fn allocation_cost_as_the_prefix_fills() {
        let sub = Subnet6::parse("fd00:1::/64").unwrap();
        let mut ipam = Ipam6::new(sub, sub.gateway());
        for target in [0usize, 10_000, 60_000] {
            while ipam.used.len() < target {
                ipam.allocate().unwrap();
            }
            // Free the lowest, so the next allocation scans from the bottom.
            let rounds = 1_000u32;
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                let ip = ipam.allocate().unwrap();
                ipam.release(ip);
            }
            println!(
                "{target} taken: {:?} per allocate+release",
                start.elapsed() / rounds
            );
        }
    }
}
