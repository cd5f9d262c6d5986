//! The invariants berthd keeps across crashes, checked after a restart by
//! the crash-point test (tests/crash.rs) and the soak (tests/soak.rs).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use berth::v1 as pb;
use pb::restart_policy::Mode::OnFailure;
use pb::ContainerState as CState;

use super::{eventually, sh, Agent};

/// A container labelled with this exits with the label's value, every
/// time: any other recorded code (255 for a lost exit) is a defect.
pub const EXIT_LABEL: &str = "berth.test/exit";

/// What [`check`] saw, for a report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Events in the log.
    pub events: u64,
    /// EXITED events.
    pub exits: u64,
    /// Containers checked (and removed).
    pub containers: u64,
}

/// Every stored event, in order.
pub async fn all_events(agent: &Agent) -> Vec<pb::Event> {
    // A marker: its REMOVED is the last event to read.
    let marker = agent.create(sh("true")).await;
    agent.force_remove(&marker.id).await;
    let mut s = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            from_seq: 1,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut out = Vec::new();
    loop {
        let ev = super::next_event(&mut s).await;
        let end = ev.id == marker.id && ev.action == pb::EventAction::Removed as i32;
        out.push(ev);
        if end {
            return out;
        }
    }
}

/// The invariants, after berthd died at `point` and was started again:
/// recovery settles, records match reality, the event log has every
/// sequence number once, every exit is announced once with its true code;
/// then every container is removed and nothing may be left.
/// An on-failure container that exited with a failing code and has
/// retries left: its restart is still to come. Between saving an exit and
/// scheduling the restart berthd releases the run's cgroup and mounts, so
/// on a loaded machine a poll can see it there; if the restart was lost
/// instead, it stays so and the settling fails naming it.
fn restart_due(c: &pb::Container) -> bool {
    let failed = c.exit.as_ref().is_some_and(|x| x.exit_code != 0);
    let policy = c.spec.as_ref().and_then(|s| s.restart_policy);
    c.state == CState::Exited as i32
        && failed
        && !c.stopped_by_user
        && policy.is_some_and(|p| {
            p.mode == OnFailure as i32 && p.max_retries > 0 && c.restart_count < p.max_retries
        })
}

pub async fn check(agent: &Agent, point: &str) -> Seen {
    let containers = || async {
        agent
            .containers()
            .list(pb::ListContainersRequest::default())
            .await
            .expect("list")
            .into_inner()
            .containers
    };
    let live =
        |c: &pb::Container| c.pid > 0 && std::path::Path::new(&format!("/proc/{}", c.pid)).exists();
    // Recovery settles: restarts due are taken, exits recorded (a run that
    // ended while berthd was down is seen as ended soon after it is back,
    // not necessarily by the time it answers).
    let settled = eventually(30, async || {
        containers().await.iter().all(|c| {
            let running = c.state == CState::Running as i32 || c.state == CState::Paused as i32;
            c.state != CState::Restarting as i32
                && !(c.labels.contains_key(EXIT_LABEL) && c.state == CState::Running as i32)
                && (!running || live(c))
                && !restart_due(c)
        })
    })
    .await;
    if !settled {
        let due: Vec<String> = containers()
            .await
            .iter()
            .filter(|c| restart_due(c))
            .map(|c| format!("{} ({} of its retries used)", c.name, c.restart_count))
            .collect();
        panic!("{point}: containers did not settle; exited with restarts due: {due:?}");
    }
    let mut expected = HashMap::new();
    for c in containers().await {
        if c.state == CState::Running as i32 || c.state == CState::Paused as i32 {
            assert!(
                live(&c),
                "{point}: {} is {} but its process is gone",
                c.name,
                c.state
            );
        }
        if let Some(want) = c.labels.get(EXIT_LABEL) {
            if let Some(exit) = &c.exit {
                assert_eq!(&exit.exit_code.to_string(), want, "{point}: {}", c.name);
            }
            // Restart policies held across the crashes: a failing
            // on-failure container that is done has used every retry.
            let policy = c.spec.as_ref().and_then(|s| s.restart_policy);
            if let Some(p) = policy.filter(|p| p.mode == OnFailure as i32) {
                if c.state == CState::Exited as i32 && want != "0" {
                    assert_eq!(
                        c.restart_count, p.max_retries,
                        "{point}: {} stopped restarting early",
                        c.name
                    );
                }
            }
            expected.insert(c.id.clone(), want.clone());
        }
    }
    let events = all_events(agent).await;
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(
            ev.seq,
            i as u64 + 1,
            "{point}: a gap or duplicate at {ev:?}"
        );
    }
    let mut seen = Seen {
        events: events.len() as u64,
        ..Default::default()
    };
    // Each exit once (no two EXITED events of one container for the same
    // finish), never "lost" (255), and with the code the container exits with.
    let mut exits: HashMap<(String, i64), u32> = HashMap::new();
    for ev in events
        .iter()
        .filter(|e| e.action == pb::EventAction::Exited as i32)
    {
        seen.exits += 1;
        let exit = ev.exit.unwrap_or_default();
        let at = exit
            .finished_at
            .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
        *exits.entry((ev.id.clone(), at)).or_default() += 1;
        assert_ne!(
            exit.exit_code, 255,
            "{point}: an exit recorded as lost: {ev:?}"
        );
        if let Some(want) = ev.labels.get(EXIT_LABEL).or_else(|| expected.get(&ev.id)) {
            assert_eq!(&exit.exit_code.to_string(), want, "{point}: {ev:?}");
        }
    }
    for ((id, at), n) in exits {
        assert_eq!(
            n, 1,
            "{point}: the exit of {id} at {at} was announced {n} times"
        );
    }
    store_is_clean(&agent.state_dir, point);
    // Every container can still be removed, and then nothing is left.
    for c in containers().await {
        seen.containers += 1;
        agent.force_remove(&c.id).await;
    }
    agent.assert_clean().await;
    seen
}

