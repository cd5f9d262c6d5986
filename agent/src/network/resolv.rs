//! The container's `/etc/resolv.conf`, derived from the host's as Docker
//! derives it.
//!
//! A container in the host's network uses the host's file as it is. Any
//! other sees the host's resolvers except those on loopback (127.0.0.0/8,
//! `::1`), which are the host's own and unreachable from another
//! namespace; when none is left, Google's public resolvers, as Docker. A
//! host behind systemd-resolved's stub (127.0.0.53) has its real upstream
//! servers in `/run/systemd/resolve/resolv.conf`, which is used instead.

use std::net::IpAddr;
use std::path::Path;

use super::Mode;

/// The host's file.
pub const HOST_FILE: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the upstream servers behind its stub.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";
/// Larger host files are not read (the C library reads far less).
pub const MAX_BYTES: u64 = 64 * 1024;
/// What a container gets when the host has only loopback resolvers.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's resolv.conf for `mode`, from the host's files (read
/// now: the host's may change between starts); `dns`, when given (`--dns`,
/// checked at Create), replaces the host's servers and keeps its other
/// lines, as Docker does.
pub fn for_container(mode: &Mode, dns: &[String]) -> String {
    let host = read(Path::new(HOST_FILE)).unwrap_or_default();
    if mode.is_host() {
        return host;
    }
    if !dns.is_empty() {
        return with_servers(&host, dns);
    }
    let host = if only_stub(&host) {
        read(Path::new(RESOLVED_UPSTREAM)).unwrap_or(host)
    } else {
        host
    };
    derive(&host)
}

/// The host's file with its nameserver lines replaced by `servers`.
pub fn with_servers(host: &str, servers: &[String]) -> String {
    let mut out: String = host
        .lines()
        .filter(|l| nameserver(l).is_none())
        .flat_map(|l| [l, "\n"])
        .collect();
    for s in servers {
        out.push_str("nameserver ");
        out.push_str(s);
        out.push('\n');
    }
    out
}

fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The address of a `nameserver` line, if it is one.
fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver")).then(|| words.next().unwrap_or(""))
}

fn is_loopback(addr: &str) -> bool {
    // A zone (`fe80::1%eth0`) does not change whether it is loopback.
    let addr = addr.split('%').next().unwrap_or(addr);
    addr.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn only_stub(text: &str) -> bool {
    let servers: Vec<&str> = text.lines().filter_map(nameserver).collect();
    !servers.is_empty() && servers.iter().all(|s| *s == "127.0.0.53")
}

/// The host's file without loopback resolvers; the defaults if none is left.
pub fn derive(host: &str) -> String {
    let mut out = String::with_capacity(host.len() + 64);
    let mut servers = 0;
    for line in host.lines() {
        match nameserver(line) {
            Some(addr) if is_loopback(addr) => continue,
            Some(_) => servers += 1,
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for s in DEFAULT_NAMESERVERS {
            out.push_str("nameserver ");
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped_and_the_rest_kept() {
        let host = "# generated\nsearch example.org\nnameserver 127.0.0.1\nnameserver ::1\n\
                    nameserver 10.0.0.2\noptions ndots:2\n";
        assert_eq!(
            derive(host),
            "# generated\nsearch example.org\nnameserver 10.0.0.2\noptions ndots:2\n"
        );
    }

    #[test]
    fn only_loopback_resolvers_give_the_defaults() {
        let out = derive("nameserver 127.0.0.53\noptions edns0\n");
        assert_eq!(
            out,
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(derive(""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn given_servers_replace_the_hosts() {
        assert_eq!(
            with_servers("search x\nnameserver 10.0.0.2\n", &["1.1.1.1".into()]),
            "search x\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn the_systemd_stub_is_recognised() {
        assert!(only_stub("nameserver 127.0.0.53\nsearch x\n"));
        assert!(!only_stub("nameserver 127.0.0.53\nnameserver 10.0.0.1\n"));
        assert!(!only_stub("search x\n"));
    }
}
