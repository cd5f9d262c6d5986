//! What `top` shows of a process: read from /proc/PID/stat, status and
//! cmdline. The parsing is pure and unit-tested; [`read`] only reads.
//!
//! A process can end between the listing of its cgroup and these reads:
//! then it is left out, not an error.

use crate::cgroup::stats::TICK_NANOS;

/// One process, as `top` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    /// Host pid.
    pub pid: i32,
    /// Pid in the innermost pid namespace (NSpid's last figure); 0 unknown.
    pub ns_pid: i32,
    /// Parent's host pid.
    pub ppid: i32,
    /// Real uid.
    pub uid: u32,
    /// State letter.
    pub state: char,
    /// utime + stime, nanoseconds.
    pub cpu_nanos: u64,
    /// Resident set, bytes.
    pub rss_bytes: u64,
    /// Start time, nanoseconds after boot.
    pub start_after_boot_nanos: u64,
    /// The command line, space-separated and capped; `[comm]` without one.
    pub command: String,
}

/// Longest command line kept, in bytes.
pub const MAX_COMMAND: usize = 4096;

/// Fields of /proc/PID/stat after the `(comm)`: state, ppid, utime+stime
/// (in ticks), starttime (ticks after boot); and the comm itself. The comm
/// may hold spaces and parentheses: it ends at the *last* ')'.
pub fn parse_stat(stat: &str) -> Option<(String, char, i32, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let cpu = field(14)?.saturating_add(field(15)?);
    Some((comm, state, ppid, cpu, field(22)?))
}

/// From /proc/PID/status: the real uid, the pid in the innermost pid
/// namespace (0 when the kernel has no NSpid line, before 4.1), and
/// VmRSS in bytes (0 for kernel threads and zombies).
pub fn parse_status(status: &str) -> (u32, i32, u64) {
    let mut uid = 0;
    let mut ns_pid = 0;
    let mut rss = 0;
    for l in status.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        match k {
            "Uid" => {
                uid = v
                    .split_whitespace()
                    .next()
                    .and_then(|u| u.parse().ok())
                    .unwrap_or(0)
            }
            "NSpid" => {
                ns_pid = v
                    .split_whitespace()
                    .last()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0)
            }
            "VmRSS" => {
                rss = v
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
                    .saturating_mul(1024)
            }
            _ => {}
        }
    }
    (uid, ns_pid, rss)
}

/// /proc/PID/cmdline (NUL-separated) as one line, capped at [`MAX_COMMAND`]
/// bytes on a character boundary; `[comm]` when empty (kernel threads,
/// zombies).
pub fn command(cmdline: &[u8], comm: &str) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        return format!("[{comm}]");
    }
    let mut s = args.join(" ");
    if s.len() > MAX_COMMAND {
        let mut end = MAX_COMMAND;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Reads process `pid`; None when it is gone.
pub fn read(pid: i32) -> Option<ProcInfo> {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (comm, state, ppid, ticks, start) = parse_stat(&stat)?;
    let (uid, ns_pid, rss_bytes) =
        parse_status(&std::fs::read_to_string(dir.join("status")).unwrap_or_default());
    // cmdline is unbounded (a process can set a huge one): read a bounded prefix.
    let cmdline = read_prefix(&dir.join("cmdline"), MAX_COMMAND + 1);
    Some(ProcInfo {
        pid,
        ns_pid,
        ppid,
        uid,
        state,
        cpu_nanos: ticks.saturating_mul(TICK_NANOS),
        rss_bytes,
        start_after_boot_nanos: start.saturating_mul(TICK_NANOS),
        command: command(&cmdline, &comm),
    })
}

fn read_prefix(path: &std::path::Path, max: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max as u64).read_to_end(&mut buf);
    }
    buf
}

/// The host's boot time, Unix seconds (/proc/stat btime).
pub fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_tricky_comm() {
        // A real line (busybox sleep in a container), comm changed to hold
        // ") (" as a process may name itself.
        let stat = "4242 (sl) (eep) S 4240 4242 4242 0 -1 4194560 93 0 0 0 12 7 0 0 20 0 1 0 \
                    1311234 1441792 19 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (comm, state, ppid, cpu, start) = parse_stat(stat).unwrap();
        assert_eq!(comm, "sl) (eep");
        assert_eq!((state, ppid, cpu, start), ('S', 4240, 19, 1_311_234));
        assert!(parse_stat("12 (x) R").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
                      Pid:\t4242\nPPid:\t4240\nUid:\t1000\t1000\t1000\t1000\n\
                      Gid:\t0\t0\t0\t0\nNSpid:\t4242\t7\nVmRSS:\t     512 kB\n";
        assert_eq!(parse_status(status), (1000, 7, 512 * 1024));
        // Kernel threads have no VmRSS; old kernels no NSpid.
        assert_eq!(parse_status("Uid:\t0\t0\t0\t0\n"), (0, 0, 0));
    }

    #[test]
    fn command_lines() {
        assert_eq!(command(b"sleep\x00100\0", "sleep"), "sleep 100");
        assert_eq!(command(b"", "kworker/0:1"), "[kworker/0:1]");
        let long = "é".repeat(MAX_COMMAND);
        let c = command(long.as_bytes(), "x");
        assert!(c.len() <= MAX_COMMAND && c.len() > MAX_COMMAND - 2);
    }

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(me.rss_bytes > 0 && !me.command.is_empty());
        assert!(read(-1).is_none());
    }
}
