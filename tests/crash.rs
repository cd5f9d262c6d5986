//! End to end: berthd killed at every named crash point (agent/src/crash.rs)
//! recovers with nothing lost, doubled or leaked (issue 23).
//!
//! For each point, berthd is restarted armed to die there, a workload that
//! passes every point runs until berthd dies, berthd is started again
//! (unarmed), and the invariants are checked:
//! - the event log is gap-free and duplicate-free: sequence numbers 1..=N,
//!   each once; every EXITED has its STARTED, and no run is started twice;
//! - every exit is announced once per run with its true code (the
//!   container that exits 3 never shows 255), and restart policies are
//!   honoured across the crash;
//! - every container's record matches reality: a RUNNING one has a live
//!   process, and every container can be stopped and removed;
//! - nothing leaks: no mount, cgroup or process once all are removed.

mod common;

use berth::v1 as pb;
use common::invariants::{all_events, check, check_runs, EXIT_LABEL};
use common::{eventually, sh, Agent};
use pb::ContainerState as CState;

/// The points the workload passes, in order. A point the workload never
/// reaches fails the test: the list must stay true to the code.
const IMAGE_POINTS: &[&str] = &[
    "image:import:layers-stored",
    "image:import:tagged",
    "event:imported:appended",
];

/// The container points, in two lists run side by side (each point
/// restarts berthd twice; one list of 34 was the slowest test of the VM).
const START_EXIT_POINTS: &[&str] = &[
    "create:saved",
    "event:created:appended",
    // A start saved, its STARTED not published: the next berthd announces
    // it (issue 23, item 5); one cut short before the save is adopted from
    // the monitor's running.json.
    "commit:start:before-save",
    "commit:start:saved",
    "commit:start:announced",
    // An exit announced, then saved; then the on-failure restart, which
    // the next berthd must still take (item 6).
    "commit:exit:announced",
    "commit:exit:before-save",
    "commit:exit:saved",
    "commit:schedulerestart:before-save",
    "commit:schedulerestart:saved",
    "commit:schedulerestart:announced",
    "event:started:appended",
    "event:exited:appended",
    "event:restarting:appended",
];

const CHANGE_POINTS: &[&str] = &[
    "commit:pause:before-save",
    "commit:pause:saved",
    "commit:pause:announced",
    "commit:resume:before-save",
    "commit:resume:saved",
    "commit:resume:announced",
    "commit:update:before-save",
    "commit:update:saved",
    "commit:update:announced",
    "commit:stop:before-save",
    "commit:stop:saved",
    "commit:remove:before-save",
    "commit:remove:saved",
    "event:paused:appended",
    "event:resumed:appended",
    "event:updated:appended",
    "event:stopping:appended",
    "event:killed:appended",
    "event:removed:appended",
];

/// berthd died during a workload step.
struct Died;

/// `Err` means berthd died: the caller stops the workload there.
async fn step<T>(agent: &mut Agent, r: Result<T, tonic::Status>) -> Result<T, Died> {
    match r {
        Ok(v) => Ok(v),
        Err(status) => {
            let died = eventually(10, async || agent.agent_died()).await;
            assert!(died, "berthd is alive but answered {status:?}");
            Err(Died)
        }
    }
}

fn restart_on_failure(max: u32) -> Option<pb::RestartPolicy> {
    Some(pb::RestartPolicy {
        mode: pb::restart_policy::Mode::OnFailure as i32,
        max_retries: max,
    })
}

/// Everything the points are on: an import, a container that fails twice
/// (on-failure, one retry), a long-running one paused, resumed, updated,
/// stopped and removed, and one removed by force while it runs.
async fn workload(agent: &mut Agent, import: bool) -> Result<(), Died> {
    if import {
        let image = common::image::busybox_with("docker.io/library/crashy:latest", vec![]);
        let r = agent.import(image, "").await;
        step(agent, r).await?;
    }
    let mut failing = sh("exit 3");
    failing.restart_policy = restart_on_failure(1);
    failing.labels.insert(EXIT_LABEL.into(), "3".into());
    let r = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(failing),
        })
        .await;
    let b = step(agent, r)
        .await?
        .into_inner()
        .container
        .unwrap_or_default();
    let r = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(sh("exec sleep 600")),
        })
        .await;
    let a = step(agent, r)
        .await?
        .into_inner()
        .container
        .unwrap_or_default();
    // The failing one: exited for good after its one retry.
    let mut last = Ok(());
    let done = eventually(30, async || {
        match agent
            .containers()
            .inspect(pb::InspectContainerRequest { id: b.id.clone() })
            .await
        {
            Ok(r) => {
                let c = r.into_inner().container.unwrap_or_default();
                c.state == CState::Exited as i32 && c.restart_count == 1
            }
            Err(e) => {
                last = Err(e);
                true
            }
        }
    })
    .await;
    step(agent, last).await?;
    assert!(done, "the on-failure container did not run out of retries");
    let id = a.id.clone();
    let r = agent
        .containers()
        .pause(pb::PauseContainerRequest { id: id.clone() })
        .await;
    step(agent, r).await?;
    let r = agent
        .containers()
        .resume(pb::ResumeContainerRequest { id: id.clone() })
        .await;
    step(agent, r).await?;
    let r = agent
        .containers()
        .update(pb::UpdateContainerRequest {
            id: id.clone(),
            resources: Some(pb::Resources {
                pids_limit: 50,
                ..Default::default()
            }),
            restart_policy: None,
        })
        .await;
    step(agent, r).await?;
    let r = agent.stop(&id, 1).await;
    step(agent, r).await?;
    let r = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(sh("exec sleep 600")),
        })
        .await;
    let c = step(agent, r)
        .await?
        .into_inner()
        .container
        .unwrap_or_default();
    for id in [c.id, id, b.id] {
        let r = agent
            .containers()
            .remove(pb::RemoveContainerRequest {
                id,
                force: true,
                ..Default::default()
            })
            .await;
        step(agent, r).await?;
    }
    Ok(())
}

/// Runs the workload against berthd armed at each of `points`.
async fn crash_at_each(points: &[&str], import: bool) {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    for point in points {
        agent.restart_crashing_at(point).await;
        if workload(&mut agent, import).await.is_ok() {
            panic!("the workload never reached crash point {point}");
        }
        assert!(
            agent.log().contains(&format!("point={point}")),
            "berthd died, but not at {point}:\n{}",
            agent.log()
        );
        agent.spawn().await;
        check(&agent, point).await;
        check_runs(&all_events(&agent).await, point);
    }
    // And unarmed, the same workload runs to the end.
    assert!(workload(&mut agent, import).await.is_ok());
}

#[tokio::test]
async fn every_image_point() {
    crash_at_each(IMAGE_POINTS, true).await;
}

#[tokio::test]
async fn every_create_start_exit_and_restart_point() {
    crash_at_each(START_EXIT_POINTS, false).await;
}

#[tokio::test]
async fn every_pause_update_stop_and_remove_point() {
    crash_at_each(CHANGE_POINTS, false).await;
}
