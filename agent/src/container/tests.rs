//! Lifecycle races as deterministic tests: fakes for the launcher, the
//! cgroups and the event sink (see `testkit`), and tokio's paused clock,
//! so a restart delay or a stop timeout passes only when nothing else can
//! run.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::restart::Policy;
use super::state::State;
use super::testkit::{put_container, Harness, Recorder};
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

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_restart_delay_calls_the_restart_off() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::Always);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    h.launcher.last().exit(1);
    h.events.until(Action::Restarting, 1).await;
    assert_eq!(entry.snapshot().state, State::Restarting);

    let (rec, killed) = h.mgr.stop(entry.clone(), None).await.unwrap();
    assert_eq!((rec.state, killed), (State::Exited, false));
    assert!(rec.stopped_by_user);
    // Far past any back-off: the timer has fired and must have done nothing.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.launcher.runs().len(), 1, "the container was restarted");
    assert_eq!(entry.snapshot().state, State::Exited);
    assert_eq!(on_disk(&h, &id).state, State::Exited);
    assert_eq!(h.events.count(Action::Started), 1);
}

#[tokio::test(start_paused = true)]
async fn an_exit_during_a_stop_ends_the_stop_with_one_exit() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    // The process exits as soon as it gets the stop signal.
    h.launcher.exit_on(&[libc::SIGTERM]);
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();

    let (rec, killed) = h.mgr.stop(entry.clone(), Some(30)).await.unwrap();
    assert_eq!((rec.state, killed), (State::Exited, false));
    assert_eq!(rec.exit.map(|x| x.exit_code), Some(128 + libc::SIGTERM));
    assert_eq!(*h.launcher.last().signals.lock().unwrap(), [libc::SIGTERM]);
    // The same run reported again, as a re-adoption might (with the exit
    // time of its own): still one exit.
    h.mgr.finish_exit(&entry, super::lost_exit()).await;
    assert_eq!(h.events.count(Action::Exited), 1, "{:?}", h.events.events());
    assert_eq!(entry.snapshot().exit, rec.exit);
    assert_eq!(on_disk(&h, &id).state, State::Exited);
    assert!(h.cgroups.live.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_start_after_a_remove_is_not_found_and_launches_nothing() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    // Remove gets the container's ops lock first; Start had looked it up.
    let (removed, started) = tokio::join!(h.mgr.remove(&entry, true), h.mgr.start(&entry));
    removed.unwrap();
    assert!(
        matches!(started, Err(ContainerError::NotFound { .. })),
        "{started:?}"
    );
    assert!(
        h.launcher.runs().is_empty(),
        "a removed container was started"
    );
    assert_eq!(
        h.cgroups.created.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(!h.record_path(&id).exists());
}

#[tokio::test(start_paused = true)]
async fn a_start_before_a_remove_runs_and_is_removed_leaving_nothing() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    h.launcher.exit_on(&[libc::SIGKILL]);
    let entry = h.mgr.get(&id).unwrap();
    let (started, removed) = tokio::join!(h.mgr.start(&entry), h.mgr.remove(&entry, true));
    assert_eq!(started.unwrap().state, State::Running);
    removed.unwrap();
    assert_eq!(*h.launcher.last().signals.lock().unwrap(), [libc::SIGKILL]);
    assert!(h.cgroups.live.lock().unwrap().is_empty(), "a cgroup leaked");
    assert!(matches!(
        h.mgr.get(&id),
        Err(ContainerError::NotFound { .. })
    ));
    assert!(!h.record_path(&id).exists());
    assert_eq!(h.events.count(Action::Exited), 1);
    assert_eq!(h.events.count(Action::Removed), 1);
}

