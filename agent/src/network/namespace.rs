//! The network namespace a start hands to the container's init.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::netns_pool::Spare;

/// Where the container's init finds its network. Held by the start until
/// the monitor has reported, since the init opens the namespace by path.
#[derive(Debug)]
pub enum Netns {
    /// A namespace of its own: a spare made ahead of time, or (`None`: the
    /// pool was empty) one the init creates.
    Own(Option<Spare>),
    /// The agent's own: the init neither creates nor enters one.
    Host,
    /// Another container's, opened from its init's `/proc/<pid>/ns/net`.
    Joined(OwnedFd),
}

impl Netns {
    /// The path the init opens to enter the namespace, if it enters one.
    pub fn path(&self) -> Option<String> {
        match self {
            Netns::Own(spare) => spare.as_ref().map(Spare::path),
            Netns::Host => None,
            Netns::Joined(fd) => Some(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                fd.as_raw_fd()
            )),
        }
    }

    /// Whether the init stays in the host's network namespace.
    pub fn is_host(&self) -> bool {
        matches!(self, Netns::Host)
    }

    /// Whether the namespace is berthd's own (the host's), also when it is
    /// another container's that is on the host's network (`container:x`
    /// where x, or whatever x joined, runs with `--network host`).
    pub fn is_the_hosts(&self) -> bool {
        match self {
            Netns::Host => true,
            Netns::Own(_) => false,
            Netns::Joined(fd) => {
                let id = |m: std::fs::Metadata| {
                    use std::os::unix::fs::MetadataExt;
                    (m.dev(), m.ino())
                };
                // The fd's magic link leads to the namespace's own inode.
                let theirs = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).map(id);
                // Unknown counts as the host's: a caller refuses then.
                match (theirs, std::fs::metadata("/proc/self/ns/net").map(id)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => true,
                }
            }
        }
    }
}

/// Opens the network namespace of process `pid`. The caller checks
/// afterwards that `pid` is still the process it means (by pidfd), so a
/// reused pid is never joined.
pub fn open_of(pid: i32) -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/{pid}/ns/net"))?.into())
}
