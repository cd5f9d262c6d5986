//! End to end: what a container's process does not inherit from berthd
//! (issue 18): its session keyring, capabilities beyond the bounding set,
//! its OOM protection, its resource limits; and Docker's masked paths.

mod common;

use std::path::Path;
use std::process::Command;

use common::image::{busybox_with, Entry};
use common::{sh, Agent};

/// Compiles the C program `source` statically (Debian's gcc and glibc) and
/// returns the executable, for an image that has no libc.
fn static_probe(name: &str, source: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join(format!("{name}.c"));
    let exe = dir.path().join(name);
    std::fs::write(&c, source).expect("writing the probe's source");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("running cc (install gcc)");
    assert!(
        out.status.success(),
        "compiling {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&exe).expect("reading the probe")
}

/// Imports busybox with the probe at /bin/probe, as image `name`.
async fn import_with_probe(agent: &Agent, name: &str, probe: Vec<u8>) {
    agent
        .import(
            busybox_with(
                &format!("docker.io/library/{name}:latest"),
                vec![Entry::File("bin/probe".into(), probe, 0o755)],
            ),
            "",
        )
        .await
        .expect("importing the probe image");
}

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
