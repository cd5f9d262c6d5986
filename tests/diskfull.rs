//! End to end: a full state disk (issue 23, items 1 and 2). The containers'
//! state is on a small tmpfs, filled by a container's log; stop, kill,
//! forced remove and pause must all work, exits keep their true codes and
//! are announced once across a restart of berthd, and the records catch up
//! once space returns.

mod common;

use berth::v1 as pb;
use common::invariants::all_events;
use common::{eventually, sh, Agent};
use pb::ContainerState as CState;

/// Bytes still free on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    st.blocks_available() * st.fragment_size()
}

async fn inspect(agent: &Agent, id: &str) -> pb::Container {
    agent
        .containers()
        .inspect(pb::InspectContainerRequest { id: id.into() })
        .await
        .expect("inspect")
        .into_inner()
        .container
        .unwrap_or_default()
}

/// The record berthd saved for `id`, as JSON.
fn saved(dir: &std::path::Path, id: &str) -> serde_json::Value {
    let bytes = std::fs::read(dir.join(id).join("container.json")).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

#[tokio::test]
async fn a_full_disk_never_keeps_containers_from_stopping_and_exits_keep_their_codes() {
    let mut agent = Agent::start_with(&["--log-max-bytes", "1073741824"]).await;
    agent.import_busybox().await;
    let containers = agent.state_on_tmpfs("containers", "8m").await;

    // Exits 7 at its stop signal: the true code to keep.
    let trapper = agent
        .run(sh(
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ))
        .await;
    agent.wait_for_output(&trapper.id, "ready").await;
    let killed = agent.run(sh("exec sleep 600")).await;
    let removed = agent.run(sh("exec sleep 600")).await;
    let paused = agent.run(sh("exec sleep 600")).await;
    let filler = agent.run(sh("yes berth-fills-the-disk")).await;
    let full = eventually(120, async || free_bytes(&containers) < 64 * 1024).await;
    assert!(full, "the log did not fill the tmpfs");

    // Pause and resume: the container is frozen, and PAUSED says so.
    let r = agent
        .containers()
        .pause(pb::PauseContainerRequest {
            id: paused.id.clone(),
        })
        .await;
    assert_eq!(
        r.expect("pause on a full disk")
            .into_inner()
            .container
            .unwrap_or_default()
            .state,
        CState::Paused as i32
    );
    agent
        .containers()
        .resume(pb::ResumeContainerRequest {
            id: paused.id.clone(),
        })
        .await
        .expect("resume on a full disk");

    // Stop: the container exits with its own code.
    agent
        .stop(&trapper.id, 10)
        .await
        .expect("stop on a full disk");
    assert_eq!(
        agent
            .wait(&trapper.id)
            .await
            .exit
            .unwrap_or_default()
            .exit_code,
        7
    );
    // Kill SIGKILL.
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: killed.id.clone(),
            signal: "SIGKILL".into(),
        })
        .await
        .expect("kill on a full disk");
    assert_eq!(
        agent.wait(&killed.id).await.exit.unwrap_or_default().signal,
        9
    );
    // Forced removal.
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: removed.id.clone(),
            force: true,
        })
        .await
        .expect("rm -f on a full disk");
    agent.stop(&filler.id, 1).await.expect("stop the filler");
    agent
        .stop(&paused.id, 1)
        .await
        .expect("stop the paused one");
    for id in [&trapper.id, &killed.id] {
        assert_eq!(inspect(&agent, id).await.state, CState::Exited as i32);
    }
    // The disk is behind: the trapper's record still says running.
    assert_ne!(saved(&containers, &trapper.id)["state"], "exited");

    // Space returns (the operator truncates the log): the records catch up
    // without anything else happening.
    std::fs::write(containers.join(&filler.id).join("container.log"), b"").unwrap();
    let caught_up = eventually(30, async || {
        let rec = saved(&containers, &trapper.id);
        rec["state"] == "exited" && rec["exit"]["exit_code"] == 7
    })
    .await;
    assert!(
        caught_up,
        "the record was not saved again: {}",
        saved(&containers, &trapper.id)
    );
    assert_eq!(saved(&containers, &killed.id)["state"], "exited");

    // A restart of berthd keeps the true codes and announces no exit again.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let rec = inspect(&agent, &trapper.id).await;
    assert_eq!(rec.state, CState::Exited as i32);
    assert_eq!(rec.exit.unwrap_or_default().exit_code, 7);
    let events = all_events(&agent).await;
    for c in [&trapper, &killed, &removed, &paused, &filler] {
        let exits: Vec<_> = events
            .iter()
            .filter(|e| e.id == c.id && e.action == pb::EventAction::Exited as i32)
            .collect();
        assert_eq!(exits.len(), 1, "{}: {exits:?}", c.name);
        assert_ne!(
            exits[0].exit.unwrap_or_default().exit_code,
            255,
            "{exits:?}"
        );
    }
    let paused_at = events
        .iter()
        .position(|e| e.id == paused.id && e.action == pb::EventAction::Paused as i32);
    let resumed_at = events
        .iter()
        .position(|e| e.id == paused.id && e.action == pb::EventAction::Resumed as i32);
    assert!(
        paused_at.is_some() && paused_at < resumed_at,
        "PAUSED, then RESUMED"
    );
    for c in [&trapper, &killed, &paused, &filler] {
        agent.force_remove(&c.id).await;
    }
    // (The tmpfs goes with the agent; `assert_clean` would count it.)
    let left: Vec<_> = std::fs::read_dir(&containers)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "container directories left: {left:?}");
}
