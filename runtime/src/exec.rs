//! An exec: another process in a running container, and the protocol
//! between berthd and the `berth-monitor __exec` helper that starts it.
//!
//! berthd starts `berth-monitor __exec` with a unix stream socket as its
//! stdin and a pipe as its stdout:
//!
//! 1. berthd sends one message of [`HEADER_LEN`] bytes, the length of the
//!    [`ExecLaunch`] JSON that follows (little-endian `u32`, at most
//!    [`MAX_LAUNCH_BYTES`]), carrying as `SCM_RIGHTS` the container init's
//!    pidfd and, without a terminal, the process's stdin, stdout and stderr
//!    and the read ends of its stdout and stderr pipes (in that order; see
//!    [`fds_expected`]). Then the JSON.
//! 2. With a terminal the helper sends back one byte with the terminal's
//!    master side as `SCM_RIGHTS` (a pty of the container's own devpts).
//! 3. The helper answers on its stdout with [`ExecReport`] lines: `Started`
//!    (or `Failed`), later `Exited`.
//! 4. Meanwhile each byte berthd sends on the socket is a signal number for
//!    the process ([`signal_byte`]). End of file means berthd is gone (a
//!    restart, a crash): the process runs on, as a container does. berthd
//!    ends an exec whose client went away by sending SIGKILL.
//! 5. When the process has ended the helper writes its exit to
//!    `<record_dir>/<exec id>`[`EXIT_SUFFIX`] ([`ExecExit`], atomically,
//!    mode 0600) before it reports `Exited`, so a berthd that was down
//!    meanwhile finds it.
//!
//! The helper holds the process as its child until it has reported the
//! exit, so a signal sent through it never reaches a process that reused
//! the pid. It holds the read ends of the process's output too (a
//! terminal's master side with a terminal): once berthd is gone, it reads
//! and drops the output, so the process neither dies of SIGPIPE nor blocks
//! on a full pipe.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::launch::CgroupPlacement;

/// The argument that starts the exec helper: `berth-monitor __exec`.
pub const EXEC_ARG: &str = "__exec";
/// Bytes of the first message: the JSON's length.
pub const HEADER_LEN: usize = 4;
/// Largest launch spec: 1 MiB of argv and env, JSON-escaped (up to six
/// bytes per byte for control characters), and the rest.
pub const MAX_LAUNCH_BYTES: u32 = 8 << 20;

/// Everything the helper needs to start the process. Paths are host paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecLaunch {
    /// The exec's id (for messages).
    pub exec_id: String,
    /// The container's id (for messages).
    pub container_id: String,
    /// argv; `args[0]` is looked up in the PATH of `env` when it has no '/'.
    pub args: Vec<String>,
    /// The whole environment ("KEY=value"), the container's with the
    /// exec's own laid over it ([`merge_env`]).
    pub env: Vec<String>,
    /// User spec, resolved in the container's /etc/passwd and /etc/group.
    pub user: String,
    /// Working directory inside the container (absolute); it must exist.
    pub cwd: String,
    /// Give the process a new terminal of the container's devpts.
    pub tty: bool,
    /// Its initial size (rows, columns).
    pub terminal_size: (u16, u16),
    /// Capabilities (bit N: capability N), within what the helper holds.
    pub capabilities: u64,
    /// The container's compiled seccomp programs (a host path), installed
    /// last before exec; `None`: unconfined.
    pub seccomp: Option<String>,
    /// As the container's [`crate::launch::LaunchSpec::allow_privilege_escalation`].
    #[serde(default)]
    pub allow_privilege_escalation: bool,
    /// As the container's [`crate::launch::LaunchSpec::strict_groups`].
    #[serde(default)]
    pub strict_groups: bool,
    /// The container's cgroup, joined before exec.
    pub cgroup: CgroupPlacement,
    /// The container has a user namespace of its own: the process joins it
    /// (last) and becomes its root before it takes the user.
    pub userns: bool,
    /// Where the helper writes the exit (a host directory, opened before
    /// the container's namespaces are entered); `None`: nowhere.
    #[serde(default)]
    pub record_dir: Option<String>,
    /// The process's `oom_score_adj`, the container's; `None`: the
    /// container default.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// Supplementary groups added to the user's own, the container's (see
    /// [`crate::launch::LaunchSpec::groups`]).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What the file name of an exec's exit ends with, after its id.
pub const EXIT_SUFFIX: &str = ".exit.json";

/// How an exec ended, as its helper writes it to
/// `<record_dir>/<exec id>`[`EXIT_SUFFIX`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecExit {
    /// Shell-style exit code (128 + signal when a signal killed it).
    pub exit_code: i32,
    /// The signal that killed it, 0 when it exited.
    pub signal: i32,
    /// Unix time of the exit, in nanoseconds.
    pub finished_at_unix_nanos: i64,
}