/// Copies the container `id` of `from` to a new state directory with
/// `record` as its container.json: the disk as a crash at that moment
/// left it.
fn crashed_copy(from: &Harness, id: &str, record: &[u8]) -> tempfile::TempDir {
    let to = state_dir();
    let src = from.root.join("containers").join(id);
    let dst = to.path().join("containers").join(id);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(dst.join(super::entry::RECORD_FILE), record).unwrap();
    to
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_two_persists_reopens_consistently() {
    let dir = state_dir();
    let id = put_container(dir.path(), "job", Policy::OnFailure { max_retries: 0 });
    let h = Harness::open(dir.path(), Recorder::new());
    // The record on disk at each announcement: for an exit, what a crash
    // right after the announcement (before its record is saved) leaves; for
    // a restart, what a crash before the restart's start leaves.
    let disk = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (disk, path) = (disk.clone(), h.record_path(&id));
        h.events.on_publish(move |ev| {
            if let Ok(bytes) = std::fs::read(&path) {
                disk.lock().unwrap().push((ev.action, bytes));
            }
        });
    }
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    h.launcher.last().exit(3);
    h.events.until(Action::Restarting, 1).await;
    let snapshots = disk.lock().unwrap().clone();
    let at = |action| {
        snapshots
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, b)| b.clone())
            .expect("a snapshot")
    };
    let announced = h.events.events();
    let upto = |action| {
        let n = announced.iter().position(|e| e.action == action).unwrap();
        announced[..=n].to_vec()
    };

    // Crash after the exit was announced, before its record was saved.
    let crashed = crashed_copy(&h, &id, &at(Action::Exited));
    let log = Recorder::replaying(&upto(Action::Exited));
    let again = Harness::open(crashed.path(), log.clone());
    log.until(Action::Started, 2).await;
    assert_eq!(log.count(Action::Exited), 1, "the exit was announced twice");
    let rec = again.mgr.get(&id).unwrap().snapshot();
    assert_eq!((rec.state, rec.restart_count), (State::Running, 1));
    assert_eq!(rec.exit.map(|x| x.exit_code), Some(3));
    let saved = on_disk(&again, &id);
    assert_eq!((saved.state, saved.restart_count), (State::Running, 1));

    // Crash after the restart was scheduled and saved, before it started.
    let crashed = crashed_copy(&h, &id, &at(Action::Restarting));
    let log = Recorder::replaying(&upto(Action::Restarting));
    let again = Harness::open(crashed.path(), log.clone());
    log.until(Action::Started, 2).await;
    let rec = again.mgr.get(&id).unwrap().snapshot();
    assert_eq!((rec.state, rec.restart_count), (State::Running, 1));
    assert_eq!(on_disk(&again, &id).state, State::Running);
    assert_eq!(log.count(Action::Exited), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_kill_changes_nothing() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    let before = std::fs::read(h.record_path(&id)).unwrap();
    for sig in [Signal::SIGKILL, Signal::SIGTERM, Signal::SIGUSR1] {
        let err = h.mgr.kill(&entry, sig).unwrap_err();
        assert!(
            matches!(err, ContainerError::InvalidTransition { .. }),
            "{err:?}"
        );
    }
    assert_eq!(std::fs::read(h.record_path(&id)).unwrap(), before);
    assert!(!entry.snapshot().stopped_by_user);
    assert!(h.events.events().is_empty());

    // Exited, the same.
    h.mgr.start(&entry).await.unwrap();
    h.launcher.last().exit(0);
    let mut life = entry.life();
    life.wait_for(|l| matches!(l, super::Life::Exited(_)))
        .await
        .unwrap();
    let before = std::fs::read(h.record_path(&id)).unwrap();
    let events = h.events.events().len();
    assert!(h.mgr.kill(&entry, Signal::SIGKILL).is_err());
    assert_eq!(std::fs::read(h.record_path(&id)).unwrap(), before);
    assert!(!entry.snapshot().stopped_by_user);
    assert_eq!(h.events.events().len(), events);
}

/// Concurrent transitions of one container (kills from several clients,
/// an update) are saved one at a time: none fails for another's write and
/// the record on disk always parses (found by review: they wrote the same
/// temporary file at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_kills_and_updates_keep_the_record() {
    let dir = state_dir();
    let id = put_container(dir.path(), "web", Policy::No);
    let h = Harness::open(dir.path(), Recorder::new());
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    let mut kill_errors = 0;
    let mut corrupt = 0;
    for round in 0..100 {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mgr = h.mgr.clone();
            let e = entry.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                mgr.kill(&e, Signal::SIGTERM)
            }));
        }
        // An update with a longer record (labels-free, but a new policy).
        let mgr = h.mgr.clone();
        let e = entry.clone();
        let upd = tokio::spawn(async move {
            let p = if round % 2 == 0 {
                Policy::OnFailure {
                    max_retries: 123456789,
                }
            } else {
                Policy::No
            };
            mgr.update(&e, None, Some(p)).await
        });
        for t in tasks {
            if let Err(err) = t.await.unwrap() {
                kill_errors += 1;
                if kill_errors < 3 {
                    eprintln!("kill: {err}");
                }
            }
        }
        if let Err(err) = upd.await.unwrap() {
            eprintln!("update: {err}");
        }
        let bytes = std::fs::read(h.record_path(&id)).unwrap();
        if serde_json::from_slice::<super::record::Record>(&bytes).is_err() {
            corrupt += 1;
        }
    }
    assert_eq!(
        (kill_errors, corrupt),
        (0, 0),
        "kill errors, corrupt records"
    );
}

/// A crash after the exit's record was saved and before the restart's:
/// the on-failure container that failed is restarted by the next berthd
/// (found by review; issue 23, 6).
#[tokio::test(start_paused = true)]
async fn a_crash_between_the_exit_and_the_restart_keeps_the_restart() {
    let dir = state_dir();
    let id = put_container(dir.path(), "job", Policy::OnFailure { max_retries: 0 });
    let h = Harness::open(dir.path(), Recorder::new());
    let disk = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (disk, path) = (disk.clone(), h.record_path(&id));
        h.events.on_publish(move |ev| {
            if let Ok(bytes) = std::fs::read(&path) {
                disk.lock().unwrap().push((ev.action, bytes));
            }
        });
    }
    let entry = h.mgr.get(&id).unwrap();
    h.mgr.start(&entry).await.unwrap();
    h.launcher.last().exit(3);
    h.events.until(Action::Restarting, 1).await;
    // The record as the exit's commit saved it: read it back right before
    // the Restarting commit would run = the Restarting snapshot with the
    // restart fields undone.
    let snap = disk
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _)| *a == Action::Restarting)
        .unwrap()
        .1
        .clone();
    let mut rec: super::record::Record = serde_json::from_slice(&snap).unwrap();
    rec.state = State::Exited;
    rec.restart_count = 0;
    rec.backoff = 0;
    let crashed = crashed_copy(&h, &id, &serde_json::to_vec(&rec).unwrap());
    let upto: Vec<_> = h
        .events
        .events()
        .into_iter()
        .take_while(|e| e.action != Action::Restarting)
        .collect();
    let log = Recorder::replaying(&upto);
    let again = Harness::open(crashed.path(), log.clone());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let now = again.mgr.get(&id).unwrap().snapshot();
    assert_eq!(
        log.count(Action::Started),
        2,
        "not restarted: state {:?}, events {:?}",
        now.state,
        log.events().iter().map(|e| e.action).collect::<Vec<_>>()
    );
}
