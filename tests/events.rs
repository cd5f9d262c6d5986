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
    agent.stop(&c.id, 10).await.unwrap();
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: c.id.clone(),
            force: false,
            ..Default::default()
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

/// Fills the file system of `dir` up: what is left is less than a page.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let page = [0u8; 4096];
    while f.write_all(&page).is_ok() {}
    path
}

#[tokio::test]
async fn a_replay_reaching_events_a_full_disk_lost_ends_with_data_loss() {
    let mut agent = Agent::start().await;
    // The event log on a small file system of its own, which the test fills.
    // It has room for the log's reserve (1 MiB allocated ahead) and a little.
    let log_dir = agent.state_on_tmpfs("events", "4m").await;
    agent.import_busybox().await;
    // Every event of the container carries its labels: ~200 KiB each, so
    // a few events use up the reserve a full disk leaves the log, and the
    // rest of the burst below is lost, as on a disk full for longer.
    let mut spec = sh("sleep 1000");
    for i in 0..50 {
        spec.labels.insert(format!("bulk{i}"), "x".repeat(4000));
    }
    let c = agent.run(spec).await;
    let mut live = agent
        .events()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let kill = |n: usize| {
        let mut client = agent.containers();
        let id = c.id.clone();
        async move {
            for _ in 0..n {
                client
                    .kill(pb::KillContainerRequest {
                        id: id.clone(),
                        signal: "SIGWINCH".into(),
                    })
                    .await
                    .unwrap();
            }
        }
    };
    // Far more than the log's reserve holds (~5 of these events).
    const WHILE_FULL: usize = 100;
    let filler = fill(&log_dir);
    kill(WHILE_FULL).await;
    std::fs::remove_file(filler).unwrap();
    kill(5).await;

    // Live, every event arrives, each with a seq of its own.
    let mut seen = Vec::new();
    while seen.len() < WHILE_FULL + 5 {
        let e = common::next_event(&mut live).await;
        if action(&e) == pb::EventAction::Killed {
            seen.push(e.seq);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "live seqs: {seen:?}"
    );
    let last = *seen.last().unwrap();
    drop(live);
    assert!(agent.log().contains("appending to the event log"));

    // Replayed from disk (after a restart, so nothing comes from memory),
    // the stream ends at each lost event with DATA_LOSS naming it, and goes
    // on from the seq after it.
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn().await;
    let (mut replayed, mut lost) = (Vec::new(), Vec::new());
    let mut from = 1;
    while from <= last {
        let status = match agent
            .events()
            .subscribe(pb::SubscribeRequest {
                from_seq: from,
                ..Default::default()
            })
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(e)) => {
                            assert_eq!(e.seq, from, "a replay skips nothing silently");
                            replayed.push(e.seq);
                            from += 1;
                            if from > last {
                                break None;
                            }
                        }
                        Ok(None) => panic!("the stream ended without a status"),
                        Err(s) => break Some(s),
                    }
                }
            }
            Err(s) => Some(s),
        };
        if let Some(s) = status {
            assert_eq!(s.code(), tonic::Code::DataLoss, "{s:?}");
            assert!(s.message().contains(&format!("event {from} ")), "{s:?}");
            lost.push(from);
            from += 1;
        }
    }
    eprintln!("{} of {WHILE_FULL} events lost: {lost:?}", lost.len());
    assert!(!lost.is_empty(), "the full file system lost no event");
    assert!(
        lost.iter().all(|s| seen.contains(s)),
        "lost {lost:?}, killed while full {seen:?}"
    );
    // Written once there was room again: the last five are all on disk.
    assert!(seen[WHILE_FULL..].iter().all(|s| replayed.contains(s)));
    drop(agent);
}
