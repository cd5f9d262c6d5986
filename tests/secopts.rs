//! End to end: a container's security options beyond seccomp (issue 18,
//! "small fixes" and "--device"): `cap_add`/`cap_drop`, a read-only root,
//! `--device` passthrough behind the device cgroup, and `--privileged`,
//! which only an agent started with `--allow-privileged` accepts.

mod common;

use berth::v1 as pb;
use common::probe::{import_with_probe, static_probe};
use common::{sh, Agent};

/// What root in the container may do, each as "what errno": a raw socket
/// (CAP_NET_RAW), adjtimex with a bad tick (CAP_SYS_TIME: EPERM without it,
/// EINVAL with it; the clock is never changed) and clock_settime on an
/// invalid clock (allowed by the default seccomp profile only with
/// CAP_SYS_TIME: EPERM from the filter, EINVAL past it).
const CAPS_PROBE: &str = r#"
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

static const char *err(long r) { return r < 0 ? strerror(errno) : "ok"; }

int main(void) {
    printf("raw %s\n", err(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)));
    struct timex tx = {0};
    tx.modes = ADJ_TICK;
    tx.tick = 1;
    printf("adjtimex %s\n", err(syscall(SYS_adjtimex, &tx)));
    struct timespec ts = {0};
    printf("settime %s\n", err(syscall(SYS_clock_settime, -1, &ts)));
    return 0;
}
"#;

fn with_security(mut spec: pb::ContainerSpec, s: pb::SecurityOptions) -> pb::ContainerSpec {
    spec.security = Some(s);
    spec
}

fn caps(add: &[&str], drop: &[&str]) -> pb::SecurityOptions {
    pb::SecurityOptions {
        cap_add: add.iter().map(|s| s.to_string()).collect(),
        cap_drop: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The CapEff line of the container's /proc/self/status, and the probe's.
async fn probe(agent: &Agent, security: pb::SecurityOptions) -> String {
    let mut spec = sh("grep CapEff /proc/self/status; probe");
    spec.image = "caps-probe".into();
    let (exit, out, err) = agent.run_to_exit(with_security(spec, security)).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    out
}

#[tokio::test]
async fn cap_add_and_cap_drop_change_what_root_may_do() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    import_with_probe(&agent, "caps-probe", static_probe("caps", CAPS_PROBE)).await;

    // Docker's 14 capabilities: raw sockets yes, the clock no, and the
    // filter refuses clock_settime.
    let out = probe(&agent, caps(&[], &[])).await;
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("raw ok"), "{out}");
    assert!(out.contains("adjtimex Operation not permitted"), "{out}");
    assert!(out.contains("settime Operation not permitted"), "{out}");

    let out = probe(&agent, caps(&["sys_time"], &["CAP_NET_RAW"])).await;
    assert!(out.contains("CapEff:\t00000000aa0405fb"), "{out}");
    assert!(out.contains("raw Operation not permitted"), "{out}");
    assert!(out.contains("adjtimex Invalid argument"), "{out}");
    assert!(out.contains("settime Invalid argument"), "{out}");

    // Everything dropped but what is added back.
    let out = probe(&agent, caps(&["NET_RAW"], &["ALL"])).await;
    assert!(out.contains("CapEff:\t0000000000002000"), "{out}");
    assert!(out.contains("raw ok"), "{out}");

    // chown needs CAP_CHOWN.
    let spec = sh("touch /tmp/f && chown 1 /tmp/f && echo chowned");
    let (exit, out, err) = agent
        .run_to_exit(with_security(spec.clone(), caps(&[], &["chown"])))
        .await;
    assert_ne!(exit.exit_code, 0, "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    let (exit, out, _) = agent.run_to_exit(spec).await;
    assert_eq!((exit.exit_code, out.trim()), (0, "chowned"));

    // Inspect gives them back as given.
    let c = agent
        .create(with_security(sh("true"), caps(&["SYS_TIME"], &["NET_RAW"])))
        .await;
    let security = c.spec.and_then(|s| s.security).expect("security options");
    assert_eq!(security.cap_add, ["SYS_TIME"]);
    assert_eq!(security.cap_drop, ["NET_RAW"]);
}

async fn create_error(agent: &Agent, spec: pb::ContainerSpec) -> tonic::Status {
    agent
        .containers()
        .create(pb::CreateContainerRequest { spec: Some(spec) })
        .await
        .expect_err("the spec is refused")
}

#[tokio::test]
async fn bad_security_options_are_refused_and_change_nothing() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let device = |host: &str, container: &str, perms: &str| pb::DeviceMapping {
        host_path: host.into(),
        container_path: container.into(),
        permissions: perms.into(),
    };
    let mut bad: Vec<(pb::ContainerSpec, &str)> = vec![
        (
            with_security(sh("true"), caps(&["CAP_FLY"], &[])),
            "CAP_FLY",
        ),
        (
            with_security(sh("true"), caps(&[], &[&"X".repeat(500)])),
            "unknown capability",
        ),
    ];
    for (d, what) in [
        (
            device("/etc/passwd", "/dev/x", ""),
            "not a character or block device",
        ),
        (device("/dev/zero", "/dev/null", ""), "own /dev"),
        (device("/dev/zero", "/etc/zero", ""), "under /dev"),
        (device("/dev/zero", "/dev/x", "rwx"), "permissions"),
        (device("/dev/berth-no-such", "/dev/x", ""), "No such file"),
    ] {
        let mut spec = sh("true");
        spec.devices = vec![d];
        bad.push((spec, what));
    }
    for (spec, what) in bad {
        let status = create_error(&agent, spec).await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(what), "{status:?}");
        assert!(status.message().len() < 300, "{status:?}");
    }
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
}

