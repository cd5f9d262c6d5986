//! Exec through the API: what the process gets and joins, ExecSync's
//! limits, the container's state, events, privileges, user namespaces.

use super::*;

#[tokio::test]
async fn output_exit_code_env_user_and_working_dir() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let (code, out, err) = run(
        &agent,
        spec(&c.id, &["sh", "-c", "echo out; echo err >&2; exit 7"]),
    )
    .await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));

    // The container's env, user and working directory, by name too.
    let (_, out, _) = run(
        &agent,
        spec(&c.name, &["sh", "-c", "echo $FOO $(id -u) $(pwd)"]),
    )
    .await;
    assert_eq!(out, "bar 0 /tmp\n");
    let mut s = spec(
        &c.id,
        &["sh", "-c", "echo $FOO $BAR $(id -u):$(id -g) $(pwd)"],
    );
    s.env = vec!["FOO=baz".into(), "BAR=1".into()];
    s.user = "1000:1001".into();
    s.working_dir = "/".into();
    let (_, out, _) = run(&agent, s).await;
    assert_eq!(out, "baz 1 1000:1001 /\n");

    // A command that is not there, or a working directory that is not.
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["nonexistent"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "CANNOT_EXECUTE"),
        "{e:?}"
    );
    let info = e.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("exit_code").map(String::as_str),
        Some("127")
    );
    let mut s = spec(&c.id, &["true"]);
    s.working_dir = "/no/such/dir".into();
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn joins_the_pid_namespace_and_cgroup_and_keeps_seccomp() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let host_ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.pid)).unwrap();
    let (_, out, _) = run(&agent, spec(&c.id, &["readlink", "/proc/self/ns/pid"])).await;
    assert_eq!(out.trim(), host_ns.to_string_lossy());
    // The same cgroup as the init, seen from the same cgroup namespace (a
    // process outside the namespace's root would show "/..").
    let (_, out, _) = run(
        &agent,
        spec(
            &c.id,
            &[
                "sh",
                "-c",
                "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
            ],
        ),
    )
    .await;
    let (mine, init) = out.split_once("--\n").expect("two parts");
    assert_eq!(mine, init);
    assert!(!mine.contains(".."), "{mine}");
    // The init is PID 1 there; the exec sees it.
    let (_, out, _) = run(&agent, spec(&c.id, &["cat", "/proc/1/cmdline"])).await;
    assert_eq!(out, "sleep\u{0}1000\u{0}");
    // The container's seccomp filter applies: no user namespaces.
    let (code, _, err) = run(&agent, spec(&c.id, &["unshare", "-U", "true"])).await;
    assert_ne!(code, 0, "{err}");
    // The host pid of an exec process is in the container's cgroup.
    let (_, out, _) = run(&agent, spec(&c.id, &["sh", "-c", "echo $$"])).await;
    assert!(out.trim().parse::<i32>().unwrap() > 1, "{out}");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn exec_sync_times_out_and_truncates() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "echo before; exec sleep 1000"])),
            timeout_ms: 300,
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert!(r.timed_out);
    let x = r.exit.unwrap();
    assert_eq!((x.signal, x.exit_code), (9, 137));
    assert_eq!(r.stdout, b"before\n");

    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "yes | head -c 100000"])),
            max_output_bytes: 1000,
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert!(r.truncated && !r.timed_out);
    assert_eq!(r.stdout.len(), 1000);
    assert_eq!(r.exit.unwrap().exit_code, 0);

    // Stdin as bytes.
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["wc", "-c"])),
            stdin: vec![b'x'; 70_000],
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "70000");

    // Limits: refused before anything runs.
    for bad in [
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            timeout_ms: 3_600_001,
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            max_output_bytes: (16 << 20) + 1,
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &[])),
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(pb::ExecSpec {
                tty: true,
                ..spec(&c.id, &["true"])
            }),
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&"x".repeat(300), &["true"])),
            ..Default::default()
        },
    ] {
        let e = sync(&agent, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 200, "{e:?}");
    }
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn only_running_containers_take_an_exec() {
    let agent = agent_with(&[]).await;
    let not_running = |e: tonic::Status, state: &str| {
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::FailedPrecondition, "CONTAINER_NOT_RUNNING"),
            "{e:?}"
        );
        let info = e.get_details_error_info().unwrap();
        assert_eq!(info.metadata.get("state").map(String::as_str), Some(state));
    };
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec("nosuch", &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let created = agent.create(common::sh("sleep 1000")).await;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&created.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "created");

    let c = sleeper(&agent).await;
    agent
        .containers()
        .pause(pb::PauseContainerRequest { id: c.id.clone() })
        .await
        .expect("pause");
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "paused");
    agent
        .containers()
        .resume(pb::ResumeContainerRequest { id: c.id.clone() })
        .await
        .expect("resume");
    // A privileged exec on an agent that does not allow them.
    let mut s = spec(&c.id, &["true"]);
    s.privileged = true;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "PRIVILEGED_NOT_ALLOWED")
    );
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "KILL".into(),
        })
        .await
        .expect("kill");
    agent.wait(&c.id).await;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "exited");

    agent.force_remove(&c.id).await;
    agent.force_remove(&created.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn execs_are_announced_on_the_event_stream() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            containers: vec![c.id.clone()],
            actions: vec![
                pb::EventAction::ExecStarted as i32,
                pb::EventAction::ExecExited as i32,
            ],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "exit 5"])),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    let started = common::next_event(&mut events).await;
    let exited = common::next_event(&mut events).await;
    assert_eq!(started.action, pb::EventAction::ExecStarted as i32);
    assert_eq!(exited.action, pb::EventAction::ExecExited as i32);
    for ev in [&started, &exited] {
        assert_eq!(
            (ev.id.as_str(), ev.name.as_str()),
            (c.id.as_str(), c.name.as_str())
        );
        let x = ev.exec.as_ref().expect("exec");
        assert_eq!(x.exec_id, r.exec_id);
        assert_eq!(x.command, vec!["sh", "-c", "exit 5"]);
    }
    assert_eq!(exited.exec.unwrap().exit.unwrap().exit_code, 5);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// The effective capabilities of an exec, as /proc/self/status shows them.
