//! End to end: restart policies, pause/resume, live update, list-then-watch.

mod common;

use std::time::Duration;

use berth::v1 as pb;
use common::{sh, Agent};
use nix::sys::signal::Signal;

fn policy(mode: pb::restart_policy::Mode, max_retries: u32) -> Option<pb::RestartPolicy> {
    Some(pb::RestartPolicy {
        mode: mode as i32,
        max_retries,
    })
}

#[tokio::test]
async fn on_failure_restarts_with_backoff_up_to_max_retries() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            actions: vec![
                pb::EventAction::Restarting as i32,
                pb::EventAction::Exited as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut spec = sh("echo run; exit 3");
    spec.restart_policy = policy(pb::restart_policy::Mode::OnFailure, 2);
    let c = agent.run(spec).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = common::next_event(&mut events).await;
        seen.push((
            pb::EventAction::try_from(e.action).unwrap(),
            e.restart_attempt,
            e.restart_delay_ms,
        ));
    }
    use pb::EventAction::{Exited, Restarting};
    assert_eq!(
        seen,
        [
            (Exited, 0, 0),
            (Restarting, 1, 100),
            (Exited, 0, 0),
            (Restarting, 2, 200),
            (Exited, 0, 0)
        ]
    );
    // No third restart.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), events.message())
            .await
            .is_err()
    );
    let got = agent.inspect(&c.id).await;
    assert_eq!(got.state, pb::ContainerState::Exited as i32);
    assert_eq!((got.restart_count, got.start_count), (2, 3));
    assert_eq!(got.exit.unwrap().exit_code, 3);
    assert_eq!(agent.logs(&c.id).await.0, "run\nrun\nrun\n");
    // A start through the API resets the count.
    let restarted = agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    assert_eq!(restarted.restart_count, 0);
    let _ = agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: c.id.clone(),
            force: true,
            ..Default::default()
        })
        .await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn always_and_unless_stopped_across_agent_restarts() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let mut ids = Vec::new();
    for (name, mode) in [
        ("always", pb::restart_policy::Mode::Always),
        ("unless", pb::restart_policy::Mode::UnlessStopped),
        ("stopped", pb::restart_policy::Mode::UnlessStopped),
    ] {
        let mut spec = sh("trap 'exit 0' TERM; sleep 1000 & wait");
        spec.name = name.into();
        spec.restart_policy = policy(mode, 0);
        let c = agent.run(spec).await;
        ids.push(c.id);
    }
    // "always" comes back after its process dies by itself.
    let pid = agent.inspect("always").await.pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let mut restarted = false;
    for _ in 0..(500 * common::slow_factor()) {
        let c = agent.inspect("always").await;
        if c.state == pb::ContainerState::Running as i32 && c.pid != pid {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted, "an always container was not restarted");
    // A stop through the API is respected.
    agent.stop("stopped", 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        agent.inspect("stopped").await.state,
        pb::ContainerState::Exited as i32
    );
    assert!(agent.inspect("stopped").await.stopped_by_user);

    // The host "reboots": berthd and every container die.
    agent.stop_agent(Signal::SIGKILL);
    for pid in agent.processes() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.spawn().await;
    for _ in 0..(500 * common::slow_factor()) {
        let a = agent.inspect("always").await.state;
        let u = agent.inspect("unless").await.state;
        if a == pb::ContainerState::Running as i32 && u == pb::ContainerState::Running as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        agent.inspect("always").await.state,
        pb::ContainerState::Running as i32
    );
    assert_eq!(
        agent.inspect("unless").await.state,
        pb::ContainerState::Running as i32
    );
    assert_eq!(
        agent.inspect("stopped").await.state,
        pb::ContainerState::Exited as i32
    );
    for id in ids {
        agent.force_remove(&id).await;
    }
    agent.assert_clean().await;
}

