//! End to end: cgroup resource limits, on whichever cgroup version the host runs.

mod common;

use std::time::Duration;

use berth::v1 as pb;
use common::{sh, Agent};

fn v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn with_limits(mut spec: pb::ContainerSpec, r: pb::Resources) -> pb::ContainerSpec {
    spec.resources = Some(r);
    spec
}

#[tokio::test]
async fn limits_are_visible_in_the_containers_cgroup() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // The container sees its own cgroup at /sys/fs/cgroup (cgroup namespace).
    let script = if v2() {
        "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max \
         /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpuset.cpus; grep -c . /proc/self/cgroup"
    } else {
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
         /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
         /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus"
    };
    let spec = with_limits(
        sh(script),
        pb::Resources {
            memory_bytes: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: 32,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            ..Default::default()
        },
    );
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    if v2() {
        assert_eq!(lines[..5], ["50000 100000", "67108864", "32", "20", "0"]);
    } else {
        assert_eq!(lines, ["50000", "100000", "67108864", "32", "512", "0"]);
    }
    agent.assert_clean().await;
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_an_oom_kill() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            actions: vec![pb::EventAction::Exited as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // `tail` keeps an endless line in memory.
    let spec = with_limits(
        sh("echo start; tail /dev/zero"),
        pb::Resources {
            memory_bytes: 32 << 20,
            ..Default::default()
        },
    );
    let (exit, out, _) = agent.run_to_exit(spec).await;
    assert!(exit.oom_killed, "not reported as OOM: {exit:?}");
    assert_eq!((exit.exit_code, exit.signal), (137, 9));
    assert_eq!(out, "start\n");
    let ev = tokio::time::timeout(Duration::from_secs(30), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ev.exit.unwrap().oom_killed, "exit event does not say OOM");
    // A container within its limit is not flagged.
    let spec = with_limits(
        sh("head -c 1000000 /dev/zero | wc -c"),
        pb::Resources {
            memory_bytes: 32 << 20,
            ..Default::default()
        },
    );
    let (exit, _, _) = agent.run_to_exit(spec).await;
    assert!(!exit.oom_killed);
    assert_eq!(exit.exit_code, 0);
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let spec = with_limits(
        sh("bomb() { bomb | bomb & }; bomb; echo started; sleep 1000"),
        pb::Resources {
            pids_limit: 24,
            ..Default::default()
        },
    );
    let c = agent.run(spec).await;
    let pids_dir = agent.cgroup_dir(&c.id, "pids");
    let mut peak = 0;
    for _ in 0..50 {
        let cur: u64 = std::fs::read_to_string(pids_dir.join("pids.current"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        peak = peak.max(cur);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peak > 1, "the bomb did not run");
    assert!(peak <= 24, "pids.current reached {peak} with a limit of 24");
    let events: u64 = std::fs::read_to_string(pids_dir.join("pids.events"))
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(events > 0, "no fork was refused");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn bad_limits_are_refused_and_create_nothing() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    for r in [
        pb::Resources {
            memory_bytes: 1024,
            ..Default::default()
        },
        pb::Resources {
            nano_cpus: 1_000_000_000_000,
            ..Default::default()
        },
        pb::Resources {
            cpuset_cpus: "x-y".into(),
            ..Default::default()
        },
        pb::Resources {
            pids_limit: -5,
            ..Default::default()
        },
        pb::Resources {
            memory_swap_bytes: 1 << 30,
            ..Default::default()
        },
    ] {
        let err = agent
            .containers()
            .run(pb::RunContainerRequest {
                spec: Some(with_limits(sh("true"), r.clone())),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{r:?}: {err}");
    }
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
    assert_eq!(
        std::fs::read_dir(agent.state_dir.join("containers"))
            .unwrap()
            .count(),
        0
    );
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_process_put_into_a_containers_cgroup_from_outside_ends_with_the_container() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.run(sh("echo up; exec sleep 600")).await;
    agent.wait_for_output(&c.id, "up").await;
    // A host process, outside the container's PID namespace, joins its
    // cgroup in every hierarchy berth uses: the kernel will not end it
    // with the container's init, and it keeps the cgroup from going.
    let mut straggler = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let dirs: Vec<_> = agent
        .cgroups()
        .into_iter()
        .filter(|d| d.ends_with(&c.id))
        .collect();
    assert!(!dirs.is_empty(), "no cgroup for {}", c.id);
    for d in &dirs {
        std::fs::write(d.join("cgroup.procs"), straggler.id().to_string()).unwrap();
    }
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "SIGKILL".into(),
        })
        .await
        .unwrap();
    agent.wait(&c.id).await;
    let mut status = None;
    common::eventually(20, async || {
        status = straggler.try_wait().unwrap();
        status.is_some()
    })
    .await;
    let Some(status) = status else {
        let _ = straggler.kill();
        let _ = straggler.wait();
        panic!("the process in the container's cgroup outlived the container");
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    agent.assert_clean().await;
}
