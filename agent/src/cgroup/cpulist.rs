//! The kernel's list format for CPUs and memory nodes ("0-2,4"), as sets
//! of ranges, so a cpuset can be checked against the host and compared
//! with what the kernel took without expanding "0-4294967295".

/// A set of CPU (or node) numbers: sorted, merged, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(Vec<(u32, u32)>);

impl CpuList {
    /// Parses "0-2,4" (whitespace around it allowed, as the kernel writes
    /// a newline); `None` when malformed. The empty string is the empty set.
    pub fn parse(s: &str) -> Option<CpuList> {
        let s = s.trim();
        let mut ranges = Vec::new();
        if s.is_empty() {
            return Some(CpuList(ranges));
        }
        for part in s.split(',') {
            let mut it = part.splitn(2, '-');
            let a: u32 = it.next()?.parse().ok()?;
            let b: u32 = match it.next() {
                None => a,
                Some(b) => b.parse().ok()?,
            };
            if b < a {
                return None;
            }
            ranges.push((a, b));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Some(CpuList(merged))
    }

    /// Whether every number of `self` is in `other`.
    pub fn is_subset_of(&self, other: &CpuList) -> bool {
        // Both merged: each range must lie inside one range of `other`.
        self.0
            .iter()
            .all(|&(a, b)| other.0.iter().any(|&(x, y)| x <= a && b <= y))
    }
}

impl std::fmt::Display for CpuList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The host's online CPUs, or memory nodes (`nodes`), as the kernel lists
/// them; `None` when the kernel does not say (then nothing is checked
/// before the write, and the read-back still is).
pub fn host_online(nodes: bool) -> Option<CpuList> {
    let file = if nodes {
        "/sys/devices/system/node/online"
    } else {
        "/sys/devices/system/cpu/online"
    };
    match std::fs::read_to_string(file) {
        Ok(s) => CpuList::parse(&s),
        // A kernel without NUMA has node 0 only.
        Err(_) if nodes => CpuList::parse("0"),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_merges_and_compares() {
        let l = CpuList::parse("4,0-1,2\n").unwrap();
        assert_eq!(l.to_string(), "0-2,4");
        let host = CpuList::parse("0-1").unwrap();
        assert!(CpuList::parse("0").unwrap().is_subset_of(&host));
        assert!(CpuList::parse("1,0").unwrap().is_subset_of(&host));
        assert!(!CpuList::parse("5").unwrap().is_subset_of(&host));
        assert!(!CpuList::parse("0-9999").unwrap().is_subset_of(&host));
        assert!(!CpuList::parse("0-4294967295").unwrap().is_subset_of(&host));
        for bad in ["a-b", "1-", "-1", "3-1", "1,,2", "99999999999"] {
            assert!(CpuList::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(CpuList::parse("").unwrap(), CpuList::default());
    }
}