/// Each container's runs in `events` (as [`all_events`] returns them):
/// every EXITED has its STARTED since the container's previous EXITED, and
/// no run is started twice without an exit between. Catches a start a
/// crash kept quiet and an exit announced twice with different finish
/// times. Not for containers whose start can fail before exec (such a
/// start ends in an EXITED without a STARTED).
pub fn check_runs(events: &[pb::Event], point: &str) {
    let mut running: HashMap<&str, bool> = HashMap::new();
    for ev in events {
        let open = running.entry(ev.id.as_str()).or_default();
        if ev.action == pb::EventAction::Started as i32 {
            assert!(
                !*open,
                "{point}: {} started twice in one run: {ev:?}",
                ev.id
            );
            *open = true;
        } else if ev.action == pb::EventAction::Exited as i32 {
            assert!(*open, "{point}: an EXITED without its STARTED: {ev:?}");
            *open = false;
        }
    }
}

/// The image store keeps nothing no one uses: every unpacked layer belongs
/// to a stored image or to a container (whose image may have been removed),
/// every blob is a stored image's config, manifest or one of the layer
/// blobs its manifest lists. A crash between
/// storing layers and tagging the image must not leave them behind forever.
pub fn store_is_clean(state_dir: &Path, point: &str) {
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let hex = |d: &serde_json::Value| {
        let d = d.as_str().unwrap_or_default();
        d.strip_prefix("sha256:").unwrap_or(d).to_string()
    };
    let images = state_dir.join("images");
    let index = images.join("images.json");
    let (mut layers, mut blobs) = (HashSet::new(), HashSet::new());
    if index.exists() {
        for img in json(&index)["images"].as_array().into_iter().flatten() {
            layers.extend(img["layers"].as_array().into_iter().flatten().map(hex));
            blobs.insert(hex(&img["id"]));
            let manifest = hex(&img["manifest_digest"]);
            // The layer blobs its manifest lists are kept too (for save
            // and push).
            let stored = images.join("blobs/sha256").join(&manifest);
            if stored.exists() {
                let m = json(&stored);
                blobs.extend(
                    m["layers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| hex(&l["digest"])),
                );
            }
            blobs.insert(manifest);
        }
    }
    if let Ok(dirs) = std::fs::read_dir(state_dir.join("containers")) {
        for d in dirs.flatten() {
            let rec = d.path().join("container.json");
            if rec.exists() {
                layers.extend(
                    json(&rec)["layers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(hex),
                );
            }
        }
    }
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for l in names(&images.join("layers")) {
        assert!(
            layers.contains(&l),
            "{point}: layer {l} is stored but no image or container uses it"
        );
    }
    for b in names(&images.join("blobs/sha256")) {
        assert!(
            blobs.contains(&b),
            "{point}: blob {b} is stored but no image uses it"
        );
    }
}
