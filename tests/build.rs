//! End to end: `berthctl build` (Builds.Build) with the real agent, real
//! containers for RUN, and the built images run afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use berth::v1 as pb;
use common::{sh, Agent};

/// A context directory with `files` (path, content).
fn context(agent: &Agent, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = agent.dir.join(name);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

fn build(agent: &Agent, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let d = dir.to_string_lossy().to_string();
    args.push(&d);
    agent.ctl(&args)
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "build failed: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The build's progress messages (`-o json`): the last is the result.
fn json_build(agent: &Agent, dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["-o", "json"];
    args.extend_from_slice(extra);
    let o = build(agent, dir, &args);
    ok(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn result(msgs: &[serde_json::Value]) -> &serde_json::Value {
    &msgs.last().expect("messages")["result"]
}

async fn image(agent: &Agent, name: &str) -> pb::Image {
    agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: name.to_string(),
        })
        .await
        .expect("inspect image")
        .into_inner()
        .image
        .expect("an image")
}

/// Runs `spec` (image `img`) and returns its stdout, asserting exit 0.
async fn run_out(agent: &Agent, img: &str, script: &str) -> String {
    let mut spec = sh(script);
    spec.image = img.to_string();
    // Past the image's own entrypoint, if it has one.
    spec.entrypoint = Some(pb::StringList { values: Vec::new() });
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{out}\n{err}");
    out
}

const EVERY_INSTRUCTION: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    MODE="two words"
LABEL org.example.name="berth test" version=1
WORKDIR $APP_HOME
COPY --chown=1000:1000 --chmod=640 greeting.txt ./
COPY conf/ /etc/app/
RUN echo "$GREETING from run" > made.txt && rm /etc/image-file && mkdir -p /data && chown 1000 /data
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD RUN echo child
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting.txt made.txt /etc/app/a.conf; id -u; pwd; cat /etc/image-file || echo no-file"]
"#;

#[tokio::test]
async fn every_instruction_ends_up_in_an_image_that_runs() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "every",
        &[
            ("Dockerfile", EVERY_INSTRUCTION),
            ("greeting.txt", "from the context\n"),
            ("conf/a.conf", "conf a\n"),
        ],
    );
    let out = ok(&build(
        &agent,
        &dir,
        &["-t", "every:1", "--build-arg", "GREETING=hi"],
    ));
    assert!(out.contains("Step 1/"), "{out}");
    assert!(
        out.contains("Successfully tagged docker.io/library/every:1"),
        "{out}"
    );

    let img = image(&agent, "every:1").await;
    let c = img.config.clone().expect("a config");
    assert!(
        c.env.contains(&"APP_HOME=/srv/app".to_string()),
        "{:?}",
        c.env
    );
    assert!(c.env.contains(&"MODE=two words".to_string()), "{:?}", c.env);
    assert!(
        !c.env.iter().any(|e| e.starts_with("GREETING=")),
        "ARGs are not kept"
    );
    assert_eq!(c.working_dir, "/srv/app");
    assert_eq!(c.user, "1000:1000");
    assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(c.stop_signal, "SIGUSR1");
    assert_eq!(
        c.labels.get("org.example.name").map(String::as_str),
        Some("berth test")
    );
    assert_eq!(c.labels.get("version").map(String::as_str), Some("1"));
    assert_eq!(c.exposed_ports, ["53/udp", "8080/tcp"]);
    assert_eq!(c.volumes, ["/data"]);
    assert_eq!(c.cmd.len(), 1, "{:?}", c.cmd);
    assert!(c.cmd[0].starts_with("cat greeting.txt"), "{:?}", c.cmd);

    let mut spec = pb::ContainerSpec {
        image: "every:1".into(),
        ..Default::default()
    };
    spec.command.clear();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{out}\n{err}");
    assert!(out.contains("from the context"), "{out}");
    assert!(
        out.contains("hi from run"),
        "the build arg reached RUN: {out}"
    );
    assert!(out.contains("conf a"), "{out}");
    assert!(out.contains("\n1000\n"), "USER applies: {out}");
    assert!(out.contains("/srv/app"), "WORKDIR applies: {out}");
    assert!(out.contains("no-file"), "a file RUN deleted is gone: {out}");

    // Ownership and mode from COPY --chown/--chmod, seen as root.
    let out = run_out(
        &agent,
        "every:1",
        "stat -c '%u:%g %a' /srv/app/greeting.txt",
    )
    .await;
    assert_eq!(out.trim(), "1000:1000 640");

    // The raw config has what the API's Image does not show.
    let history = agent
        .images()
        .history(pb::ImageHistoryRequest {
            image: "every:1".into(),
        })
        .await
        .expect("history")
        .into_inner();
    assert!(
        history
            .entries
            .iter()
            .any(|h| h.created_by.contains("RUN echo")),
        "{history:?}"
    );
}

