//! End to end: what a container's process does not inherit from berthd
//! (issue 18): its session keyring, capabilities beyond the bounding set,
//! its OOM protection, its resource limits; and Docker's masked paths.

mod common;

use std::path::Path;
use std::process::Command;

use common::probe::{import_with_probe, static_probe};
use common::{sh, Agent};

/// What the probe prints about the session keyring it has: its id, whether
/// the key named `argv[1]` is found by searching it, whether the key with
/// id `argv[2]` can be read.
const KEYRING_PROBE: &str = r#"
#include <errno.h>
#include <linux/keyctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    long session = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    printf("session %ld\n", session);
    long found = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[1], 0);
    printf("search %s\n", found < 0 ? strerror(errno) : "found");
    char buf[64];
    long n = syscall(SYS_keyctl, KEYCTL_READ, strtol(argv[2], NULL, 10), buf, sizeof buf);
    printf("read %s\n", n < 0 ? strerror(errno) : "ok");
    return 0;
}
"#;

/// keyctl(2) for this thread (the test's, which spawns berthd).
fn keyctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> libc::c_long {
    // SAFETY: the operations used take integers or NUL-terminated strings
    // that outlive the call.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, 0 as libc::c_ulong) }
}

/// A container never shares berthd's session keyring (issue 18, E): the
/// test gives its thread a session keyring of its own with a secret in it,
/// starts berthd from that thread (so berthd, and before the fix every
/// container, has that keyring), and the container neither has that
/// keyring nor finds nor reads the key.
#[tokio::test]
async fn a_container_has_a_session_keyring_of_its_own() {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    let description = format!("berth-hardening-{}", std::process::id());
    let c_name = std::ffi::CString::new(format!("{description}-ring")).unwrap();
    let joined = keyctl(KEYCTL_JOIN_SESSION_KEYRING, c_name.as_ptr() as _, 0);
    assert!(
        joined > 0,
        "joining a session keyring: {}",
        std::io::Error::last_os_error()
    );
    let ours = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING as _, 0);
    assert_eq!(ours, joined);
    let c_type = std::ffi::CString::new("user").unwrap();
    let c_desc = std::ffi::CString::new(description.clone()).unwrap();
    let secret = b"berthd's secret";
    // SAFETY: valid strings and payload, alive for the call.
    let key = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c_type.as_ptr(),
            c_desc.as_ptr(),
            secret.as_ptr(),
            secret.len(),
            KEY_SPEC_SESSION_KEYRING as libc::c_int,
        )
    };
    assert!(key > 0, "add_key: {}", std::io::Error::last_os_error());

    // Spawned from this thread: berthd has the keyring.
    let agent = Agent::start().await;
    import_with_probe(
        &agent,
        "keyring-probe",
        static_probe("keyring", KEYRING_PROBE),
    )
    .await;
    let mut spec = sh(&format!("probe {description} {key}"));
    spec.image = "keyring-probe".into();
    // The default seccomp profile refuses keyctl outright; the keyring of
    // its own is what protects a container that is allowed the call.
    spec.security = Some(berth::v1::SecurityOptions {
        seccomp: Some(berth::v1::SeccompProfile {
            kind: berth::v1::seccomp_profile::Kind::Unconfined as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let mut lines = out.lines();
    let session: i64 = lines
        .next()
        .and_then(|l| l.strip_prefix("session "))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("probe output: {out}"));
    assert!(session > 0, "the container has no session keyring: {out}");
    assert_ne!(
        session, ours,
        "the container shares berthd's session keyring"
    );
    assert_eq!(
        lines.next(),
        Some("search Required key not available"),
        "{out}"
    );
    let read = lines.next().unwrap_or_default();
    assert!(read.starts_with("read ") && read != "read ok", "{out}");
    agent.assert_clean().await;
}

/// Capability sets of the calling thread (capset(2), version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Raises `cap` in this thread's inheritable and ambient sets, so berthd,
/// spawned from it, runs with an ambient capability.
fn raise_ambient(cap: u32) {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data structs, as version 3 wants.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    data[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
    // SAFETY: as above.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
    // SAFETY: integer arguments.
    let raised = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    assert_eq!(
        raised,
        0,
        "raising an ambient capability: {}",
        std::io::Error::last_os_error()
    );
}

/// The container's inheritable and ambient sets are empty, even when berthd
/// runs with an ambient capability (CAP_CHOWN, which the container's
/// bounding set keeps).
#[tokio::test]
async fn inheritable_and_ambient_capabilities_are_empty() {
    const CAP_CHOWN: u32 = 0;
    raise_ambient(CAP_CHOWN);
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent
        .run_to_exit(sh("grep -E '^Cap(Inh|Amb|Bnd)' /proc/self/status"))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    assert_eq!(field("CapInh:"), "0000000000000000", "{out}");
    assert_eq!(field("CapAmb:"), "0000000000000000", "{out}");
    // The bounding set still holds Docker's defaults (CAP_CHOWN among them).
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    assert_ne!(bounding & 1 << CAP_CHOWN, 0, "{out}");
    agent.assert_clean().await;
}

/// Whether this process has CAP_SYS_RESOURCE (root in a confined
/// environment may not), which lowering an OOM score and raising a hard
/// limit need.
fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff");
    eff & 1 << CAP_SYS_RESOURCE != 0
}

/// berthd protects itself from the OOM killer as dockerd does (-500), so
/// under memory pressure a container's process goes before the agent that
/// records its exit.
#[tokio::test]
async fn berthd_is_protected_from_the_oom_killer() {
    let agent = Agent::start().await;
    let score = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", agent.pid())).unwrap();
    if has_sys_resource() {
        assert_eq!(score.trim(), "-500");
    } else {
        // Lowering a score takes CAP_SYS_RESOURCE (this sandbox's root
        // lacks it): berthd runs on and says why.
        let ours = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        assert_eq!(score, ours);
        assert!(
            agent
                .log()
                .contains("cannot set berthd's oom_score_adj to -500"),
            "{}",
            agent.log()
        );
    }
}

/// A container starts at oom_score_adj 0 and with the default limits
/// (runtime::process), whatever berthd runs with: here -500 (or, where
/// this test may not lower a score, +500) and other limits, set on berthd
/// before it starts the container's monitor (no spare monitors, which
/// would have been started before).
#[tokio::test]
async fn oom_score_and_limits_are_not_berthds() {
    let privileged = has_sys_resource();
    let agent = Agent::start_with(&["--spare-monitors", "0"]).await;
    agent.import_busybox().await;
    let pid = agent.pid();
    let berthd_score = if privileged { "-500" } else { "500" };
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), berthd_score)
        .expect("berthd's oom_score_adj");
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `limit` outlives the call; no old value is asked for.
        let r = unsafe { libc::prlimit64(pid as i32, resource, &limit, std::ptr::null_mut()) };
        assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    };
    let (_, core_hard) = current_limit(libc::RLIMIT_CORE);
    let (_, stack_hard) = current_limit(libc::RLIMIT_STACK);
    set(libc::RLIMIT_NOFILE, 2048, 4096);
    set(libc::RLIMIT_CORE, core_hard, core_hard);
    set(libc::RLIMIT_STACK, stack_hard.min(16 << 20), stack_hard);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap(),
        format!("{berthd_score}\n")
    );

    let (exit, out, err) = agent
        .run_to_exit(sh(
            "cat /proc/self/oom_score_adj; ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Ss",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    // Without CAP_SYS_RESOURCE a hard limit can only go down: berthd's.
    let nofile_hard = if privileged { 524288 } else { 4096 };
    let stack_soft_kib = (8u64 << 20).min(stack_hard) >> 10;
    assert_eq!(
        out,
        format!("0\n1024\n{nofile_hard}\n0\n{stack_soft_kib}\n")
    );
    agent.assert_clean().await;
}

/// `--oom-score-adj`: the container's init and its execs get it (a
/// raise, which needs no privilege); out of range is refused at Create.
#[tokio::test]
async fn a_containers_own_oom_score_adj_holds_for_it_and_its_execs() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let run = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "scored",
        "--network",
        "none",
        "--oom-score-adj",
        "300",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/oom_score_adj; exec sleep 1000",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let exec = agent.ctl(&["exec", "scored", "cat", "/proc/self/oom_score_adj"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "300\n", "{exec:?}");
    let logs = agent.ctl(&["logs", "scored"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "300\n");
    let inspect = agent.inspect("scored").await;
    assert_eq!(inspect.spec.and_then(|s| s.oom_score_adj), Some(300));
    let bad = agent.ctl(&["run", "--rm", "--oom-score-adj", "1001", "busybox", "true"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("between -1000 and 1000"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    agent.force_remove("scored").await;
    agent.assert_clean().await;
}

/// This process's soft and hard limit of `resource`.
fn current_limit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut limit = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` outlives the call.
    let r = unsafe { libc::getrlimit64(resource, &mut limit) };
    assert_eq!(r, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

/// Docker's masked paths (moby's oci/defaults.go), each one this kernel
/// has: a mount point in the container, and empty to read.
#[tokio::test]
async fn every_masked_path_is_masked() {
    let masked = [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ];
    let readonly = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, mountinfo, err) = agent.run_to_exit(sh("cat /proc/self/mountinfo")).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let present: Vec<&str> = masked
        .iter()
        .chain(&readonly)
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(present.contains(&"/proc/interrupts"), "{present:?}");
    for path in &present {
        let line = mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(path))
            .unwrap_or_else(|| panic!("{path} is not masked:\n{mountinfo}"));
        if readonly.contains(path) {
            let opts = line.split(' ').nth(5).unwrap_or_default();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "{path} is writable: {line}"
            );
        }
    }

    // What each mask reads as: nothing.
    let script: String = masked
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); \
                 else echo {p} $(cat {p} | wc -c); fi; "
            )
        })
        .collect();
    let (exit, out, err) = agent.run_to_exit(sh(&script)).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    for line in out.lines() {
        assert!(line.ends_with(" 0"), "{line} is not empty:\n{out}");
    }
    agent.assert_clean().await;
}

/// Seccomp, until berthd writes profiles: the monitor driven directly, as
/// berthd drives it (a launch spec on stdin, reports on stdout), with a
/// file of programs in the format berthd writes.
#[cfg(target_arch = "x86_64")]
mod seccomp {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    /// `struct sock_filter`.
    #[derive(Clone, Copy)]
    struct Insn(u16, u8, u8, u32);

    const LOAD_NR: Insn = Insn(0x20, 0, 0, 0); // BPF_LD|BPF_W|BPF_ABS, seccomp_data.nr
    const ALLOW: Insn = Insn(0x06, 0, 0, 0x7fff_0000); // BPF_RET, SECCOMP_RET_ALLOW

    /// `BPF_JMP|BPF_JEQ|BPF_K`.
    fn jeq(k: i64, jt: u8) -> Insn {
        Insn(0x15, jt, 0, k as u32)
    }

    /// `SECCOMP_RET_ERRNO` with `errno`.
    fn errno(errno: i32) -> Insn {
        Insn(0x06, 0, 0, 0x0005_0000 | errno as u32)
    }

    /// The file: per program a little-endian count, then the instructions
    /// in native byte order.
    fn encode(programs: &[Vec<Insn>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in programs {
            out.extend((p.len() as u32).to_le_bytes());
            for Insn(code, jt, jf, k) in p {
                out.extend(code.to_ne_bytes());
                out.extend([*jt, *jf]);
                out.extend(k.to_ne_bytes());
            }
        }
        out
    }

    /// Two programs: mkdir and mkdirat fail with EPERM, chdir with EACCES.
    fn two_programs() -> Vec<u8> {
        encode(&[
            vec![
                LOAD_NR,
                jeq(libc::SYS_mkdir, 2),
                jeq(libc::SYS_mkdirat, 1),
                ALLOW,
                errno(libc::EPERM),
            ],
            vec![LOAD_NR, jeq(libc::SYS_chdir, 1), ALLOW, errno(libc::EACCES)],
        ])
    }

    /// Runs `script` in a container of the monitor berthd installed, on
    /// berthd's busybox layer, with the seccomp file `profile` (if any).
    /// The first report's kind and message, and the container's output.
    fn run(agent: &Agent, name: &str, profile: Option<&[u8]>, script: &str) -> (String, String) {
        let layers = agent.state_dir.join("images/layers");
        let layer = std::fs::read_dir(&layers)
            .unwrap()
            .next()
            .expect("the busybox layer")
            .unwrap()
            .path();
        let dir = agent.dir.join(name);
        for sub in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let profile_path = profile.map(|bytes| {
            let p = dir.join("seccomp.bpf");
            std::fs::write(&p, bytes).unwrap();
            p
        });
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let spec = serde_json::json!({
            "id": name,
            "dir": s(&dir),
            "rootfs": {
                "layers": [s(&layer)],
                "upper": s(&dir.join("upper")),
                "work": s(&dir.join("work")),
                "target": s(&dir.join("rootfs")),
            },
            "args": ["sh", "-c", script],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": "",
            "hostname": name,
            "netns": null,
            "seccomp": profile_path.as_deref().map(s),
            "cgroup": {"Hierarchies": []},
            "oom_events": null,
            "cgroup_version": 1,
            "cgroup_v1_controllers": [],
            "log_path": s(&dir.join("container.log")),
            "log_max_bytes": 1 << 20,
            "exit_path": s(&dir.join("exit.json")),
        });
        let mut monitor = Command::new(agent.state_dir.join("bin/berth-monitor"))
            .arg("__monitor")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the monitor");
        let mut stdin = monitor.stdin.take().unwrap();
        stdin.write_all(spec.to_string().as_bytes()).unwrap();
        drop(stdin);
        let mut first = String::new();
        BufReader::new(monitor.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The monitor ends once the container has (or once it failed).
        assert!(monitor.wait().unwrap().success());
        let report: serde_json::Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("report {first:?}: {e}"));
        let (kind, body) = report.as_object().unwrap().iter().next().unwrap();
        let message = body["message"].as_str().unwrap_or_default().to_string();
        // CRI log lines: "<time> <stream> <tag> <message>".
        let log = std::fs::read_to_string(dir.join("container.log")).unwrap_or_default();
        let output = log
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .map(|m| format!("{m}\n"))
            .collect();
        (format!("{kind}: {message}"), output)
    }

    const SCRIPT: &str = "mkdir /made 2>&1; echo mkdir=$?; cd /tmp 2>&1; echo cd=$?";

    #[tokio::test]
    async fn every_program_of_the_file_is_installed_before_exec() {
        let agent = Agent::start().await;
        agent.import_busybox().await;

        let (report, out) = run(&agent, "unconfined", None, SCRIPT);
        assert_eq!(report, "started: ");
        assert_eq!(out, "mkdir=0\ncd=0\n");

        // The init's own mkdirs and chdirs (mount points, working
        // directory) are not filtered; the container's are, by both.
        let (report, out) = run(&agent, "confined", Some(&two_programs()), SCRIPT);
        assert_eq!(report, "started: ", "{out}");
        assert!(out.contains("Operation not permitted\nmkdir=1\n"), "{out}");
        assert!(
            out.contains("Permission denied\ncd=") && !out.contains("cd=0"),
            "{out}"
        );
        agent.assert_clean().await;
    }

    #[tokio::test]
    async fn a_bad_file_or_program_fails_the_start() {
        let agent = Agent::start().await;
        agent.import_busybox().await;
        let whole = two_programs();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            (
                "cut",
                whole[..whole.len() - 3].to_vec(),
                "program 1 is cut short",
            ),
            ("empty", Vec::new(), "no program in the file"),
            (
                "huge",
                vec![0; (1 << 20) + 1],
                "1048577 bytes, more than the 1 MiB allowed",
            ),
            // BPF_RET with no return value source: the kernel's checker
            // refuses it.
            (
                "refused",
                encode(&[vec![Insn(0xffff, 0, 0, 0)]]),
                "installing seccomp program 0 of 1: Invalid argument",
            ),
        ];
        for (name, bytes, why) in cases {
            let (report, out) = run(&agent, name, Some(&bytes), "echo ran");
            assert!(report.starts_with("failed: "), "{name}: {report}");
            assert!(report.contains(why), "{name}: {report}");
            assert_eq!(out, "", "{name}: the container ran");
        }
        agent.assert_clean().await;
    }
}

/// Puts a host device node's mode and owner back, whatever the test did.
struct RestoreNode {
    path: &'static str,
    meta: std::fs::Metadata,
}

impl Drop for RestoreNode {
    fn drop(&mut self) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let _ = std::fs::set_permissions(
            self.path,
            std::fs::Permissions::from_mode(self.meta.mode() & 0o7777),
        );
        let _ = std::os::unix::fs::chown(self.path, Some(self.meta.uid()), Some(self.meta.gid()));
    }
}

/// Container root may chmod and chown its /dev/null and /dev/zero (they are
/// its own); the host's stay as they were, and the container's still work.
#[tokio::test]
async fn changing_the_standard_devices_leaves_the_hosts_alone() {
    use std::os::unix::fs::MetadataExt;
    let guards: Vec<RestoreNode> = ["/dev/null", "/dev/zero"]
        .into_iter()
        .map(|path| RestoreNode {
            path,
            meta: std::fs::metadata(path).expect("host device node"),
        })
        .collect();
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent
        .run_to_exit(sh(
            "echo gone > /dev/null && head -c 3 /dev/zero | wc -c && \
             chmod 000 /dev/null && chown 1:1 /dev/zero && stat -c '%a %u:%g' /dev/null /dev/zero",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["3", "0", "0:0", "666", "1:1"],
        "{out}"
    );
    for g in &guards {
        let now = std::fs::metadata(g.path).expect("host device node");
        assert_eq!(
            (now.mode(), now.uid(), now.gid()),
            (g.meta.mode(), g.meta.uid(), g.meta.gid()),
            "the host's {} changed",
            g.path
        );
    }
}