async fn cap_eff(agent: &Agent, s: pb::ExecSpec) -> String {
    let (_, out, _) = run(agent, s).await;
    out.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn privileged_exec_gets_every_capability_where_allowed() {
    let agent = agent_with(&["--allow-privileged"]).await;
    let c = sleeper(&agent).await;
    let status = ["cat", "/proc/self/status"];
    let default = cap_eff(&agent, spec(&c.id, &status)).await;
    let init = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let init_caps = init
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    // The container's capabilities, as its init has them.
    assert_eq!(default, init_caps);
    let mut s = spec(&c.id, &status);
    s.privileged = true;
    let all = cap_eff(&agent, s).await;
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = own
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(all, host, "a privileged exec has what berthd has");
    assert_ne!(all, default);
    // Another user holds none.
    let mut s = spec(&c.id, &status);
    s.user = "1000".into();
    assert_eq!(cap_eff(&agent, s).await, "0000000000000000");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn exec_joins_the_user_namespace_of_a_userns_container() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 15) {
        eprintln!("kernel {release}: no --userns auto (tests/userns.rs proves the refusal)");
        return;
    }
    let agent = agent_with(&[]).await;
    let mut spec_c = common::sh("sleep 1000");
    spec_c.security = Some(pb::SecurityOptions {
        userns: "auto".into(),
        ..Default::default()
    });
    let c = agent.run(spec_c).await;
    let host_ns = std::fs::read_link(format!("/proc/{}/ns/user", c.pid)).unwrap();
    let (code, out, err) = run(
        &agent,
        spec(
            &c.id,
            &[
                "sh",
                "-c",
                "readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map",
            ],
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_ns.to_string_lossy());
    assert_eq!(lines[1], "0");
    let map: Vec<u64> = lines[2]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let m = c.userns.expect("a mapping");
    assert_eq!(map, vec![0, u64::from(m.host_uid), u64::from(m.size)]);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// runc's CVE-2024-21626: while the exec helper's child resolves the
/// working directory and PATH in the container it must hold no descriptor
/// of the host (on cgroup v2 it had the container's cgroup directory open,
/// and `/proc/self/fd/N/../../..` from there is the host's root). Every
/// descriptor number is tried: none leads anywhere.
#[tokio::test]
async fn no_host_descriptor_is_reachable_through_proc_self_fd() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    {
        for n in 3..=16 {
            let mut s = spec(&c.id, &["pwd"]);
            s.working_dir = format!("/proc/self/fd/{n}");
            let r = sync(
                &agent,
                pb::ExecSyncRequest {
                    spec: Some(s),
                    ..Default::default()
                },
            )
            .await;
            match r {
                Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "fd {n}: {e:?}"),
                Ok(r) => panic!(
                    "working directory /proc/self/fd/{n}: the exec ran in {:?}",
                    String::from_utf8_lossy(&r.stdout)
                ),
            }
            let mut s = spec(&c.id, &["true"]);
            s.env = vec![format!("PATH=/proc/self/fd/{n}/../../../../../../../bin")];
            let r = sync(
                &agent,
                pb::ExecSyncRequest {
                    spec: Some(s),
                    ..Default::default()
                },
            )
            .await;
            match r {
                Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "fd {n}: {e:?}"),
                Ok(r) => panic!(
                    "PATH through /proc/self/fd/{n} found a program: exit {:?}",
                    r.exit
                ),
            }
        }
    }
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
