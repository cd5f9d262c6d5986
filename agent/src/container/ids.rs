//! The identity a container's first process runs with, as the kernel has
//! it (`/proc/PID/status`), read once the process has exec'd: what the
//! CRI's ContainerStatus reports as its user (uid, gid, supplementary
//! groups), whatever the image's /etc/passwd and /etc/group made of the
//! user spec.

use serde::{Deserialize, Serialize};

/// A process's real uid and gid and its supplementary groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIds {
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Supplementary groups, in the kernel's (sorted) order.
    pub groups: Vec<u32>,
}

/// The ids of host process `pid`; `None` if it is gone or unreadable.
pub fn of_process(pid: i32) -> Option<ProcessIds> {
    if pid <= 0 {
        return None;
    }
    parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// [`of_process`] for a container whose first process is host pid `pid`,
/// if it is a pod's: only the CRI reports it, so berth's own containers do
/// not pay for the read at their start.
pub fn of_started(spec: &super::record::SpecRecord, pid: i32) -> Option<ProcessIds> {
    spec.pod.as_ref().and_then(|_| of_process(pid))
}

/// The ids in the text of a `/proc/PID/status`.
pub fn parse(status: &str) -> Option<ProcessIds> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
    };
    let first = |name: &str| field(name)?.split_whitespace().next()?.parse().ok();
    Some(ProcessIds {
        uid: first("Uid")?,
        gid: first("Gid")?,
        groups: field("Groups")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_status_is_read() {
        let s = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t50\t50\t50\t50\n\
                 FDSize:\t64\nGroups:\t50 1234 50000 \nNStgid:\t1\n";
        assert_eq!(
            parse(s),
            Some(ProcessIds {
                uid: 1000,
                gid: 50,
                groups: vec![50, 1234, 50000]
            })
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(parse(none).map(|i| i.groups), Some(vec![]));
        assert_eq!(parse("Uid:\tx\n"), None);
        assert_eq!(parse(""), None);
        // Our own, as a real one.
        let me = of_process(std::process::id() as i32).expect("our status");
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert_eq!(of_process(0), None);
    }
}
