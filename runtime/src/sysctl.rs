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
#[cfg(test)]
use alloc::vec::Vec;
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
    /// A `net.*` sysctl for a container on the host's network.
    HostsNetwork,
    /// An IPC sysctl for a container in the host's IPC namespace.
    HostsIpc,
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
            SysctlError::HostsNetwork => {
                write!(f, "it is on the host's network, whose sysctls are the host's")
            }
            SysctlError::HostsIpc => {
                write!(f, "it is in the host's IPC namespace, whose sysctls are the host's")
            }
        }
    }
}

/// The host namespaces a container or pod is in: their sysctls are the
/// host's, so none may be set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostNamespaces {
    /// The host's network namespace.
    pub network: bool,
    /// The host's IPC namespace.
    pub ipc: bool,
}

/// Why a set of sysctls is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// More than [`MAX_COUNT`].
    TooMany(usize),
    /// One entry, by its key (cut to 64 characters).
    Entry {
        /// The key, as shown.
        key: String,
        /// What is wrong with it.
        error: SysctlError,
    },
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::TooMany(n) => write!(f, "{n} sysctls: at most {MAX_COUNT}"),
            SetError::Entry { key, error } => write!(f, "sysctl {key:?}: {error}"),
        }
    }
}

/// Checks a whole set (what Create, RunPodSandbox and the plan each
/// accept): its size, each entry ([`check`]), and none of a host namespace
/// the container is in.
pub fn check_all<'a>(
    sysctls: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    on_host: HostNamespaces,
) -> Result<(), SetError> {
    if sysctls.len() > MAX_COUNT {
        return Err(SetError::TooMany(sysctls.len()));
    }
    for (key, value) in sysctls {
        let refused = match check(key, value) {
            Ok(Owner::Net) if on_host.network => Err(SysctlError::HostsNetwork),
            Ok(Owner::Ipc) if on_host.ipc => Err(SysctlError::HostsIpc),
            r => r,
        };
        if let Err(error) = refused {
            return Err(SetError::Entry {
                key: key.chars().take(64).collect(),
                error,
            });
        }
    }
    Ok(())
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
    fn a_set_is_refused_by_its_first_bad_entry_or_its_size() {
        let set = |entries: &[(&'static str, &'static str)], on_host| {
            check_all(entries.iter().copied(), on_host)
        };
        let none = HostNamespaces::default();
        assert_eq!(
            set(&[("net.ipv4.ip_forward", "1"), ("kernel.sem", "1")], none),
            Ok(())
        );
        let net = HostNamespaces {
            network: true,
            ipc: false,
        };
        assert_eq!(
            set(&[("kernel.sem", "1"), ("net.ipv4.ip_forward", "1")], net),
            Err(SetError::Entry {
                key: "net.ipv4.ip_forward".into(),
                error: SysctlError::HostsNetwork
            })
        );
        let ipc = HostNamespaces {
            network: false,
            ipc: true,
        };
        assert!(set(&[("net.ipv4.ip_forward", "1")], ipc).is_ok());
        assert!(matches!(
            set(&[("fs.mqueue.msg_max", "1")], ipc),
            Err(SetError::Entry {
                error: SysctlError::HostsIpc,
                ..
            })
        ));
        let many: Vec<(String, String)> = (0..=MAX_COUNT)
            .map(|i| (format!("net.ipv4.conf.lo{i}.forwarding"), "1".into()))
            .collect();
        let many = check_all(many.iter().map(|(k, v)| (k.as_str(), v.as_str())), none);
        assert_eq!(many, Err(SetError::TooMany(MAX_COUNT + 1)));
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
