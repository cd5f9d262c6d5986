//! End to end: rename and prune (issue 22). Prune removes created and
//! exited containers (never running or paused ones) with their layers and
//! logs and reports the bytes; image prune keeps what containers use;
//! rename is checked, saved, announced and seen on the network; berthctl's
//! `rename`, `container prune`, `image prune` and `system prune`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use berth::v1 as pb;
use berth::v1::networks_client::NetworksClient;
use common::cli::{code, expect_failure, json_lines, ok, stdout};
use common::{bin, eventually, image, next_event, sh, Agent};
use tonic::Code;

/// A container that keeps running until killed.
fn sleeper(name: &str) -> pb::ContainerSpec {
    let mut s = sh("trap 'exit 0' TERM; sleep 1000 & wait");
    s.name = name.into();
    s
}

fn named(name: &str, mut spec: pb::ContainerSpec) -> pb::ContainerSpec {
    spec.name = name.into();
    spec
}

async fn names(agent: &Agent) -> Vec<String> {
    let mut v: Vec<String> = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    v.sort();
    v
}

async fn prune(
    agent: &Agent,
    req: pb::PruneContainersRequest,
) -> Result<pb::PruneContainersResponse, tonic::Status> {
    agent.containers().prune(req).await.map(|r| r.into_inner())
}

async fn rename(agent: &Agent, id: &str, new_name: &str) -> Result<pb::Container, tonic::Status> {
    agent
        .containers()
        .rename(pb::RenameContainerRequest {
            id: id.into(),
            new_name: new_name.into(),
        })
        .await
        .map(|r| r.into_inner().container.expect("the container"))
}

/// berthctl with `input` on its standard input (the prompt's answer).
fn ctl_answering(agent: &Agent, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running berthctl");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("answering");
    }
    child.wait_with_output().expect("berthctl output")
}