#[tokio::test]
async fn a_read_only_root_refuses_writes_but_dev_shm_takes_them() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let ro = pb::SecurityOptions {
        read_only_rootfs: true,
        ..Default::default()
    };
    let script = "touch /x; touch /tmp/y; echo ok > /dev/shm/z && cat /dev/shm/z; \
                  grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1";
    let (exit, out, err) = agent
        .run_to_exit(with_security(sh(script), ro.clone()))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(err.contains("touch: /x: Read-only file system"), "{err}");
    assert!(
        err.contains("touch: /tmp/y: Read-only file system"),
        "{err}"
    );
    assert_eq!(out, "ok\nro\n");
    // The default root is writable.
    let (_, out, err) = agent.run_to_exit(sh(script)).await;
    assert_eq!(err, "");
    assert_eq!(out, "ok\nrw\n");
    // Through berthctl.
    let o = agent.ctl(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_passed_device_opens_as_its_permissions_say() {
    let _tun = TunNode::ensure();
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // /dev/net/tun: opening it does nothing until an ioctl, and it is not
    // among the devices every container may open.
    let script = "stat -c '%F %t:%T %a' /dev/mytun; \
                  exec 3</dev/mytun && echo opened-r; \
                  exec 4<>/dev/mytun && echo opened-rw";
    let run = |perms: &str| {
        let mut spec = sh(script);
        spec.devices = vec![pb::DeviceMapping {
            host_path: "/dev/net/tun".into(),
            container_path: "/dev/mytun".into(),
            permissions: perms.into(),
        }];
        spec
    };
    let (exit, out, err) = agent.run_to_exit(run("r")).await;
    assert_ne!(exit.exit_code, 0, "{out}");
    assert_eq!(out, "character special file a:c8 600\nopened-r\n");
    // The device cgroup refuses the write access.
    assert!(err.contains("Operation not permitted"), "{err}");

    let (exit, out, err) = agent.run_to_exit(run("rw")).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.ends_with("opened-r\nopened-rw\n"), "{out}");

    // A node of its own: chmod in the container leaves the host's alone.
    let mut spec = run("rw");
    spec.command[2] = "chmod 666 /dev/mytun && stat -c %a /dev/mytun".into();
    let (_, out, _) = agent.run_to_exit(spec).await;
    assert_eq!(out, "666\n");
    use std::os::unix::fs::PermissionsExt;
    let host = std::fs::metadata("/dev/net/tun")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(host & 0o777, 0o600);

    // Through berthctl, Docker's spelling.
    let o = agent.ctl(&[
        "run",
        "--rm",
        "--device",
        "/dev/zero:/dev/sub/z:r",
        "busybox",
        "head",
        "-c",
        "1",
        "/dev/sub/z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(o.stdout, [0u8]);
}

#[tokio::test]
async fn privileged_needs_the_operators_opt_in() {
    let privileged = pb::SecurityOptions {
        privileged: true,
        ..Default::default()
    };
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let status = create_error(&agent, with_security(sh("true"), privileged.clone())).await;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("--allow-privileged"),
        "{status:?}"
    );
    drop(agent);

    let agent = Agent::start_with(&["--allow-privileged"]).await;
    agent.import_busybox().await;
    // Not with capabilities or a seccomp profile, which it overrides.
    let mut spec = with_security(sh("true"), privileged.clone());
    spec.security.as_mut().unwrap().cap_drop = vec!["CHOWN".into()];
    let status = create_error(&agent, spec).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                  test -c /dev/kmsg && echo kmsg; \
                  grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  grep -c ' /proc/kcore ' /proc/mounts; exit 0";
    let (exit, out, err) = agent
        .run_to_exit(with_security(sh(script), privileged))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let mut lines = out.lines();
    let cap_eff = lines.next().unwrap_or_default();
    // Every capability berthd has (its own, the test's: this host may
    // withhold some from root).
    let ours = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_string();
    assert_eq!(cap_eff, ours, "{out}");
    assert!(ours.as_str() > "CapEff:\t00000000a80425fb");
    assert_eq!(lines.next(), Some("Seccomp:\t0"), "{out}");
    assert_eq!(lines.next(), Some("kmsg"), "the host's devices: {out}");
    assert_eq!(lines.next(), Some("rw"), "/sys: {out}");
    assert_eq!(lines.next(), Some("0"), "nothing masked: {out}");
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("privileged container")),
        "{log}"
    );

    // The same agent still gives an ordinary container the defaults.
    let (_, out, _) = agent.run_to_exit(sh(script)).await;
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!out.contains("kmsg"), "{out}");
}

/// The host's /dev/net/tun for the device tests: a system without udev's
/// static nodes (the cgroup v2 VM) has none until something loads the tun
/// module, which opening the node does. Made (c 10:200, 0600, as udev
/// makes it) when missing, and removed again.
struct TunNode {
    made: bool,
}

impl TunNode {
    fn ensure() -> TunNode {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::Path::new("/dev/net/tun");
        if path.exists() {
            return TunNode { made: false };
        }
        std::fs::create_dir_all("/dev/net").expect("creating /dev/net");
        mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(10, 200),
        )
        .expect("making /dev/net/tun");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod /dev/net/tun");
        TunNode { made: true }
    }
}

impl Drop for TunNode {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file("/dev/net/tun");
        }
    }
}