#[tokio::test]
async fn pause_resume_and_stop_while_paused() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            actions: vec![
                pb::EventAction::Paused as i32,
                pb::EventAction::Resumed as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = agent
        .run(sh(
            "trap 'exit 0' TERM; while true; do echo tick; sleep 0.05; done",
        ))
        .await;
    let paused = agent
        .containers()
        .pause(pb::PauseContainerRequest { id: c.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    assert_eq!(paused.state, pb::ContainerState::Paused as i32);
    assert_eq!(
        common::next_event(&mut events).await.action,
        pb::EventAction::Paused as i32
    );
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let frozen = if v2 {
        std::fs::read_to_string(agent.cgroup_dir(&c.id, "").join("cgroup.freeze"))
            .unwrap()
            .trim()
            == "1"
    } else {
        std::fs::read_to_string(agent.cgroup_dir(&c.id, "freezer").join("freezer.state"))
            .unwrap()
            .trim()
            == "FROZEN"
    };
    assert!(frozen, "the cgroup is not frozen");
    // Nothing runs while frozen: the log does not grow. (What the container
    // wrote just before the freeze may still be on its way from the pipe to
    // the log: wait until that has settled.)
    let mut before = agent.logs(&c.id).await.0.len();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(
            100 * u64::from(common::slow_factor()),
        ))
        .await;
        let now = agent.logs(&c.id).await.0.len();
        if now == before {
            break;
        }
        before = now;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.logs(&c.id).await.0.len(), before);
    let e = agent
        .containers()
        .pause(pb::PauseContainerRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    agent
        .containers()
        .resume(pb::ResumeContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    assert_eq!(
        common::next_event(&mut events).await.action,
        pb::EventAction::Resumed as i32
    );
    let mut grew = false;
    for _ in 0..(100 * common::slow_factor()) {
        if agent.logs(&c.id).await.0.len() > before {
            grew = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(grew, "the container did not run again after resume");
    // A paused container can still be stopped.
    agent
        .containers()
        .pause(pb::PauseContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    let stopped = agent.stop(&c.id, 10).await.unwrap();
    assert_eq!(
        stopped.container.unwrap().state,
        pb::ContainerState::Exited as i32
    );
    agent.assert_clean().await;
}

#[tokio::test]
async fn limits_update_live() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("trap 'exit 0' TERM; sleep 1000 & wait");
    spec.resources = Some(pb::Resources {
        memory_bytes: 64 << 20,
        pids_limit: 32,
        ..Default::default()
    });
    let c = agent.run(spec).await;
    let updated = agent
        .containers()
        .update(pb::UpdateContainerRequest {
            id: c.id.clone(),
            resources: Some(pb::Resources {
                memory_bytes: 128 << 20,
                nano_cpus: 250_000_000,
                ..Default::default()
            }),
            restart_policy: None,
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    let r = updated.spec.unwrap().resources.unwrap();
    assert_eq!(
        (r.memory_bytes, r.pids_limit, r.nano_cpus),
        (128 << 20, 32, 250_000_000)
    );
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (mem, cpu) = if v2 {
        let d = agent.cgroup_dir(&c.id, "");
        (
            std::fs::read_to_string(d.join("memory.max")).unwrap(),
            std::fs::read_to_string(d.join("cpu.max")).unwrap(),
        )
    } else {
        (
            std::fs::read_to_string(
                agent
                    .cgroup_dir(&c.id, "memory")
                    .join("memory.limit_in_bytes"),
            )
            .unwrap(),
            std::fs::read_to_string(agent.cgroup_dir(&c.id, "cpu").join("cpu.cfs_quota_us"))
                .unwrap(),
        )
    };
    assert_eq!(mem.trim(), (128u64 << 20).to_string());
    assert!(cpu.starts_with("25000"), "{cpu}");
    let e = agent
        .containers()
        .update(pb::UpdateContainerRequest {
            id: c.id.clone(),
            resources: Some(pb::Resources {
                memory_bytes: 1024,
                ..Default::default()
            }),
            restart_policy: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn list_then_watch_and_slow_subscribers() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let a = agent.create(sh("true")).await;
    // A subscriber that does not read while many events happen.
    let mut slow = agent
        .events()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut watch = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            snapshot: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let snap = common::next_event(&mut watch).await;
    assert_eq!(snap.action, pb::EventAction::Snapshot as i32);
    assert_eq!(snap.container.unwrap().id, a.id);
    let done = common::next_event(&mut watch).await;
    assert_eq!(done.action, pb::EventAction::SnapshotDone as i32);
    let n = 300;
    for _ in 0..n {
        agent
            .containers()
            .update(pb::UpdateContainerRequest {
                id: a.id.clone(),
                resources: Some(pb::Resources {
                    pids_limit: 10,
                    ..Default::default()
                }),
                restart_policy: None,
            })
            .await
            .unwrap();
    }
    let after = common::next_event(&mut watch).await;
    assert_eq!(
        after.seq,
        done.seq + 1,
        "no gap between the snapshot and the live events"
    );
    let mut seqs = Vec::new();
    for _ in 0..n {
        seqs.push(common::next_event(&mut slow).await.seq);
    }
    assert_eq!(seqs, (done.seq + 1..=done.seq + n).collect::<Vec<_>>());
    let e = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            snapshot: true,
            from_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

/// During a restart delay: a Kill is refused and changes nothing (the
/// policy goes on restarting), a Stop calls the pending restart off.
#[tokio::test]
async fn a_stop_during_the_restart_delay_calls_the_restart_off() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("exit 1");
    spec.restart_policy = policy(pb::restart_policy::Mode::Always, 0);
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let c = agent.run(spec).await;
    // The next RESTARTING event of `c`, from attempt `min` on.
    async fn restarting(events: &mut tonic::Streaming<pb::Event>, id: &str, min: u32) -> pb::Event {
        loop {
            let e = common::next_event(events).await;
            if e.id == id
                && e.action == pb::EventAction::Restarting as i32
                && e.restart_attempt >= min
            {
                return e;
            }
        }
    }
    // Attempt 3 waits 400 ms: time enough for the calls below.
    let e = restarting(&mut events, &c.id, 3).await;
    let err = agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "SIGKILL".into(),
        })
        .await
        .expect_err("nothing runs to be killed");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    // The refused Kill did not count as a stop by the user.
    let e = restarting(&mut events, &c.id, e.restart_attempt + 1).await;
    agent.stop(&c.id, 1).await.unwrap();
    let quiet = Duration::from_millis(e.restart_delay_ms) + Duration::from_secs(1);
    let started = tokio::time::timeout(quiet, async {
        loop {
            let e = common::next_event(&mut events).await;
            if e.id == c.id && e.action == pb::EventAction::Started as i32 {
                return e;
            }
        }
    })
    .await;
    assert!(started.is_err(), "started after the stop: {started:?}");
    assert_eq!(
        agent.inspect(&c.id).await.state,
        pb::ContainerState::Exited as i32
    );
}

/// Stop and `rm -f` of a container that exits by itself at that moment
/// succeed: the container ended, which is what they asked for.
#[tokio::test]
async fn stop_and_forced_remove_racing_the_containers_own_exit_succeed() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    for i in 0..30u32 {
        let c = agent.run(sh(&format!("sleep 0.0{}", i % 10))).await;
        if i % 2 == 0 {
            agent
                .stop(&c.id, 5)
                .await
                .unwrap_or_else(|e| panic!("stop {i}: {e:?}"));
        }
        agent
            .containers()
            .remove(pb::RemoveContainerRequest {
                id: c.id.clone(),
                force: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("rm -f {i}: {e:?}"));
    }
    agent.assert_clean().await;
}
