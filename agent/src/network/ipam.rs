//! Addresses on the bridge: which are taken, and the next free one.
//!
//! The container records are the durable state: each bridge container's
//! record holds its address from Create to Remove, and a restarted berthd
//! claims them all again while it loads the records, so no allocation file
//! can disagree with the containers after a crash.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 subnet: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 8 to 30.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n` with 8 <= n <= 30 (smaller subnets have no room
    /// for a gateway and a container; larger ones than /8 are a mistake).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("subnet {s:?} is not of the form a.b.c.d/n"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("subnet {s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("subnet {s:?}: the prefix length must be 8 to 30"))?;
        let sub = Subnet { addr, prefix };
        if u32::from(addr) & !sub.mask() != 0 {
            return Err(format!("subnet {s:?} has host bits set"));
        }
        Ok(sub)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.addr) & mask == u32::from(other.addr) & mask
    }

    /// The bridge's own address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Whether `ip` may be a host of this subnet: neither its network
    /// nor its broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.contains(Ipv4Addr::from(ip)) && ip != u32::from(self.addr) && ip != self.broadcast()
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.addr) | !self.mask()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The addresses of one subnet in use by containers.
#[derive(Debug)]
pub struct Ipam {
    subnet: Subnet,
    gateway: u32,
    used: BTreeSet<u32>,
    /// No address below this is free: the scan of [`Ipam::allocate`]
    /// starts here, so filling a subnet from the bottom costs each
    /// allocation a lookup, not a walk over every address taken (as in
    /// `ipam6`).
    low: u32,
}

impl Ipam {
    /// Nothing allocated yet; the gateway is the subnet's first address.
    pub fn new(subnet: Subnet) -> Ipam {
        Ipam::with_gateway(subnet, subnet.gateway())
    }

    /// Nothing allocated yet; `gateway` (in the subnet) is never handed out.
    pub fn with_gateway(subnet: Subnet, gateway: Ipv4Addr) -> Ipam {
        Ipam {
            subnet,
            gateway: u32::from(gateway),
            used: BTreeSet::new(),
            low: u32::from(subnet.addr) + 1,
        }
    }