#[tokio::test]
async fn prune_removes_created_and_exited_containers_and_counts_their_bytes() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let created = agent.create(named("created", sh("true"))).await;
    // 1 MiB in its writable layer, and a line in its log.
    let exited = agent
        .run(named(
            "exited",
            sh("dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null; echo done"),
        ))
        .await;
    assert_eq!(
        agent.wait(&exited.id).await.exit.expect("exit").exit_code,
        0
    );
    let running = agent.run(sleeper("running")).await;
    let paused = agent.run(sleeper("paused")).await;
    agent
        .containers()
        .pause(pb::PauseContainerRequest {
            id: paused.id.clone(),
        })
        .await
        .expect("pause");

    let r = prune(&agent, pb::PruneContainersRequest::default())
        .await
        .expect("prune");
    let mut removed = r.removed.clone();
    removed.sort();
    let mut want = vec![created.id.clone(), exited.id.clone()];
    want.sort();
    assert_eq!(removed, want);
    assert!(
        r.reclaimed_bytes >= 1024 * 1024 + 5,
        "reclaimed {} bytes",
        r.reclaimed_bytes
    );
    assert_eq!(names(&agent).await, ["paused", "running"]);
    let gone = agent
        .containers()
        .inspect(pb::InspectContainerRequest {
            id: "exited".into(),
        })
        .await
        .expect_err("pruned");
    assert_eq!(gone.code(), Code::NotFound);

    // Nothing left to prune: berthctl says so, Docker's way.
    let out = ok(&agent, &["container", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    assert_eq!(names(&agent).await, ["paused", "running"]);
    agent.force_remove(&running.id).await;
    agent.force_remove(&paused.id).await;
}

#[tokio::test]
async fn prune_filters_by_label_and_creation_time_and_refuses_bad_ones() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let labelled = |name: &str, v: &str| {
        let mut s = named(name, sh("true"));
        s.labels.insert("app".into(), v.into());
        s
    };
    let a = agent.create(labelled("a", "x")).await;
    agent.create(labelled("b", "y")).await;
    let c = agent.create(named("c", sh("true"))).await;

    // Bad input is INVALID_ARGUMENT and removes nothing.
    let too_late = pb::PruneContainersRequest {
        until: Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        }),
        ..Default::default()
    };
    let e = prune(&agent, too_late).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let huge_key = pb::PruneContainersRequest {
        labels: [("k".repeat(100_000), String::new())].into(),
        ..Default::default()
    };
    let e = prune(&agent, huge_key).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 300, "{e:?}");
    assert_eq!(names(&agent).await, ["a", "b", "c"]);

    // A label with a value, then any value of a key.
    let r = prune(
        &agent,
        pb::PruneContainersRequest {
            labels: [("app".to_string(), "x".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("prune");
    assert_eq!(r.removed, std::slice::from_ref(&a.id));
    assert_eq!(names(&agent).await, ["b", "c"]);

    // Only containers created before `until`.
    let before_c = c.created_at.expect("created_at");
    let r = prune(
        &agent,
        pb::PruneContainersRequest {
            until: Some(prost_types::Timestamp {
                seconds: before_c.seconds - 3600,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await
    .expect("prune");
    assert!(r.removed.is_empty(), "{r:?}");
    let r = prune(
        &agent,
        pb::PruneContainersRequest {
            labels: [("app".to_string(), String::new())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("prune");
    assert_eq!(r.removed.len(), 1);
    assert_eq!(names(&agent).await, ["c"]);
}

#[tokio::test]
async fn berthctl_container_prune_asks_filters_and_prints_json() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = named("keep", sh("true"));
    spec.labels.insert("tier".into(), "web".into());
    let keep = agent.create(spec).await;
    let mut spec = named("go", sh("true"));
    spec.labels.insert("tier".into(), "db".into());
    let go = agent.create(spec).await;

    // No answer (or "n") removes nothing.
    let args = ["container", "prune", "--filter", "label=tier=db"];
    for answer in ["", "n\n"] {
        let o = ctl_answering(&agent, &args, answer);
        assert_eq!(code(&o), 0, "{o:?}");
        assert_eq!(
            stdout(&o),
            "WARNING! This will remove all stopped containers.\n\
             Are you sure you want to continue? [y/N] "
        );
        assert_eq!(names(&agent).await, ["go", "keep"]);
    }
    let o = ctl_answering(&agent, &args, "y\n");
    assert_eq!(code(&o), 0, "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "Deleted Containers:\n{}\n\nTotal reclaimed space: ",
            go.id
        )),
        "{out}"
    );
    assert_eq!(names(&agent).await, ["keep"]);

    // A filter berthctl does not know is refused before anything is sent.
    let bad = ["container", "prune", "-f", "--filter", "dangling=true"];
    expect_failure(
        &agent.ctl(&bad),
        &bad,
        1,
        &["invalid filter", "dangling=true"],
    );
    let bad = ["container", "prune", "-f", "--filter", "until=whenever"];
    expect_failure(&agent.ctl(&bad), &bad, 1, &["invalid filter"]);
    assert_eq!(names(&agent).await, ["keep"]);

    // -o json prints the API response.
    let out = ok(
        &agent,
        &[
            "-o",
            "json",
            "container",
            "prune",
            "-f",
            "--filter",
            "until=0s",
        ],
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["removed"][0], keep.id.as_str(), "{out}");
    assert!(names(&agent).await.is_empty());
}

/// An image of its own (busybox with one more file, named `file`: the
/// image id depends on it, not on `reference`), tagged `reference`.
async fn import_variant(agent: &Agent, reference: &str, file: &str) -> String {
    let archive = image::busybox_with(
        reference,
        vec![image::Entry::File(file.into(), vec![7u8; 4096], 0o644)],
    );
    agent
        .import(archive, "")
        .await
        .expect("import")
        .images
        .remove(0)
        .id
}

async fn image_ids(agent: &Agent) -> Vec<String> {
    let mut v: Vec<String> = agent
        .images()
        .list(pb::ListImagesRequest {})
        .await
        .expect("images")
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn image_prune_keeps_what_containers_use_and_all_takes_unused_tagged_ones() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // Dangling: its tag moved to a newer import.
    let dangling = import_variant(&agent, "docker.io/library/app:1", "app1").await;
    let app = import_variant(&agent, "docker.io/library/app:1", "app2").await;
    // Dangling too, but a stopped container uses it.
    let old_db = import_variant(&agent, "docker.io/library/db:1", "db1").await;
    let stopped = agent
        .run(pb::ContainerSpec {
            image: "db:1".into(),
            command: vec!["true".into()],
            ..Default::default()
        })
        .await;
    agent.wait(&stopped.id).await;
    let db = import_variant(&agent, "docker.io/library/db:1", "db2").await;
    let before = image_ids(&agent).await;
    assert_eq!(before.len(), 5);

    let bad = pb::PruneImagesRequest {
        labels: vec!["x".repeat(10_000)],
        ..Default::default()
    };
    let e = agent.images().prune(bad).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(image_ids(&agent).await, before);

    let r = agent
        .images()
        .prune(pb::PruneImagesRequest::default())
        .await
        .expect("prune")
        .into_inner();
    assert_eq!(r.deleted, std::slice::from_ref(&dangling));
    // Its own layer (busybox and 4 KiB) is gone.
    assert!(r.reclaimed_bytes >= 4096, "{r:?}");
    assert!(!image_ids(&agent).await.contains(&dangling));
    assert!(image_ids(&agent).await.contains(&old_db));

    // -a: every image no container uses; the stopped container's stays.
    let out = ok(&agent, &["image", "prune", "-a", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    for gone in [
        "untagged: docker.io/library/app:1",
        "untagged: docker.io/library/busybox:latest",
    ] {
        assert!(out.contains(gone), "{out}");
    }
    assert!(out.contains(&format!("deleted: {app}")), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(image_ids(&agent).await, std::slice::from_ref(&old_db));
    assert!(!image_ids(&agent).await.contains(&db));
    // The container still starts from its image.
    agent
        .containers()
        .start(pb::StartContainerRequest {
            id: stopped.id.clone(),
        })
        .await
        .expect("start");
    assert_eq!(
        agent.wait(&stopped.id).await.exit.expect("exit").exit_code,
        0
    );
}

#[tokio::test]
async fn rename_is_checked_saved_announced_and_survives_a_restart() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.run(sleeper("before")).await;
    let taken = agent.create(named("taken", sh("true"))).await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            actions: vec![pb::EventAction::Renamed as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();

    // Taken, bad or id-like names change nothing.
    let e = rename(&agent, "before", "taken").await.expect_err("taken");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    for bad in [
        "-dash",
        "sp ace",
        &"n".repeat(129),
        &"a".repeat(64),
        &taken.id[..16],
    ] {
        let e = rename(&agent, "before", bad).await.expect_err("bad name");
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().len() < 300, "{e:?}");
    }
    let e = rename(&agent, "nobody", "fine").await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(names(&agent).await, ["before", "taken"]);

    // A running container is renamed.
    let renamed = rename(&agent, &c.id[..12], "after").await.expect("rename");
    assert_eq!(renamed.name, "after");
    assert_eq!(agent.inspect("after").await.id, c.id);
    let e = agent
        .containers()
        .inspect(pb::InspectContainerRequest {
            id: "before".into(),
        })
        .await
        .expect_err("old name");
    assert_eq!(e.code(), Code::NotFound);
    let ev = next_event(&mut events).await;
    assert_eq!(
        (
            ev.action,
            ev.id.as_str(),
            ev.name.as_str(),
            ev.old_name.as_str()
        ),
        (
            pb::EventAction::Renamed as i32,
            c.id.as_str(),
            "after",
            "before"
        )
    );
    // Its own name again: nothing to do; the old name is free again.
    rename(&agent, "after", "after").await.expect("same name");
    agent.create(named("before", sh("true"))).await;

    // Saved: a berthd killed at once still knows it.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    assert_eq!(agent.inspect("after").await.id, c.id);
    assert_eq!(names(&agent).await, ["after", "before", "taken"]);

    // berthctl: silent, as Docker's; ps shows the new name.
    let out = ok(&agent, &["rename", "after", "renamed-2"]);
    assert_eq!(out, "");
    let ps = ok(&agent, &["ps"]);
    assert!(ps.contains("renamed-2") && !ps.contains("after"), "{ps}");
    let args = ["rename", "renamed-2", "taken"];
    expect_failure(&agent.ctl(&args), &args, 1, &["taken", "already in use"]);
    let out = ok(
        &agent,
        &["-o", "json", "container", "rename", "renamed-2", "last"],
    );
    assert_eq!(json_lines(&out)[0]["container"]["name"], "last", "{out}");
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn a_renamed_container_resolves_by_its_new_name_on_its_network() {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bpr0", "--bridge-subnet", "10.78.0.0/24"]).await;
    agent.import_busybox().await;
    NetworksClient::new(agent.channel.clone())
        .create_network(pb::CreateNetworkRequest {
            name: "front".into(),
            ..Default::default()
        })
        .await
        .expect("network");
    let on_front = |mut s: pb::ContainerSpec| {
        s.network = "front".into();
        s
    };
    let target = agent.run(on_front(sleeper("old-name"))).await;
    let watcher = agent
        .run(on_front(named(
            "watcher",
            sh(
                "until grep -qw old-name /etc/hosts; do sleep 0.1; done; echo seen; \
                until grep -qw new-name /etc/hosts && ! grep -qw old-name /etc/hosts; \
                do sleep 0.1; done; echo renamed; sleep 1000",
            ),
        )))
        .await;
    agent.wait_for_output(&watcher.id, "seen").await;
    rename(&agent, &target.id, "new-name")
        .await
        .expect("rename");
    agent.wait_for_output(&watcher.id, "renamed").await;
    agent.force_remove(&watcher.id).await;
    agent.force_remove(&target.id).await;
}

#[tokio::test]
async fn system_prune_removes_containers_networks_images_and_volumes() {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bps0", "--bridge-subnet", "10.79.0.0/24"]).await;
    agent.import_busybox().await;
    let nets = NetworksClient::new(agent.channel.clone());
    for name in ["unused", "held"] {
        nets.clone()
            .create_network(pb::CreateNetworkRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect("network");
    }
    let mut on_held = sleeper("held-by");
    on_held.network = "held".into();
    let running = agent.run(on_held).await;
    let stopped = agent.create(named("stopped", sh("true"))).await;
    import_variant(&agent, "docker.io/library/extra:1", "x").await;
    agent
        .volumes()
        .create(pb::CreateVolumeRequest {
            name: "spare".into(),
            ..Default::default()
        })
        .await
        .expect("volume");

    // The prompt lists what goes; no answer keeps everything.
    let o = ctl_answering(&agent, &["system", "prune", "--volumes"], "");
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by \
         at least one container\n  - all volumes not used by at least one container\n  - all \
         dangling images\nAre you sure you want to continue? [y/N] "
    );
    assert_eq!(names(&agent).await, ["held-by", "stopped"]);

    let out = ok(&agent, &["system", "prune", "-f", "-a", "--volumes"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Containers:\n{}\n\nDeleted Networks:\nunused\n\nDeleted Images:\n\
             untagged: docker.io/library/extra:1\ndeleted: sha256:",
            stopped.id
        )),
        "{out}"
    );
    // The running container keeps busybox.
    assert!(!out.contains("busybox"), "{out}");
    assert!(out.contains("Deleted Volumes:\nspare\n"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(names(&agent).await, ["held-by"]);
    let left: Vec<String> = nets
        .clone()
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("networks")
        .into_inner()
        .networks
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(left, ["held"]);

    // -o json: the API responses, one object.
    agent.create(named("again", sh("true"))).await;
    let out = ok(&agent, &["-o", "json", "system", "prune", "-f"]);
    let v = &json_lines(&out)[0];
    assert_eq!(
        v["containers"]["removed"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    assert!(
        v.get("images").is_some() && v.get("networks").is_some(),
        "{out}"
    );
    assert!(eventually(5, async || names(&agent).await == ["held-by"]).await);
    agent.force_remove(&running.id).await;
}
