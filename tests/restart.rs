//! End to end: containers outlive berthd, and the event log outlives both.

mod common;

use std::time::Duration;

use berth::v1 as pb;
use common::{sh, Agent};
use nix::sys::signal::Signal;

async fn last_seq(agent: &Agent) -> u64 {
    let mut s = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            snapshot: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let e = common::next_event(&mut s).await;
        if e.action == pb::EventAction::SnapshotDone as i32 {
            return e.seq;
        }
    }
}

#[tokio::test]
async fn containers_survive_an_agent_kill_and_exits_are_told_exactly_once() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let long = agent
        .run(sh("trap 'exit 5' TERM; echo up; sleep 1000 & wait"))
        .await;
    let short = agent.run(sh("sleep 2; exit 9")).await;
    let seen = last_seq(&agent).await;
    let first_instance = agent
        .agent()
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance_id;
    agent.stop_agent(Signal::SIGKILL);
    // The short one exits while berthd is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(long.pid), None).is_ok(),
        "container died with berthd"
    );
    agent.spawn().await;

    // Resuming from the last seen seq gives exactly what was missed: the
    // exit that happened while berthd was down, once, with a new instance id
    // and the next sequence number.
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            from_seq: seen + 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ev = common::next_event(&mut events).await;
    assert_eq!(ev.seq, seen + 1);
    assert_eq!(
        (ev.id.as_str(), ev.action),
        (short.id.as_str(), pb::EventAction::Exited as i32)
    );
    assert_eq!(ev.exit.unwrap().exit_code, 9);
    assert_ne!(ev.instance_id, first_instance);
    let got = agent.inspect(&short.id).await;
    assert_eq!(got.state, pb::ContainerState::Exited as i32);
    assert_eq!(got.exit.unwrap().exit_code, 9);

    let got = agent.inspect(&long.id).await;
    assert_eq!(got.state, pb::ContainerState::Running as i32);
    let stopped = agent.stop(&long.id, 10).await.unwrap();
    assert!(!stopped.killed);
    assert_eq!(stopped.container.unwrap().exit.unwrap().exit_code, 5);
    assert!(agent.logs(&long.id).await.0.contains("up"));
    let ev = common::next_event(&mut events).await;
    assert_eq!(
        (ev.id.as_str(), ev.action),
        (long.id.as_str(), pb::EventAction::Stopping as i32)
    );
    let ev = common::next_event(&mut events).await;
    assert_eq!(
        (ev.id.as_str(), ev.action),
        (long.id.as_str(), pb::EventAction::Exited as i32)
    );

    // A second restart does not announce the old exits again.
    let seen = last_seq(&agent).await;
    agent.stop_agent(Signal::SIGTERM);
    agent.spawn().await;
    assert_eq!(last_seq(&agent).await, seen);
    for id in [long.id, short.id] {
        agent
            .containers()
            .remove(pb::RemoveContainerRequest {
                id,
                force: false,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_stop_deadline_survives_an_agent_restart() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(sh("trap '' TERM; echo ready; while true; do sleep 1; done"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client gives up at once; berthd owns the deadline.
    let mut client = agent.containers();
    let stop = client.stop(pb::StopContainerRequest {
        id: c.id.clone(),
        timeout_seconds: Some(3),
    });
    let _ = tokio::time::timeout(Duration::from_millis(500), stop).await;
    agent.stop_agent(Signal::SIGKILL);
    agent.spawn().await;
    let w = tokio::time::timeout(
        Duration::from_secs(60 * common::slow_factor() as u64),
        agent.containers().wait(pb::WaitContainerRequest {
            id: c.id.clone(),
            ..Default::default()
        }),
    )
    .await
    .expect("the stop deadline was not honoured after the restart")
    .unwrap()
    .into_inner();
    assert_eq!(w.exit.unwrap().signal, 9);
    agent.assert_clean().await;
}

#[tokio::test]
async fn half_done_and_corrupt_state_is_repaired_or_quarantined() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let good = agent.create(sh("true")).await;
    let bad = agent.create(sh("true")).await;
    agent.stop_agent(Signal::SIGKILL);
    let containers = agent.state_dir.join("containers");
    // A create cut short (no record yet) and a torn record.
    let half = containers.join("f".repeat(64));
    std::fs::create_dir_all(half.join("upper")).unwrap();
    std::fs::write(
        containers.join(&bad.id).join("container.json"),
        b"{\"id\": \"tor",
    )
    .unwrap();
    agent.spawn().await;
    assert!(!half.exists(), "half-created container left behind");
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.containers
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        vec![good.id.clone()]
    );
    let quarantined: Vec<String> = std::fs::read_dir(containers.join(".quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        quarantined.iter().any(|q| q.starts_with(&bad.id)),
        "{quarantined:?}"
    );
    assert!(
        agent.log().contains("corrupt"),
        "the quarantine is not reported"
    );
    agent
        .containers()
        .start(pb::StartContainerRequest {
            id: good.id.clone(),
        })
        .await
        .unwrap();
    agent.wait(&good.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_second_agent_on_the_same_cgroup_parent_leaves_the_first_ones_containers_alone() {
    let first = Agent::start().await;
    first.import_busybox().await;
    let c = first.run(sh("echo up; exec sleep 600")).await;
    first.wait_for_output(&c.id, "up").await;
    let cgroup = first.cgroup_dir(&c.id, "pids");
    // Its cgroup is one the second agent has no record of.
    let second = Agent::start_beside(&first).await;
    let running = first.inspect(&c.id).await;
    assert_eq!(
        running.state,
        pb::ContainerState::Running as i32,
        "the second agent's start ended the first one's container"
    );
    assert!(cgroup.is_dir(), "the container's cgroup was removed");
    assert!(
        second.log().contains("left alone"),
        "the foreign cgroup is not reported:\n{}",
        second.log()
    );
    let listed = second
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.containers.is_empty(), "{:?}", listed.containers);
    drop(second);
    first.force_remove(&c.id).await;
    first.assert_clean().await;
}

#[tokio::test]
async fn an_auto_remove_container_that_exits_while_the_agent_is_down_is_removed_on_its_return() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("echo up; exec sleep 600");
    spec.auto_remove = true;
    let c = agent.run(spec).await;
    agent.wait_for_output(&c.id, "up").await;
    let dir = agent.state_dir.join("containers").join(&c.id);
    agent.stop_agent(Signal::SIGKILL);
    // It exits while no berthd watches; its monitor records the exit.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid), Signal::SIGKILL).unwrap();
    assert!(
        common::eventually(10, async || dir.join("exit.json").exists()).await,
        "the monitor recorded no exit"
    );
    agent.spawn().await;
    let gone = common::eventually(10, async || {
        agent
            .containers()
            .inspect(pb::InspectContainerRequest { id: c.id.clone() })
            .await
            .is_err_and(|e| e.code() == tonic::Code::NotFound)
    })
    .await;
    assert!(gone, "the auto-remove container was not removed");
    assert!(!dir.exists());
    agent.assert_clean().await;
}

/// berthd went down after the monitor ran the container but before the
/// record said so, and the container exited meanwhile: its run is found
/// from the monitor's files, so its exit is recorded and Wait returns it.
#[tokio::test]
async fn a_start_cut_short_whose_container_exited_meanwhile_is_recorded() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.create(sh("exit 3")).await;
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 3);
    agent.stop_agent(Signal::SIGKILL);
    // The record as it was before the start was saved.
    let dir = agent.state_dir.join("containers").join(&c.id);
    for f in ["running.json", "exit.json"] {
        assert!(dir.join(f).exists(), "the monitor wrote {f}");
    }
    let path = dir.join("container.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (k, v) in [
        ("state", serde_json::json!("created")),
        ("started_at", serde_json::json!(0)),
        ("exit", serde_json::Value::Null),
        ("pid", serde_json::json!(0)),
        ("monitor_pid", serde_json::json!(0)),
        ("start_count", serde_json::json!(0)),
    ] {
        assert!(rec.get(k).is_some(), "record field {k}");
        rec[k] = v;
    }
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    agent.spawn().await;
    let waited = tokio::time::timeout(Duration::from_secs(30), agent.wait(&c.id))
        .await
        .expect("Wait returns");
    assert_eq!(waited.exit.unwrap().exit_code, 3);
    let got = agent.inspect(&c.id).await;
    assert_eq!(got.state, pb::ContainerState::Exited as i32);
}