/// How many file descriptors come with the header: the init's pidfd, and
/// unless the process gets a terminal its stdin, stdout and stderr and the
/// read ends of the last two.
pub fn fds_expected(tty: bool) -> usize {
    if tty {
        1
    } else {
        6
    }
}

/// The header for a launch spec of `len` bytes; `None` past
/// [`MAX_LAUNCH_BYTES`].
pub fn header(len: usize) -> Option<[u8; HEADER_LEN]> {
    let len = u32::try_from(len).ok().filter(|&l| l <= MAX_LAUNCH_BYTES)?;
    Some(len.to_le_bytes())
}

/// The length a header announces, checked against [`MAX_LAUNCH_BYTES`].
pub fn parse_header(h: [u8; HEADER_LEN]) -> Option<usize> {
    let len = u32::from_le_bytes(h);
    (len <= MAX_LAUNCH_BYTES).then_some(len as usize)
}

/// The control byte for `signal`; `None` for a number that is not one.
pub fn signal_byte(signal: i32) -> Option<u8> {
    u8::try_from(signal).ok().filter(|s| (1..=64).contains(s))
}

/// The signal a control byte asks for; `None` for a byte that is not one.
pub fn byte_signal(b: u8) -> Option<i32> {
    (1..=64).contains(&b).then_some(i32::from(b))
}

/// What the helper writes on its stdout, one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecReport {
    /// The process runs.
    Started {
        /// Its host pid.
        pid: i32,
    },
    /// It could not be set up or executed; nothing runs.
    Failed {
        /// Why.
        message: String,
        /// Shell-style: 127 not found, 126 not executable, 125 otherwise.
        exit_code: i32,
    },
    /// It ended.
    Exited {
        /// Shell-style exit code (128 + signal when a signal killed it).
        exit_code: i32,
        /// The signal that killed it, 0 when it exited.
        signal: i32,
    },
}

/// The environment of an exec: `base` (the container's) with each
/// "KEY=value" of `over` replacing the entry of its KEY, or added after.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |e: &str| -> String { e.split_once('=').map_or(e, |(k, _)| k).into() };
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| {
            let k = key(b);
            !over.iter().any(|o| key(o) == k)
        })
        .cloned()
        .collect();
    for o in over {
        // A KEY given twice: the last one counts, as with `docker exec -e`.
        let k = key(o);
        out.retain(|e| key(e) != k);
        out.push(o.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_overrides_replace_by_key_in_place_of_appending() {
        let base = strings(&["PATH=/bin", "A=1", "B=2"]);
        let out = merge_env(&base, &strings(&["A=x", "C=3", "C=4"]));
        assert_eq!(out, strings(&["PATH=/bin", "B=2", "A=x", "C=4"]));
        assert_eq!(merge_env(&base, &[]), base);
        // A value with '=' in it keeps its key.
        let eq = merge_env(&strings(&["Q=a=b"]), &strings(&["Q=c=d"]));
        assert_eq!(eq, strings(&["Q=c=d"]));
    }

    #[test]
    fn header_round_trips_within_the_limit() {
        let h = header(1234).unwrap();
        assert_eq!(parse_header(h), Some(1234));
        assert_eq!(header(MAX_LAUNCH_BYTES as usize + 1), None);
        assert_eq!(parse_header((MAX_LAUNCH_BYTES + 1).to_le_bytes()), None);
    }

    #[test]
    fn signal_bytes_are_signal_numbers_only() {
        assert_eq!(signal_byte(9), Some(9));
        assert_eq!(signal_byte(0), None);
        assert_eq!(signal_byte(65), None);
        assert_eq!(signal_byte(-1), None);
        assert_eq!(byte_signal(15), Some(15));
        assert_eq!(byte_signal(0), None);
        assert_eq!(byte_signal(200), None);
        assert_eq!(fds_expected(true), 1);
        assert_eq!(fds_expected(false), 6);
    }

    #[test]
    fn reports_and_launch_are_json_lines() {
        let r = ExecReport::Exited {
            exit_code: 137,
            signal: 9,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<ExecReport>(&json).unwrap(), r);
        let l = ExecLaunch {
            exec_id: "e".into(),
            container_id: "c".into(),
            args: vec!["sh".into()],
            env: vec![],
            user: "".into(),
            cwd: "/".into(),
            tty: true,
            terminal_size: (24, 80),
            capabilities: 5,
            seccomp: None,
            allow_privilege_escalation: true,
            strict_groups: true,
            cgroup: CgroupPlacement::Unified("/sys/fs/cgroup/berth/c".into()),
            userns: false,
            record_dir: Some("/var/lib/berth/containers/c/execs".into()),
            oom_score_adj: Some(-500),
            groups: vec!["video".into()],
        };
        let back: ExecLaunch = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(back, l);
    }
}
