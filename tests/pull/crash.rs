//! A pull cut short by a crash (issue 23): berthd SIGKILLed after one layer
//! is installed, after the image's layers are committed, after it is
//! tagged, and after PULLED is logged. The next berthd keeps nothing no
//! image or container uses, its event log has no gap, and the same pull
//! then works and the image runs.

use super::*;
use common::eventually;
use common::invariants::{all_events, store_is_clean};

/// Each point a pull passes, in order (the commit is shared with imports).
const PULL_POINTS: &[&str] = &[
    "image:pull:layer-installed",
    "image:import:layers-stored",
    "image:import:tagged",
    "event:pulled:appended",
];

#[tokio::test]
async fn a_pull_killed_at_each_point_leaves_nothing_behind_and_works_again() {
    let reg = Registry::start();
    let mut agent = Agent::start().await;
    // For the marker container all_events creates.
    agent.import_busybox().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh", "-c", "cat /data"],
        vec![
            TestLayer {
                entries: busybox_layer(),
                gzip: true,
            },
            TestLayer {
                entries: vec![file("data", b"pulled after a crash\n")],
                gzip: true,
            },
        ],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "crashy:1", &[]);
    let r = format!("{}/crashy:1", reg.addr());

    for point in PULL_POINTS {
        agent.restart_crashing_at(point).await;
        assert!(
            pull(&agent, &r, None).await.is_err(),
            "the pull ended although berthd was armed to die at {point}"
        );
        assert!(
            eventually(30, async || agent.agent_died()).await,
            "berthd did not die at {point}"
        );
        assert!(
            agent.log().contains(&format!("point={point}")),
            "berthd died, but not at {point}:\n{}",
            agent.log()
        );
        agent.spawn().await;
        store_is_clean(&agent.state_dir, point);
        for (i, ev) in all_events(&agent).await.iter().enumerate() {
            assert_eq!(
                ev.seq,
                i as u64 + 1,
                "{point}: a gap or duplicate at {ev:?}"
            );
        }
        // Whatever the crash left (nothing, or the whole image), the pull
        // works now and the image runs.
        pull(&agent, &r, None)
            .await
            .unwrap_or_else(|e| panic!("{point}: the pull after the crash: {e}"));
        let (exit, out, _) = agent
            .run_to_exit(pb::ContainerSpec {
                image: r.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            (exit.exit_code, out.as_str()),
            (0, "pulled after a crash\n"),
            "{point}"
        );
        let all = agent
            .containers()
            .list(pb::ListContainersRequest::default())
            .await
            .expect("list")
            .into_inner()
            .containers;
        for c in all {
            agent.force_remove(&c.id).await;
        }
        agent
            .images()
            .remove(pb::RemoveImageRequest {
                image: r.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{point}: removing the image: {e}"));
        store_is_clean(&agent.state_dir, point);
    }
}