/// Steps by number: (cached, image) of each step's `done`.
fn steps(msgs: &[serde_json::Value]) -> Vec<(bool, String)> {
    msgs.iter()
        .filter_map(|m| m.get("done"))
        .map(|d| {
            (
                d["cached"].as_bool().unwrap_or(false),
                d["imageId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const CACHED: &str = "FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy
COPY b.txt /b.txt
CMD [\"cat\", \"/copy\", \"/b.txt\"]
";

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

const MULTI: &str = "FROM busybox AS builder
RUN mkdir /out && printf '#!/bin/sh\\necho built by the builder\\n' > /out/hello && chmod 755 /out/hello
FROM busybox AS unused
RUN exit 7
FROM busybox
COPY --from=builder /out/hello /usr/local/bin/hello
CMD [\"/usr/local/bin/hello\"]
";

#[tokio::test]
async fn a_multi_stage_build_copies_from_its_builder_and_builds_only_the_stages_needed() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(&agent, "multi", &[("Dockerfile", MULTI)]);
    // The stage that fails is not needed, so never run.
    let out = ok(&build(&agent, &dir, &["-t", "multi"]));
    assert!(!out.contains("exit 7"), "{out}");
    let mut spec = pb::ContainerSpec {
        image: "multi".into(),
        ..Default::default()
    };
    spec.command.clear();
    let (exit, out, _) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out, "built by the builder\n");
    // --target builds that stage and what it needs.
    let msgs = json_build(&agent, &dir, &["--target", "builder", "-t", "builder"]);
    assert_eq!(
        steps(&msgs).len(),
        2,
        "FROM and RUN of the builder: {msgs:?}"
    );
    let out = run_out(&agent, "builder", "cat /out/hello").await;
    assert!(out.contains("built by the builder"));
}

#[tokio::test]
async fn dockerignore_keeps_files_out_of_the_context() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "ignore",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            (".dockerignore", "secret.txt\nlogs\n*.tmp\n!keep.tmp\n"),
            ("secret.txt", "password"),
            ("logs/a.log", "log"),
            ("x.tmp", "tmp"),
            ("keep.tmp", "kept"),
            ("src/main.txt", "main"),
        ],
    );
    ok(&build(&agent, &dir, &["-t", "ignore"]));
    let out = run_out(&agent, "ignore", "cd /ctx && find . | sort").await;
    let files: Vec<&str> = out.lines().collect();
    assert_eq!(
        files,
        [
            ".",
            "./.dockerignore",
            "./Dockerfile",
            "./keep.tmp",
            "./src",
            "./src/main.txt"
        ],
        "{out}"
    );
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
async fn bad_dockerfiles_and_contexts_are_refused_with_their_place() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    type Files<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Files, &str)] = &[
        (
            "syntax",
            &[("Dockerfile", "FROM busybox\nRUN --bogus=1 true\n")],
            "Dockerfile:2:",
        ),
        ("nofrom", &[("Dockerfile", "RUN true\n")], "Dockerfile:1:"),
        (
            "add",
            &[("Dockerfile", "FROM busybox\nADD x /x\n"), ("x", "x")],
            "not supported yet: ADD",
        ),
        (
            "escape",
            &[("Dockerfile", "FROM busybox\nCOPY ../../etc/passwd /p\n")],
            "leaves the build context",
        ),
        (
            "missing",
            &[("Dockerfile", "FROM busybox\nCOPY nothere /p\n")],
            "is not in the build context",
        ),
        (
            "platform",
            &[("Dockerfile", "FROM --platform=linux/s390x busybox\n")],
            "not supported yet: building for platform",
        ),
    ];
    for (name, files, want) in cases {
        let dir = context(&agent, name, files);
        let o = build(&agent, &dir, &["-t", "bad"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}");
        assert!(err.contains(want), "{name}: {err}");
    }
    // A link in the context to a host file: inside a copied tree it stays
    // the link it is; named as a source, it is followed inside the context,
    // where there is no /etc/shadow.
    let dir = context(
        &agent,
        "link",
        &[("Dockerfile", "FROM busybox\nCOPY . /ctx/\n")],
    );
    std::os::unix::fs::symlink("/etc/shadow", dir.join("passwd")).unwrap();
    ok(&build(&agent, &dir, &["-t", "link"]));
    let out = run_out(
        &agent,
        "link",
        "readlink /ctx/passwd; cat /ctx/passwd 2>&1 || echo unreadable",
    )
    .await;
    assert!(out.starts_with("/etc/shadow\n"), "{out}");
    assert!(
        !out.contains("root:"),
        "the host's file never came in: {out}"
    );
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nCOPY passwd /p\n").unwrap();
    let o = build(&agent, &dir, &["-t", "bad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not in the build context"),
        "{err}"
    );
    // A fifo as the Dockerfile is refused (berthctl sends none; the agent
    // takes none: context.rs's tests), never opened.
    let dir = context(&agent, "fifo", &[("x", "x")]);
    nix::unistd::mkfifo(
        &dir.join("Dockerfile"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let o = build(&agent, &dir, &["-t", "bad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("a fifo, socket or device"),
        "{err}"
    );
    // Nothing was tagged by the refused builds.
    assert!(agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: "bad".into()
        })
        .await
        .is_err());
}

#[tokio::test]
async fn here_documents_run_as_scripts_and_copy_as_files() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dockerfile = "FROM busybox
ARG WHO=berth
RUN <<EOF
echo one > /one
echo \"$WHO\" > /who
EOF
RUN <<A cat > /ab
a
A
COPY <<conf /etc/app.conf
name=$WHO
conf
COPY <<'raw' /raw
$WHO
raw
";
    let dir = context(&agent, "heredoc", &[("Dockerfile", dockerfile)]);
    ok(&build(&agent, &dir, &["-t", "heredoc"]));
    let out = run_out(&agent, "heredoc", "cat /one /who /ab /etc/app.conf /raw").await;
    assert_eq!(out, "one\nberth\na\nname=berth\n$WHO\n", "{out}");
}

const SEMANTICS: &str = "FROM busybox
RUN mkdir -p /usr/lib/app && ln -s usr/lib /lib2 && chmod 1777 /tmp
COPY f.txt /lib2/app/
COPY conf/ /tmp/
ARG MODE=dev
ENV MODE=prod
RUN echo $MODE > /mode
ENV A=old
ENV A=new B=$A
CMD [\"/bin/cat\", \"/mode\"]
ENTRYPOINT [\"/bin/env\", \"-i\"]
";

#[tokio::test]
async fn copies_follow_the_images_links_and_keep_its_directories_as_docker_does() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = context(
        &agent,
        "semantics",
        &[
            ("Dockerfile", SEMANTICS),
            ("f.txt", "f\n"),
            ("conf/c.conf", "c\n"),
        ],
    );
    std::fs::set_permissions(
        dir.join("conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    ok(&build(&agent, &dir, &["-t", "semantics"]));
    let out = run_out(
        &agent,
        "semantics",
        "readlink /lib2; cat /usr/lib/app/f.txt; stat -c %a /tmp; cat /tmp/c.conf /mode; echo $A $B",
    )
    .await;
    assert_eq!(out, "usr/lib\nf\n1777\nc\nprod\nnew old\n", "{out}");
    let c = image(&agent, "semantics").await.config.unwrap();
    assert_eq!(
        c.cmd,
        ["/bin/cat", "/mode"],
        "a CMD before ENTRYPOINT stays"
    );
    assert_eq!(c.entrypoint, ["/bin/env", "-i"]);
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
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
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
