//! End to end: a container's place in the host's cgroups (issue 18 A and
//! B): a cgroup of its own in every hierarchy, a device cgroup, and limits
//! it cannot lift from a nested namespace.

mod common;

use std::path::Path;
use std::process::Command;

use berth::v1 as pb;
use common::probe::{import_with_probe, static_probe};
use common::{sh, Agent};

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Starts a container that waits, and returns it with its host pid.
async fn sleeper(agent: &Agent, spec: pb::ContainerSpec) -> (pb::Container, i32) {
    let c = agent.run(spec).await;
    agent.wait_for_output(&c.id, "up").await;
    let pid = agent.inspect(&c.id).await.pid;
    assert!(pid > 0, "no pid for a running container");
    (c, pid)
}

/// On a v1 (or hybrid) host the container is in a cgroup of its own in
/// every hierarchy, not only the six berth sets limits in: left in
/// berthd's cgroup of blkio, devices, name=systemd or the hybrid unified
/// tree, it could create cgroups and change settings there.
#[tokio::test]
async fn a_container_has_a_cgroup_of_its_own_in_every_hierarchy() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (c, pid) = sleeper(&agent, sh("echo up; exec sleep 600")).await;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let lines: Vec<&str> = cgroups.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.ends_with(&format!("/{}", c.id)),
            "the container is not in a cgroup of its own in {line:?}\n{cgroups}"
        );
    }
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// The device cgroup: a process in the container's cgroup may open
/// /dev/null but not /dev/kmsg, even where no `nodev` mount stands in the
/// way. The process is a host shell the test puts into the container's
/// cgroup (the host's /dev has no `nodev`), which isolates the cgroup's
/// part from the mounts'.
#[tokio::test]
async fn devices_outside_the_allow_list_cannot_be_opened() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (c, _) = sleeper(&agent, sh("echo up; exec sleep 600")).await;
    let dir = agent.cgroup_dir(&c.id, "devices");
    if !v2() {
        let list = std::fs::read_to_string(dir.join("devices.list")).unwrap();
        assert!(!list.contains("a *:* rwm"), "{list}");
        assert!(list.contains("c 1:3 rwm"), "{list}");
    }
    let probe = format!(
        "echo $$ > {}/cgroup.procs || exit 9; \
         true < /dev/null && echo null-ok; true < /dev/kmsg && echo kmsg-opened; exit 0",
        dir.display()
    );
    let out = Command::new("sh").args(["-c", &probe]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("null-ok"), "{stdout}{stderr}");
    assert!(!stdout.contains("kmsg-opened"), "{stdout}{stderr}");
    assert!(stderr.contains("not permitted"), "{stderr}");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Attack A, step by step: `probe lift v1|v2` makes a user, mount and
/// cgroup namespace (busybox's `unshare` has no cgroup namespace), maps
/// its root to itself, mounts cgroupfs and writes "no limit" into its own
/// cgroup's memory limit, printing how far it got.
const LIFT_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
static int put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int r = write(fd, text, strlen(text));
    close(fd);
    return r < 0 ? -1 : 0;
}
int main(int argc, char **argv) {
    int v2 = argc > 1 && !strcmp(argv[1], "v2");
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0) {
        printf("unshare: %s\n", strerror(errno));
        return 1;
    }
    put("/proc/self/setgroups", "deny");
    if (put("/proc/self/uid_map", "0 0 1") < 0 || put("/proc/self/gid_map", "0 0 1") < 0) {
        printf("map: %s\n", strerror(errno));
        return 1;
    }
    mkdir("/tmp/cg", 0755);
    if (mount("none", "/tmp/cg", v2 ? "cgroup2" : "cgroup", 0, v2 ? NULL : "memory") < 0) {
        printf("mount: %s\n", strerror(errno));
        return 1;
    }
    puts("mounted");
    if (put(v2 ? "/tmp/cg/memory.max" : "/tmp/cg/memory.limit_in_bytes", v2 ? "max" : "-1") < 0) {
        printf("write: %s\n", strerror(errno));
        return 1;
    }
    puts("LIFTED");
    return 0;
}
"#;

// SecurityOptions grows new fields; the update stays correct when it does.
#[allow(clippy::needless_update)]
/// A container with a 64 MiB limit running the attack, and the file that
/// holds its limit on the host.
async fn lift(agent: &Agent, unconfined: bool) -> (pb::Container, String, std::path::PathBuf) {
    import_with_probe(agent, "lift", static_probe("lift", LIFT_C)).await;
    let version = if v2() { "v2" } else { "v1" };
    let mut spec = sh(&format!("probe {version}; echo up; exec sleep 600"));
    spec.image = "lift".into();
    spec.resources = Some(pb::Resources {
        memory_bytes: 64 << 20,
        ..Default::default()
    });
    if unconfined {
        spec.security = Some(pb::SecurityOptions {
            seccomp: Some(pb::SeccompProfile {
                kind: pb::seccomp_profile::Kind::Unconfined as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let (c, _) = sleeper(agent, spec).await;
    let (out, _) = agent.logs(&c.id).await;
    let file = agent.cgroup_dir(&c.id, "memory").join(if v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    });
    (c, out, file)
}

fn limit(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap().trim().to_string()
}

/// Attack A under the default seccomp profile: stopped at the first step,
/// and the limit holds.
#[tokio::test]
async fn a_default_container_cannot_lift_its_own_limits() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (c, out, file) = lift(&agent, false).await;
    assert!(out.starts_with("unshare: Operation not permitted"), "{out}");
    assert_eq!(limit(&file), (64u64 << 20).to_string());
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Without seccomp, what keeps a container from its own limits is cgroup
/// v2's `nsdelegate` (the VM's mount, and systemd's default): its cgroup is
/// the root of its cgroup namespace, a delegation boundary, so even after
/// mounting cgroupfs from a nested user namespace it cannot write there.
/// cgroup v1 has no such boundary (Docker's containers are as exposed):
/// berthd says so in its log when such a container is made.
#[tokio::test]
async fn unconfined_containers_cannot_lift_their_limits_on_v2_and_are_logged_on_v1() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (c, out, file) = lift(&agent, true).await;
    if v2() {
        assert!(out.starts_with("mounted\nwrite: "), "{out}");
        assert_eq!(limit(&file), (64u64 << 20).to_string());
    } else {
        assert!(
            agent.log().contains("can lift its own limits"),
            "no warning in berthd's log:\n{}",
            agent.log()
        );
    }
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