    /// The lowest free address (gateway, network and broadcast excluded),
    /// now taken; `None` when the subnet is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let first = self.low;
        let last = self.subnet.broadcast() - 1;
        if first > last {
            return None;
        }
        // The used set is sorted: the first gap from `low` on is the
        // answer, found in one pass over what is taken rather than a probe
        // per address (the gateway counts as taken).
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
        // Everything below `candidate` is taken (or the gateway), even
        // when the subnet is full.
        self.low = candidate;
        (candidate <= last).then(|| {
            self.used.insert(candidate);
            self.low = candidate + 1;
            Ipv4Addr::from(candidate)
        })
    }

    /// Marks `ip` taken (a loaded record's). False when it is not in the
    /// subnet or already taken.
    pub fn claim(&mut self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip) && u32::from(ip) != self.gateway && self.used.insert(u32::from(ip))
    }

    /// Frees `ip`.
    pub fn release(&mut self, ip: Ipv4Addr) {
        let ip = u32::from(ip);
        if self.used.remove(&ip) {
            self.low = self.low.min(ip);
        }
    }

    /// Whether no address is taken.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_bad_ones_are_refused() {
        let s = Subnet::parse("10.88.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 88, 255, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 0, 1)));
        for bad in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "x/16",
            "10.0.0.0/4",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        let a = Subnet::parse("10.0.0.0/8").unwrap();
        assert!(a.overlaps(&s) && s.overlaps(&a));
        assert!(!s.overlaps(&Subnet::parse("192.168.0.0/16").unwrap()));
    }

    #[test]
    fn allocation_takes_the_lowest_free_and_reuses_released_ones() {
        let mut ipam = Ipam::new(Subnet::parse("10.1.0.0/29").unwrap());
        let got: Vec<_> = std::iter::from_fn(|| ipam.allocate()).collect();
        // .0 network, .1 gateway, .7 broadcast.
        assert_eq!(
            got,
            (2..=6)
                .map(|i| Ipv4Addr::new(10, 1, 0, i))
                .collect::<Vec<_>>()
        );
        ipam.release(Ipv4Addr::new(10, 1, 0, 4));
        assert_eq!(ipam.allocate(), Some(Ipv4Addr::new(10, 1, 0, 4)));
        assert_eq!(ipam.allocate(), None);
        assert!(!ipam.claim(Ipv4Addr::new(10, 1, 0, 4)), "claimed twice");
        assert!(
            !ipam.claim(Ipv4Addr::new(10, 2, 0, 4)),
            "outside the subnet"
        );
    }

    #[test]
    fn a_gateway_of_choice_is_never_handed_out() {
        let sub = Subnet::parse("10.1.0.0/29").unwrap();
        let mut ipam = Ipam::with_gateway(sub, Ipv4Addr::new(10, 1, 0, 3));
        let got: Vec<_> = std::iter::from_fn(|| ipam.allocate()).collect();
        assert_eq!(
            got,
            [1, 2, 4, 5, 6]
                .into_iter()
                .map(|i| Ipv4Addr::new(10, 1, 0, i))
                .collect::<Vec<_>>()
        );
        assert!(!ipam.claim(Ipv4Addr::new(10, 1, 0, 3)));
        assert!(sub.is_host(Ipv4Addr::new(10, 1, 0, 6)));
        assert!(!sub.is_host(Ipv4Addr::new(10, 1, 0, 7)));
        assert!(!sub.is_host(Ipv4Addr::new(10, 1, 0, 0)));
    }

    #[test]
    fn claimed_addresses_are_skipped() {
        let mut ipam = Ipam::new(Subnet::parse("10.1.0.0/24").unwrap());
        assert!(ipam.claim(Ipv4Addr::new(10, 1, 0, 2)));
        assert!(ipam.claim(Ipv4Addr::new(10, 1, 0, 3)));
        assert_eq!(ipam.allocate(), Some(Ipv4Addr::new(10, 1, 0, 4)));
    }

    #[test]
    fn the_lowest_free_hint_follows_releases_claims_and_a_full_subnet() {
        let ip = |i| Ipv4Addr::new(10, 1, 0, i);
        let mut ipam = Ipam::new(Subnet::parse("10.1.0.0/28").unwrap());
        for i in 2..=6 {
            assert_eq!(ipam.allocate(), Some(ip(i)));
        }
        // A release below the hint is found again, lowest first.
        ipam.release(ip(5));
        ipam.release(ip(3));
        assert_eq!(ipam.allocate(), Some(ip(3)));
        assert_eq!(ipam.allocate(), Some(ip(5)));
        // Releasing what is free, or outside, moves nothing.
        ipam.release(ip(12));
        ipam.release(Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(ipam.allocate(), Some(ip(7)));
        // Claims above the hint are skipped.
        assert!(ipam.claim(ip(8)) && ipam.claim(ip(10)));
        assert_eq!(ipam.allocate(), Some(ip(9)));
        assert_eq!(ipam.allocate(), Some(ip(11)));
        // Full (.15 is the broadcast), then a release makes room again.
        for i in 12..=14 {
            assert_eq!(ipam.allocate(), Some(ip(i)));
        }
        assert_eq!(ipam.allocate(), None);
        assert_eq!(ipam.allocate(), None);
        ipam.release(ip(2));
        assert_eq!(ipam.allocate(), Some(ip(2)));
        assert_eq!(ipam.allocate(), None);
        ipam.release(ip(14));
        assert_eq!(ipam.allocate(), Some(ip(14)));
    }

    #[test]
    fn the_hint_skips_a_gateway_of_choice_in_the_middle() {
        let ip = |i| Ipv4Addr::new(10, 1, 0, i);
        let sub = Subnet::parse("10.1.0.0/29").unwrap();
        let mut ipam = Ipam::with_gateway(sub, ip(4));
        for i in [1, 2, 3, 5] {
            assert_eq!(ipam.allocate(), Some(ip(i)));
        }
        ipam.release(ip(3));
        assert_eq!(ipam.allocate(), Some(ip(3)));
        assert_eq!(ipam.allocate(), Some(ip(6)));
        assert_eq!(ipam.allocate(), None);
        assert!(!ipam.is_empty());
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    /// `cargo test -p berth-agent --lib ipam::measure -- --ignored --nocapture`:
    /// the cost of one allocation (and release) on an empty /16 and with
    /// 10,000 and 60,000 addresses taken.
    #[test]
    #[ignore]
    fn allocation_cost_as_the_subnet_fills() {
        let mut ipam = Ipam::new(Subnet::parse("10.1.0.0/16").unwrap());
        for target in [0usize, 10_000, 60_000] {
            while ipam.used.len() < target {
                ipam.allocate().unwrap();
            }
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
