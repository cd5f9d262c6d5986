//! What a container's process starts with, whatever berthd runs with:
//! resource limits and OOM score.
//!
//! Without this a container inherits berthd's own: its `oom_score_adj`
//! (berthd protects itself, as dockerd does at -500, and a container must
//! not share that protection) and its rlimits (raised, lowered, or whatever
//! the shell or service manager that started berthd gave it). The init sets
//! these itself before anything of the container runs.

/// The container's `/proc/self/oom_score_adj`: the kernel's neutral value,
/// as a process a login starts has.
pub const OOM_SCORE_ADJ: i32 = 0;

/// A resource limit (`RLIMIT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resource {
    /// `RLIMIT_CPU`: CPU seconds.
    Cpu,
    /// `RLIMIT_FSIZE`: the largest file written.
    FileSize,
    /// `RLIMIT_DATA`: the data segment.
    Data,
    /// `RLIMIT_STACK`: the main thread's stack.
    Stack,
    /// `RLIMIT_CORE`: core file size.
    Core,
    /// `RLIMIT_NOFILE`: open files.
    NoFile,
    /// `RLIMIT_AS`: address space.
    AddressSpace,
    /// `RLIMIT_MEMLOCK`: locked memory.
    MemLock,
    /// `RLIMIT_LOCKS`: file locks.
    Locks,
    /// `RLIMIT_MSGQUEUE`: POSIX message queue bytes.
    MsgQueue,
    /// `RLIMIT_NICE`: ceiling of the nice value (20 - limit).
    Nice,
    /// `RLIMIT_RTPRIO`: real-time priority.
    RtPrio,
    /// `RLIMIT_RTTIME`: real-time CPU microseconds without a blocking call.
    RtTime,
}

impl Resource {
    /// The kernel's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "RLIMIT_CPU",
            Resource::FileSize => "RLIMIT_FSIZE",
            Resource::Data => "RLIMIT_DATA",
            Resource::Stack => "RLIMIT_STACK",
            Resource::Core => "RLIMIT_CORE",
            Resource::NoFile => "RLIMIT_NOFILE",
            Resource::AddressSpace => "RLIMIT_AS",
            Resource::MemLock => "RLIMIT_MEMLOCK",
            Resource::Locks => "RLIMIT_LOCKS",
            Resource::MsgQueue => "RLIMIT_MSGQUEUE",
            Resource::Nice => "RLIMIT_NICE",
            Resource::RtPrio => "RLIMIT_RTPRIO",
            Resource::RtTime => "RLIMIT_RTTIME",
        }
    }
}

/// A soft and a hard limit; `None` is unlimited (`RLIM_INFINITY`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limit {
    /// Which resource.
    pub resource: Resource,
    /// The limit enforced.
    pub soft: Option<u64>,
    /// How far the process may raise `soft` without `CAP_SYS_RESOURCE`.
    pub hard: Option<u64>,
}

impl Limit {
    /// This limit with neither value above `hard` (`None`: unlimited): what
    /// a process without `CAP_SYS_RESOURCE`, which cannot raise its hard
    /// limit past `hard`, can have of it.
    pub fn within(self, hard: Option<u64>) -> Self {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let hard = min(self.hard, hard);
        Self {
            resource: self.resource,
            soft: min(self.soft, hard),
            hard,
        }
    }
}

const fn limit(resource: Resource, soft: Option<u64>, hard: Option<u64>) -> Limit {
    Limit {
        resource,
        soft,
        hard,
    }
}

const MIB: u64 = 1 << 20;

/// The limits every container starts with: those of a process a fresh
/// login or a systemd service gets (which is what Docker's containers get,
/// from containerd's service), never berthd's.
///
/// - `NOFILE` 1024 soft (`select(2)` breaks past it), 524288 hard: systemd's
///   default since v240, and what Docker and containerd give containers.
/// - `CORE` 0 soft, unlimited hard: no core files unless the container asks.
/// - `STACK` 8 MiB soft, unlimited hard; `MEMLOCK` 8 MiB (the kernel's and
///   systemd's default); `MSGQUEUE` 819200 bytes (the kernel's); `NICE`
///   and `RTPRIO` 0: no raised priority.
/// - Everything else unlimited, as the kernel starts `init`.
///
/// `RLIMIT_NPROC` and `RLIMIT_SIGPENDING` are not here: the kernel derives
/// their defaults from the machine's memory, and a fixed number would be
/// wrong on most machines; they count per host user anyway, not per
/// container (root, which runs most containers, is exempt from NPROC).
pub const DEFAULT_RLIMITS: [Limit; 13] = [
    limit(Resource::Cpu, None, None),
    limit(Resource::FileSize, None, None),
    limit(Resource::Data, None, None),
    limit(Resource::Stack, Some(8 * MIB), None),
    limit(Resource::Core, Some(0), None),
    limit(Resource::NoFile, Some(1024), Some(524_288)),
    limit(Resource::AddressSpace, None, None),
    limit(Resource::MemLock, Some(8 * MIB), Some(8 * MIB)),
    limit(Resource::Locks, None, None),
    limit(Resource::MsgQueue, Some(819_200), Some(819_200)),
    limit(Resource::Nice, Some(0), Some(0)),
    limit(Resource::RtPrio, Some(0), Some(0)),
    limit(Resource::RtTime, None, None),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_set_once_and_soft_within_hard() {
        for (i, l) in DEFAULT_RLIMITS.iter().enumerate() {
            assert!(
                DEFAULT_RLIMITS[i + 1..]
                    .iter()
                    .all(|o| o.resource != l.resource),
                "{:?} twice",
                l.resource
            );
            match (l.soft, l.hard) {
                (Some(s), Some(h)) => assert!(s <= h, "{l:?}"),
                (None, Some(_)) => panic!("{l:?}: unlimited soft under a hard limit"),
                _ => {}
            }
        }
    }

    #[test]
    fn within_a_hard_limit_lowers_never_raises() {
        let nofile = limit(Resource::NoFile, Some(1024), Some(524_288));
        assert_eq!(nofile.within(None), nofile);
        assert_eq!(
            nofile.within(Some(4096)),
            limit(Resource::NoFile, Some(1024), Some(4096))
        );
        assert_eq!(
            nofile.within(Some(512)),
            limit(Resource::NoFile, Some(512), Some(512))
        );
        let stack = limit(Resource::Stack, Some(8 * MIB), None);
        assert_eq!(
            stack.within(Some(4 * MIB)),
            limit(Resource::Stack, Some(4 * MIB), Some(4 * MIB))
        );
        let cpu = limit(Resource::Cpu, None, None);
        assert_eq!(
            cpu.within(Some(60)),
            limit(Resource::Cpu, Some(60), Some(60))
        );
    }

    #[test]
    fn the_docker_like_values() {
        let of = |r| {
            DEFAULT_RLIMITS
                .iter()
                .find(|l| l.resource == r)
                .map(|l| (l.soft, l.hard))
        };
        assert_eq!(of(Resource::NoFile), Some((Some(1024), Some(524_288))));
        assert_eq!(of(Resource::Core), Some((Some(0), None)));
        assert_eq!(of(Resource::RtPrio), Some((Some(0), Some(0))));
        assert_eq!(OOM_SCORE_ADJ, 0);
    }
}
