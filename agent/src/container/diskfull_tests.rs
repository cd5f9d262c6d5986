//! A full state disk and a crash, as deterministic tests (issue 23, items
//! 1, 2, 5 and 9): signals never wait on the disk, exits keep their code and
//! are announced once, a start a crash kept quiet is announced, and an
//! Update or Start that loses a race with a Remove is NOT_FOUND.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::resave::RESAVE_EVERY;
use super::restart::Policy;
use super::state::State;
use super::testkit::{disk_full, put_container, Harness, Recorder};
use crate::events::domain::Action;

fn state_dir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn on_disk(h: &Harness, id: &str) -> super::record::Record {
    let bytes = std::fs::read(h.record_path(id)).expect("record on disk");
    serde_json::from_slice(&bytes).expect("a readable record")
}

fn actions(h: &Recorder, id: &str) -> Vec<Action> {
    h.events()
        .iter()
        .filter(|e| e.id == id)
        .map(|e| e.action)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_never_keeps_a_container_from_being_paused_stopped_killed_or_removed() {
    let dir = state_dir();
    let stopped = put_container(dir.path(), "stopped", Policy::No);
    let killed = put_container(dir.path(), "killed", Policy::No);
    let removed = put_container(dir.path(), "removed", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    h.launcher.exit_on(&[libc::SIGTERM, libc::SIGKILL]);
    let entry = |id: &str| h.mgr.get(id).unwrap();
    for id in [&stopped, &killed, &removed] {
        h.mgr.start(&entry(id)).await.unwrap();
    }
    disk_full(dir.path(), true);

    // Pause answers what it did: frozen, PAUSED; then RESUMED after it.
    let paused = h.mgr.pause(&entry(&stopped)).await.unwrap();
    assert_eq!(paused.state, State::Paused);
    let resumed = h.mgr.resume(&entry(&stopped)).await.unwrap();
    assert_eq!(resumed.state, State::Running);
    let (rec, sigkill) = h.mgr.stop(entry(&stopped), Some(10)).await.unwrap();
    assert_eq!((rec.state, sigkill), (State::Exited, false));
    assert_eq!(rec.exit.map(|x| x.exit_code), Some(128 + libc::SIGTERM));
    assert_eq!(
        actions(&h.events, &stopped),
        [
            Action::Started,
            Action::Paused,
            Action::Resumed,
            Action::Stopping,
            Action::Exited
        ]
    );

    h.mgr.kill(&entry(&killed), Signal::SIGKILL).unwrap();
    let mut life = entry(&killed).life();
    life.wait_for(|l| matches!(l, super::Life::Exited(_)))
        .await
        .unwrap();
    let rec = entry(&killed).snapshot();
    assert_eq!(rec.exit.map(|x| x.exit_code), Some(128 + libc::SIGKILL));
    assert!(rec.stopped_by_user);

    h.mgr.remove(&entry(&removed), true).await.unwrap();
    assert!(matches!(
        h.mgr.get(&removed),
        Err(ContainerError::NotFound { .. })
    ));
    assert_eq!(
        *h.launcher.runs()[2].signals.lock().unwrap(),
        [libc::SIGKILL]
    );

    // The disk is behind memory while it is full, and catches up once it
    // has room again.
    assert_eq!(on_disk(&h, &stopped).state, State::Running);
    assert!(h.mgr.is_stale(&stopped) && h.mgr.is_stale(&killed));
    tokio::time::sleep(RESAVE_EVERY * 3).await;
    assert_eq!(
        on_disk(&h, &stopped).state,
        State::Running,
        "saved on a full disk"
    );
    disk_full(dir.path(), false);
    tokio::time::sleep(RESAVE_EVERY * 2).await;
    for (id, code) in [(&stopped, libc::SIGTERM), (&killed, libc::SIGKILL)] {
        let saved = on_disk(&h, id);
        assert_eq!(saved.state, State::Exited);
        assert_eq!(saved.exit.map(|x| x.exit_code), Some(128 + code));
        assert!(!h.mgr.is_stale(id));
    }
    assert!(on_disk(&h, &killed).stopped_by_user);
}

/// The exit of a run, recorded while the disk was full, survives a restart
/// of berthd with its true code, and is announced once: also when the exit
/// file is gone and the exit must be made up as lost (the old key, a
/// finish time, changed then and the exit was announced again).
#[tokio::test(start_paused = true)]
async fn an_exit_on_a_full_disk_keeps_its_code_and_is_announced_once_across_a_restart() {
    let dir = state_dir();
    let id = put_container(dir.path(), "job", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    let exit_file = entry.dir.join(crate::monitor::EXIT_FILE);
    // Room for the exit, taken at the start.
    let reserved = std::fs::read(&exit_file).unwrap();
    assert_eq!(reserved.len(), super::start::EXIT_RESERVE);
    assert!(reserved.iter().all(|b| *b == b' '));
    disk_full(dir.path(), true);
    h.launcher.last().exit(3);
    let mut life = entry.life();
    life.wait_for(|l| matches!(l, super::Life::Exited(_)))
        .await
        .unwrap();
    assert_eq!(entry.snapshot().exit.map(|x| x.exit_code), Some(3));
    assert_eq!(
        on_disk(&h, &id).state,
        State::Running,
        "saved on a full disk"
    );

    // berthd restarts with the disk still full: the exit file has the code.
    let again = Harness::open(dir.path(), Recorder::replaying(&h.events.events()));
    again.events.until(Action::Exited, 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rec = again.mgr.get(&id).unwrap().snapshot();
    assert_eq!(rec.exit.map(|x| x.exit_code), Some(3));
    assert_eq!(again.events.count(Action::Exited), 1);

    // Without the exit file, the exit is made up as lost: not announced
    // a second time all the same.
    std::fs::remove_file(&exit_file).unwrap();
    let third = Harness::open(dir.path(), Recorder::replaying(&h.events.events()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(third.mgr.get(&id).unwrap().snapshot().state, State::Exited);
    assert_eq!(
        third.events.count(Action::Exited),
        1,
        "{:?}",
        third.events.events()
    );
    disk_full(dir.path(), false);
}

/// A start on a disk too full for the exit's room fails before anything
/// runs, and changes nothing.
#[tokio::test(start_paused = true)]
async fn a_start_without_room_for_the_exit_runs_nothing() {
    let dir = state_dir();
    let id = put_container(dir.path(), "job", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    disk_full(dir.path(), true);
    let err = h.mgr.start(&entry).await.unwrap_err();
    assert!(matches!(err, ContainerError::Io { .. }), "{err:?}");
    assert!(h.launcher.runs().is_empty());
    assert!(h.cgroups.live.lock().unwrap().is_empty(), "a cgroup leaked");
    assert_eq!(entry.snapshot().state, State::Created);
    disk_full(dir.path(), false);
}

/// A crash after a start was saved and before STARTED was published: the
/// next berthd announces it, before the run's exit (issue 23, item 5).
#[tokio::test(start_paused = true)]
async fn a_start_a_crash_kept_quiet_is_announced_at_load() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    // The event log as the crash left it: without STARTED.
    let again = Harness::open(dir.path(), Recorder::new());
    again.events.until(Action::Exited, 1).await;
    assert_eq!(
        actions(&again.events, &id),
        [Action::Started, Action::Exited]
    );
    // Announced once: a log that has it is not told again.
    let third = Harness::open(dir.path(), Recorder::replaying(&h.events.events()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(third.events.count(Action::Started), 1);
}

/// Update and Start racing a forced Remove: each either happens before the
/// removal or is NOT_FOUND, never an internal error, and an Update that
/// succeeds was announced before the removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_or_start_racing_a_remove_is_not_found() {
    for trial in 0..40 {
        let dir = state_dir();
        let id = put_container(dir.path(), "web", Policy::No);
        let h = Harness::open(dir.path(), Recorder::new());
        h.launcher.exit_on(&[libc::SIGKILL]);
        let entry = h.mgr.get(&id).unwrap();
        if trial % 2 == 0 {
            h.mgr.start(&entry).await.unwrap();
        }
        let (mgr, e) = (h.mgr.clone(), entry.clone());
        let removal = tokio::spawn(async move { mgr.remove(&e, true).await });
        let (mgr, e) = (h.mgr.clone(), entry.clone());
        let update = tokio::spawn(async move {
            mgr.update(&e, None, Some(Policy::OnFailure { max_retries: 3 }))
                .await
        });
        let (mgr, e) = (h.mgr.clone(), entry.clone());
        let start = tokio::spawn(async move { mgr.start(&e).await });
        removal.await.unwrap().unwrap();
        match update.await.unwrap() {
            Ok(_) => {
                let acts = actions(&h.events, &id);
                let at = |a| acts.iter().position(|x| *x == a);
                assert!(at(Action::Updated) < at(Action::Removed), "{acts:?}");
            }
            Err(ContainerError::NotFound { .. }) => {}
            Err(e) => panic!("trial {trial}: update: {e:?}"),
        }
        match start.await.unwrap() {
            Ok(_) | Err(ContainerError::NotFound { .. }) => {}
            // Started already (the odd trials' container runs).
            Err(ContainerError::InvalidTransition { .. }) if trial % 2 == 0 => {}
            Err(e) => panic!("trial {trial}: start: {e:?}"),
        }
        assert!(h.cgroups.live.lock().unwrap().is_empty(), "a cgroup leaked");
    }
}
