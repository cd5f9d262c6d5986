//! End to end: the seccomp filter every container runs under (issue 18, G).

mod common;

use berth::v1 as pb;
use common::image::{busybox_with, Entry};
use common::Agent;
use pb::seccomp_profile::Kind;

/// A static probe: `probe CALL` makes one system call and prints "ok" or
/// the errno's name, so a test can tell EPERM from ENOSYS from success.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long r = -1;
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "keyctl")) r = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    else if (!strcmp(argv[1], "clone3")) r = syscall(SYS_clone3, 0, 0);
    else if (!strcmp(argv[1], "unshare-user")) r = unshare(CLONE_NEWUSER);
    else if (!strcmp(argv[1], "mkdir")) r = mkdir("/probe-dir", 0755);
    else return 2;
    if (r >= 0) { puts("ok"); return 0; }
    puts(errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : errno == EACCES ? "EACCES" : strerror(errno));
    return 1;
}
"#;

/// The probe, compiled with the host's C compiler, statically.
fn probe() -> Vec<u8> {
    common::probe::static_probe("probe", PROBE_C)
}

async fn agent_with_probe() -> Agent {
    let agent = Agent::start().await;
    let image = busybox_with(
        "docker.io/library/busybox:latest",
        vec![Entry::File("bin/probe".into(), probe(), 0o755)],
    );
    agent.import(image, "").await.expect("import");
    agent
}

fn spec(args: &[&str], seccomp: Option<pb::SeccompProfile>) -> pb::ContainerSpec {
    pb::ContainerSpec {
        image: "busybox".into(),
        command: args.iter().map(|s| s.to_string()).collect(),
        security: seccomp.map(|s| pb::SecurityOptions {
            seccomp: Some(s),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kind(k: Kind) -> Option<pb::SeccompProfile> {
    Some(pb::SeccompProfile {
        kind: k as i32,
        ..Default::default()
    })
}

/// What `probe CALL` printed, with its exit code.
async fn run_probe(agent: &Agent, call: &str, seccomp: Option<pb::SeccompProfile>) -> String {
    let (exit, out, err) = agent.run_to_exit(spec(&["probe", call], seccomp)).await;
    assert!(exit.exit_code <= 1, "probe {call}: {exit:?} {err}");
    out.trim().to_string()
}

#[tokio::test]
async fn a_default_container_cannot_make_namespaces_or_use_keyrings() {
    let agent = agent_with_probe().await;
    for profile in [None, kind(Kind::Default)] {
        assert_eq!(
            run_probe(&agent, "unshare-user", profile.clone()).await,
            "EPERM"
        );
        assert_eq!(run_probe(&agent, "keyctl", profile.clone()).await, "EPERM");
        assert_eq!(run_probe(&agent, "clone3", profile.clone()).await, "ENOSYS");
        // What containers do every day still works.
        let (exit, out, err) = agent
            .run_to_exit(spec(
                &[
                    "sh",
                    "-c",
                    "mkdir /d && echo hi > /d/f && cat /d/f && ls / >/dev/null",
                ],
                profile,
            ))
            .await;
        assert_eq!((exit.exit_code, out.as_str()), (0, "hi\n"), "{err}");
    }
    // busybox's own unshare, as a user would type it.
    let (exit, _, err) = agent
        .run_to_exit(spec(&["busybox", "unshare", "-U", "true"], None))
        .await;
    assert_ne!(exit.exit_code, 0);
    assert!(err.contains("not permitted"), "{err}");
    let info = agent
        .agent()
        .info(pb::InfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert!(info.seccomp);
    agent.assert_clean().await;
}

#[tokio::test]
async fn unconfined_lifts_the_filter() {
    let agent = agent_with_probe().await;
    let unconfined = kind(Kind::Unconfined);
    // The same calls now reach the kernel: clone3 without arguments is
    // EFAULT or EINVAL there, never ENOSYS.
    assert_ne!(
        run_probe(&agent, "clone3", unconfined.clone()).await,
        "ENOSYS"
    );
    assert_eq!(run_probe(&agent, "unshare-user", unconfined).await, "ok");
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_docker_format_profile_is_honoured() {
    let agent = agent_with_probe().await;
    let json = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["no_such_call_here"], "action": "SCMP_ACT_ERRNO"}
        ]
    }"#;
    let custom = Some(pb::SeccompProfile {
        kind: Kind::Custom as i32,
        json: json.into(),
        ..Default::default()
    });
    assert_eq!(run_probe(&agent, "mkdir", custom.clone()).await, "EACCES");
    // Everything else is allowed by this profile, unshare too.
    assert_eq!(
        run_probe(&agent, "unshare-user", custom.clone()).await,
        "ok"
    );
    // Inspect names the compiled filter instead of echoing the profile.
    let c = agent.create(spec(&["true"], custom)).await;
    let shown = agent.inspect(&c.id).await.spec.unwrap().security.unwrap();
    let s = shown.seccomp.unwrap();
    assert_eq!(s.kind, Kind::Custom as i32);
    assert!(s.json.is_empty());
    assert!(s.digest.starts_with("sha256:"), "{}", s.digest);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn bad_profiles_are_refused_at_create() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let custom = |json: &str| {
        Some(pb::SeccompProfile {
            kind: Kind::Custom as i32,
            json: json.into(),
            ..Default::default()
        })
    };
    let cases = [
        ("not json", "not a seccomp profile"),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#,
            "seccomp=unconfined",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "not supported yet",
        ),
        ("", "no profile"),
    ];
    for (json, says) in cases {
        let err = agent
            .containers()
            .create(pb::CreateContainerRequest {
                spec: Some(spec(&["true"], custom(json))),
            })
            .await
            .expect_err(json);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{json}: {err}");
        assert!(err.message().contains(says), "{json}: {}", err.message());
    }
    let big = "x".repeat(300 << 10);
    let err = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(spec(&["true"], custom(&big))),
        })
        .await
        .expect_err("a too large profile");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().len() < 200,
        "the error does not echo the input"
    );
    // Nothing was created.
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
    agent.assert_clean().await;
}

#[tokio::test]
async fn berthctl_takes_dockers_security_opt() {
    let agent = agent_with_probe().await;
    let run = |opts: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "probe", "unshare-user"]);
        agent.ctl(&args)
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(text(&run(&[])), "EPERM");
    assert_eq!(text(&run(&["--security-opt", "seccomp=unconfined"])), "ok");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    assert_eq!(text(&run(&["--security-opt", &opt])), "EPERM");
    let refused = run(&["--security-opt", "apparmor=docker-default"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("not supported yet: --security-opt apparmor"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    agent.assert_clean().await;
}
