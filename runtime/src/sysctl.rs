//! Which kernel parameters (sysctls) a container or pod may set: only those
//! that belong to one of its own namespaces, so that setting them changes
//! nothing outside it. The list is runc's and Kubernetes' (the IPC
//! namespace's `kernel.shm*`, `kernel.msg*`, `kernel.sem` and
//! `fs.mqueue.*`, the network namespace's `net.*`, the UTS namespace's
//! `kernel.domainname`); anything else (`vm.*`, `kernel.pid_max`, ...) is
//! the host's and refused.
//!
//! A key is written as `sysctl(8)` takes it, with dots (`net.ipv4.ip_forward`)
//! or with slashes (`net/ipv4/conf/eth0.100/forwarding`, where a dot is part
//! of a name).

use alloc::format;
use alloc::string::String;
use core::fmt;

/// The most sysctls one container or pod may set.
pub const MAX_COUNT: usize = 64;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The IPC namespace.
    Ipc,
    /// The network namespace.
    Net,
    /// The UTS namespace.
    Uts,
}

/// Why a sysctl is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlError {
    /// Empty, too long, or with characters or components a sysctl name
    /// does not have (`..`, an empty one).
    BadKey,
    /// The value is too long or has control characters.
    BadValue,
    /// A sysctl of no namespace of the container's: the host's.
    NotNamespaced,
    /// `kernel.hostname`: the hostname has a field of its own.
    Hostname,
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlError::BadKey => write!(
                f,
                "a sysctl name is 1 to {MAX_KEY_BYTES} bytes of letters, digits, '.', '/', '_' and '-', without empty or '..' components"
            ),
            SysctlError::BadValue => write!(
                f,
                "a sysctl value is at most {MAX_VALUE_BYTES} bytes, without control characters"
            ),
            SysctlError::NotNamespaced => write!(
                f,
                "not a sysctl of the container's own namespaces (only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and kernel.domainname are): setting it would change the host"
            ),
            SysctlError::Hostname => write!(f, "set the hostname with its own field, not kernel.hostname"),
        }
    }
}

/// The IPC namespace's sysctls besides `fs.mqueue.*`.
const IPC: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks `key` and `value`, and says which namespace the sysctl is of.
pub fn check(key: &str, value: &str) -> Result<Owner, SysctlError> {
    if key.is_empty()
        || key.len() > MAX_KEY_BYTES
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'_' | b'-'))
        || components(key).any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(SysctlError::BadKey);
    }
    if value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_control) {
        return Err(SysctlError::BadValue);
    }
    let dotted = dotted(key);
    if dotted.starts_with("net.") {
        Ok(Owner::Net)
    } else if dotted.starts_with("fs.mqueue.") || IPC.contains(&dotted.as_str()) {
        Ok(Owner::Ipc)
    } else if dotted == "kernel.domainname" {
        Ok(Owner::Uts)
    } else if dotted == "kernel.hostname" {
        Err(SysctlError::Hostname)
    } else {
        Err(SysctlError::NotNamespaced)
    }
}

/// The file under `/proc/sys` of a key [`check`] accepted.
pub fn proc_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{key}")
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

/// The components of `key` (split at slashes if it has any, else at dots).
fn components(key: &str) -> impl Iterator<Item = &str> {
    let sep = if key.contains('/') { '/' } else { '.' };
    key.split(sep)
}

/// `key` with dots, for matching: only its leading components matter, and
/// those have no dots of their own.
fn dotted(key: &str) -> String {
    key.replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_sysctls_are_told_apart() {
        assert_eq!(check("net.ipv4.ip_forward", "1"), Ok(Owner::Net));
        assert_eq!(
            check("net/ipv4/conf/eth0.100/forwarding", "1"),
            Ok(Owner::Net)
        );
        assert_eq!(check("kernel.shm_rmid_forced", "1"), Ok(Owner::Ipc));
        assert_eq!(check("kernel.sem", "250 32000 32 128"), Ok(Owner::Ipc));
        assert_eq!(check("fs.mqueue.msg_max", "20"), Ok(Owner::Ipc));
        assert_eq!(check("kernel/msgmax", "8192"), Ok(Owner::Ipc));
        assert_eq!(check("kernel.domainname", "example"), Ok(Owner::Uts));
    }

    #[test]
    fn the_hosts_sysctls_are_refused() {
        for key in [
            "vm.overcommit_memory",
            "kernel.pid_max",
            "kernel.shmmaxx",
            "kernel.shm",
            "fs.file-max",
            "fs.mqueue",
            "kernel.core_pattern",
            "network.x",
            "netx",
        ] {
            assert_eq!(check(key, "1"), Err(SysctlError::NotNamespaced), "{key}");
        }
        assert_eq!(check("kernel.hostname", "x"), Err(SysctlError::Hostname));
    }

    #[test]
    fn names_cannot_leave_proc_sys() {
        for key in [
            "",
            "net..ipv4",
            "net/../../etc",
            "net/ipv4/../../../x",
            ".net.ipv4",
            "net.ipv4.",
            "net/ipv4/",
            "net/./ipv4",
            "net.ipv4 x",
            "net.ipv4\n",
            "/net/ipv4",
        ] {
            assert_eq!(check(key, "1"), Err(SysctlError::BadKey), "{key:?}");
        }
        assert_eq!(
            check(&format!("net.{}", "a".repeat(MAX_KEY_BYTES)), "1"),
            Err(SysctlError::BadKey)
        );
        assert_eq!(
            check("net.ipv4.ip_forward", "1\n0"),
            Err(SysctlError::BadValue)
        );
        let long = "1".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            check("net.ipv4.ip_forward", &long),
            Err(SysctlError::BadValue)
        );
    }

    #[test]
    fn keys_name_their_file() {
        assert_eq!(
            proc_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.100/forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
        );
    }
}
