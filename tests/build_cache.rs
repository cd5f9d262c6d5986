//! End to end: the build cache (hits, the exact rebuild point, no-cache),
//! reproducible builds, RUN --mount (caches kept across builds, tmpfs and
//! context binds left out of the layers), and builds cut short (a failing RUN, a prune
//! meanwhile, a crash of berthd): nothing left behind, the cache kept.

mod common;

use berth::v1 as pb;
use common::build::{build, context, json_build, ok, result, run_out, steps};
use common::Agent;

const CACHED: &str = "FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy
COPY b.txt /b.txt
CMD [\"cat\", \"/copy\", \"/b.txt\"]
";

/// Waits until no container, process, cgroup or build work directory of
/// a build is left.
async fn nothing_left(agent: &Agent) {
    let clean = common::eventually(30, async || {
        agent.processes().is_empty() && agent.cgroups().is_empty()
    })
    .await;
    assert!(clean, "leftover processes or cgroups");
    let ps = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(ps.is_empty(), "{ps:?}");
    let work = agent.state_dir.join("build/work");
    let emptied = common::eventually(30, async || {
        std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(1) == 0
    })
    .await;
    assert!(emptied, "the build's work directory is removed");
}

#[tokio::test]
async fn an_unchanged_rebuild_runs_nothing_and_a_changed_file_rebuilds_from_its_copy() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "cached",
        &[("Dockerfile", CACHED), ("a.txt", "a1\n"), ("b.txt", "b1\n")],
    );
    let first = json_build(&agent, &dir, &["-t", "cached"]);
    assert_eq!(result(&first)["runSteps"], 5, "{first:?}");
    let again = json_build(&agent, &dir, &["-t", "cached"]);
    assert_eq!(result(&again)["runSteps"], 0, "{again:?}");
    assert_eq!(result(&again)["cachedSteps"], 5);
    assert_eq!(
        result(&again)["image"]["id"],
        result(&first)["image"]["id"],
        "the same image"
    );
    // Step 1 is FROM; a.txt changes: FROM, RUN one come from the cache,
    // the COPY of a.txt and every step after it run again.
    std::fs::write(dir.join("a.txt"), "a2\n").unwrap();
    let changed = json_build(&agent, &dir, &["-t", "cached"]);
    let cached: Vec<bool> = steps(&changed).iter().map(|(c, _)| *c).collect();
    assert_eq!(
        cached,
        [false, true, false, false, false, false],
        "{changed:?}"
    );
    let out = run_out(&agent, "cached", "cat /copy /b.txt /one").await;
    assert_eq!(out, "a2\nb1\none\n");
    // Only the tagged image is listed: step results are cache.
    let list = agent
        .images()
        .list(pb::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 2, "busybox and cached: {list:?}");
    // --no-cache runs everything again.
    let fresh = json_build(&agent, &dir, &["--no-cache", "-t", "cached"]);
    assert_eq!(result(&fresh)["runSteps"], 5);
}

#[tokio::test]
async fn a_failing_run_shows_its_output_and_code_and_leaves_nothing() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "fails",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo before\nRUN echo boom >&2; exit 3\nRUN echo never\n",
        )],
    );
    let o = build(&agent, &dir, &["-t", "fails"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("boom"), "the step's output is shown: {out}");
    assert!(!out.contains("never"), "{out}");
    assert!(
        err.contains("step 3/4") && err.contains("exited with code 3"),
        "{err}"
    );
    let missing = agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: "fails".into(),
        })
        .await
        .expect_err("nothing tagged");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // No step container is left, and the build's work directory is gone.
    nothing_left(&agent).await;
}

