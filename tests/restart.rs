//! End to end: containers outlive berthd.

mod common;

use std::time::Duration;

use berth::v1 as pb;
use common::{sh, Agent};
use nix::sys::signal::Signal;

#[tokio::test]
async fn containers_survive_an_agent_kill_and_are_readopted() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let long = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(sh("trap 'exit 5' TERM; echo up; sleep 1000 & wait")),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    let short = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(sh("sleep 2; exit 9")),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    agent.stop_agent(Signal::SIGKILL);
    // The short one exits while berthd is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(long.pid), None).is_ok(),
        "container died with berthd"
    );
    agent.spawn().await;

    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            from_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got = agent
        .containers()
        .inspect(pb::InspectContainerRequest {
            id: short.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    assert_eq!(got.state, pb::ContainerState::Exited as i32);
    assert_eq!(got.exit.unwrap().exit_code, 9);
    let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.id.as_str(), ev.action),
        (short.id.as_str(), pb::EventAction::Exited as i32)
    );

    let got = agent
        .containers()
        .inspect(pb::InspectContainerRequest {
            id: long.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    assert_eq!(got.state, pb::ContainerState::Running as i32);
    let stopped = agent
        .containers()
        .stop(pb::StopContainerRequest {
            id: long.id.clone(),
            timeout_seconds: Some(10),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!stopped.killed);
    assert_eq!(stopped.container.unwrap().exit.unwrap().exit_code, 5);
    assert!(agent.logs(&long.id).await.0.contains("up"));
    for id in [long.id, short.id] {
        agent
            .containers()
            .remove(pb::RemoveContainerRequest { id, force: false })
            .await
            .unwrap();
    }
    agent.assert_clean().await;
}
