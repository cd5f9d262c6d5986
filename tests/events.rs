//! End to end: the event stream.

mod common;

use berth::v1 as pb;
use common::{sh, Agent};

fn action(e: &pb::Event) -> pb::EventAction {
    pb::EventAction::try_from(e.action).unwrap()
}

#[tokio::test]
async fn every_transition_is_one_event_in_order() {
    let agent = Agent::start().await;
    let mut all = agent
        .events()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    agent.import_busybox().await;
    let mut spec = sh("trap 'exit 0' TERM; echo ready; sleep 1000 & wait");
    spec.name = "evented".into();
    spec.labels.insert("team".into(), "blue".into());
    let c = agent.run(spec).await;
    // Until the shell has set its trap, a TERM to PID 1 is ignored and the
    // stop would escalate to SIGKILL: an extra event this test must not see.
    agent.wait_for_output(&c.id, "ready").await;
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "SIGUSR2".into(),
        })
        .await
        .ok();
    agent
        .containers()
        .stop(pb::StopContainerRequest {
            id: c.id.clone(),
            timeout_seconds: Some(10),
        })
        .await
        .unwrap();
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: c.id.clone(),
            force: false,
        })
        .await
        .unwrap();
    agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: "busybox".into(),
            force: false,
        })
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(common::next_event(&mut all).await);
    }
    let actions: Vec<(pb::ObjectType, pb::EventAction)> = got
        .iter()
        .map(|e| (pb::ObjectType::try_from(e.r#type).unwrap(), action(e)))
        .collect();
    use pb::EventAction as A;
    use pb::ObjectType as T;
    assert_eq!(
        actions,
        [
            (T::Image, A::Imported),
            (T::Container, A::Created),
            (T::Container, A::Started),
            (T::Container, A::Killed),
            (T::Container, A::Stopping),
            (T::Container, A::Exited),
            (T::Container, A::Removed),
            (T::Image, A::Removed),
        ]
    );
    let first = got[0].seq;
    for (i, e) in got.iter().enumerate() {
        assert_eq!(
            e.seq,
            first + i as u64,
            "sequence numbers must increase by one"
        );
        assert!(e.time.is_some());
        assert!(!e.instance_id.is_empty());
    }
    let container_events = &got[1..7];
    for e in container_events {
        assert_eq!(e.id, c.id);
        assert_eq!(e.name, "evented");
        assert_eq!(e.labels.get("team").map(String::as_str), Some("blue"));
    }
    assert_eq!(got[3].signal, libc::SIGUSR2);
    assert_eq!(got[4].signal, libc::SIGTERM);
    assert_eq!(got[5].exit.as_ref().unwrap().exit_code, 0);
}

#[tokio::test]
async fn filters_and_replay() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut exits_of_a = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            actions: vec![pb::EventAction::Exited as i32],
            containers: vec!["a".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut labelled = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            labels: [("tier".to_string(), "db".to_string())].into(),
            types: vec![pb::ObjectType::Container as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (name, code, tier) in [("b", 2, "web"), ("a", 1, "db")] {
        let mut spec = sh(&format!("exit {code}"));
        spec.name = name.into();
        spec.labels.insert("tier".into(), tier.into());
        agent.run_to_exit(spec).await;
    }
    let e = common::next_event(&mut exits_of_a).await;
    assert_eq!(
        (e.name.as_str(), action(&e)),
        ("a", pb::EventAction::Exited)
    );
    assert_eq!(e.exit.unwrap().exit_code, 1);
    let e = common::next_event(&mut labelled).await;
    assert_eq!(
        (e.name.as_str(), action(&e)),
        ("a", pb::EventAction::Created)
    );

    // Replay from the start gives everything, in order, then goes live.
    let mut replay = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            from_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    for _ in 0..7 {
        seqs.push(common::next_event(&mut replay).await.seq);
    }
    assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
    agent.run_to_exit(sh("true")).await;
    assert_eq!(common::next_event(&mut replay).await.seq, 8);
}