#[tokio::test]
async fn with_source_date_epoch_layers_and_image_are_reproducible_without_it_times_are_kept() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "repro",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f.txt /f.txt\nRUN echo x > /x\nENV A=1\n",
            ),
            ("f.txt", "f"),
        ],
    );
    let epoch = ["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let a = json_build(&agent, &dir, &epoch);
    // Touch the context: with SOURCE_DATE_EPOCH times are clamped to it.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("f.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let b = json_build(&agent, &dir, &epoch);
    assert_eq!(
        result(&a)["image"]["layers"],
        result(&b)["image"]["layers"],
        "{a:?}\n{b:?}"
    );
    assert_eq!(result(&a)["image"]["id"], result(&b)["image"]["id"]);
    assert_eq!(
        result(&a)["image"]["createdAt"].as_str(),
        Some("2023-11-14T22:13:20Z")
    );
    // A different epoch is a different build: nothing comes from the cache.
    let other = json_build(
        &agent,
        &dir,
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000001"],
    );
    assert_eq!(result(&other)["cachedSteps"], 0, "{other:?}");

    // Without it, file times are kept (make and cargo compare them).
    ok(&build(&agent, &dir, &["-t", "times"]));
    let out = run_out(&agent, "times", "stat -c %Y /f.txt /x").await;
    for t in out.split_whitespace() {
        assert!(t.parse::<u64>().unwrap() > 1_700_000_001, "{out}");
    }
}

#[tokio::test]
async fn an_image_prune_during_a_build_keeps_the_images_the_build_stands_on() {
    use std::io::BufRead;
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "prune",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo a > /a\nRUN sleep 2\nRUN cat /a > /b\n",
        )],
    );
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args(["--host"])
        .arg(&agent.socket)
        .args(["build", "-t", "pruned"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the third step runs, the step images before it are untagged
    // build cache: a prune then must leave them to the build.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("Step 3/4") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.starts_with("Step 3/4")), "{seen:?}");
    let pruned = agent
        .images()
        .prune(pb::PruneImagesRequest::default())
        .await
        .expect("prune")
        .into_inner();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}\n{rest:?}\npruned {pruned:?}");
    let out = run_out(&agent, "pruned", "cat /b").await;
    assert_eq!(out, "a\n");
}

#[tokio::test]
async fn a_build_cut_short_by_a_crash_leaves_nothing_and_its_cache_survives() {
    use std::io::BufRead;
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "crash",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo a > /a\nRUN sleep 600\n",
        )],
    );
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args(["--host"])
        .arg(&agent.socket)
        .args(["build", "-t", "crash"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let reached = lines
        .map_while(|l| l.ok())
        .any(|l| l.starts_with("Step 3/3"));
    assert!(reached);
    // The RUN container exists once its step has begun.
    let running = common::eventually(30, async || !agent.processes().is_empty()).await;
    assert!(running, "the step's container runs");
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    agent.spawn().await;
    // berthd removed the cut-short build's container and work directory.
    nothing_left(&agent).await;
    // The steps that finished are still cached.
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nRUN echo a > /a\nRUN cat /a\n",
    )
    .unwrap();
    let msgs = json_build(&agent, &dir, &[]);
    let cached: Vec<bool> = steps(&msgs).iter().map(|(c, _)| *c).collect();
    assert_eq!(cached, [false, true, false], "{msgs:?}");
}

const MOUNTS: &str = "FROM busybox
RUN --mount=type=cache,target=/cachedir,id=app sh -c 'echo \"$(cat /cachedir/n 2>/dev/null)x\" > /cachedir/n; cp /cachedir/n /seen'
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /tmpfs_seen
RUN --mount=type=bind,source=data,target=/data cat /data/d > /bound && ! touch /data/new
";

#[tokio::test]
async fn run_mounts_keep_caches_across_builds_and_stay_out_of_the_layers() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "mounts",
        &[("Dockerfile", MOUNTS), ("data/d", "from the context\n")],
    );
    ok(&build(&agent, &dir, &["-t", "m1"]));
    nothing_left(&agent).await;
    let check = "cat /seen /tmpfs_seen /bound; for p in /cachedir /scratch /data; do test -e $p && echo $p is in the image; done; true";
    let out = run_out(&agent, "m1", check).await;
    assert_eq!(out, "x\nt\nfrom the context\n", "{out}");
    // Run again: the cache directory kept what the first build wrote.
    ok(&build(&agent, &dir, &["-t", "m2", "--no-cache"]));
    let out = run_out(&agent, "m2", check).await;
    assert_eq!(out, "xx\nt\nfrom the context\n", "{out}");
    // A bound file is an input of its step: changed, the step runs again
    // (the steps before it come from the cache).
    std::fs::write(dir.join("data/d"), "changed\n").unwrap();
    ok(&build(&agent, &dir, &["-t", "m3"]));
    let out = run_out(&agent, "m3", check).await;
    assert_eq!(out, "xx\nt\nchanged\n", "{out}");
}
