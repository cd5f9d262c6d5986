//! A container's network counters, from `/proc/<pid>/net/dev`: the
//! kernel's per-interface totals of the network namespace that process is
//! in (what `docker stats` shows as NET I/O).

/// The most interfaces reported for one container.
pub const MAX_INTERFACES: usize = 64;

/// One interface's totals since it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Its name in the container (`eth0`, ...).
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Packets dropped on sending.
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: 16 numbers` (8
/// receive, 8 transmit). `lo` is left out (Docker leaves it out too: it is
/// the container talking to itself); malformed lines are skipped; sorted by
/// name, at most [`MAX_INTERFACES`].
pub fn parse(text: &str) -> Vec<InterfaceCounters> {
    let mut out: Vec<InterfaceCounters> = text
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.is_empty() {
                return None;
            }
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if n.len() < 16 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.to_string(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.truncate(MAX_INTERFACES);
    out
}

/// The most of `/proc/<pid>/net/dev` read: a container with NET_ADMIN can
/// make thousands of interfaces, of which [`MAX_INTERFACES`] are kept.
const READ_MAX: u64 = 256 * 1024;

/// The counters of the network namespace process `pid` is in; None when it
/// cannot be read (the process is gone).
pub fn of_process(pid: i32) -> Option<Vec<InterfaceCounters>> {
    use std::io::Read;
    let file = std::fs::File::open(format!("/proc/{pid}/net/dev")).ok()?;
    let mut text = String::new();
    file.take(READ_MAX).read_to_string(&mut text).ok()?;
    // A cut last line fails to parse and is skipped.
    Some(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_but_lo_sorted_and_bad_lines_skipped() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth1: 5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0
  eth0:  123456     789    1    2    0     0          0         3     4567      89    3    4    0     0       0          0
 bad: 1 2 x
 short: 1 2 3
";
        let got = parse(text);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 123456,
                rx_packets: 789,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 4567,
                tx_packets: 89,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        assert_eq!((got[1].name.as_str(), got[1].tx_dropped), ("eth1", 12));
        assert!(parse("").is_empty());
        let many: String = "h\nh\n".to_string()
            + &(0..100)
                .map(|i| format!("if{i:03}: {}\n", "1 ".repeat(16)))
                .collect::<String>();
        assert_eq!(parse(&many).len(), MAX_INTERFACES);
    }
}
