//! End to end: `berthctl build` (Builds.Build) with the real agent, real
//! containers for RUN, and the built images run afterwards.

mod common;

use berth::v1 as pb;
use common::build::{build, context, image, json_build, ok, run_out, steps};
use common::Agent;

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

    // Every layer berth made reads in GNU tar too (other runtimes unpack
    // what berth pushes): no header field out of range.
    for layer in &img.layers[1..] {
        let blob = agent
            .state_dir
            .join("images/blobs/sha256")
            .join(layer.trim_start_matches("sha256:"));
        let o = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&blob)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{layer}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

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
            "addurl",
            &[(
                "Dockerfile",
                "FROM busybox\nADD https://example.invalid/x /x\n",
            )],
            "not supported yet: ADD from a URL",
        ),
        (
            "secret",
            &[(
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=secret,id=t true\n",
            )],
            "not supported yet: RUN --mount type=secret",
        ),
        (
            "addfrom",
            &[("Dockerfile", "FROM busybox\nADD --from=busybox /bin /b\n")],
            "Dockerfile:2:",
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
COPY alias /named/
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
    // A source naming a link: its target's content, under its own name.
    std::os::unix::fs::symlink("f.txt", dir.join("alias")).unwrap();
    std::fs::set_permissions(
        dir.join("conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    ok(&build(&agent, &dir, &["-t", "semantics"]));
    let out = run_out(
        &agent,
        "semantics",
        "readlink /lib2; cat /usr/lib/app/f.txt; stat -c %a /tmp; cat /tmp/c.conf /mode; echo $A $B; cat /named/alias",
    )
    .await;
    assert_eq!(out, "usr/lib\nf\n1777\nc\nprod\nnew old\nf\n", "{out}");
    let c = image(&agent, "semantics").await.config.unwrap();
    assert_eq!(
        c.cmd,
        ["/bin/cat", "/mode"],
        "a CMD before ENTRYPOINT stays"
    );
    assert_eq!(c.entrypoint, ["/bin/env", "-i"]);
}

#[tokio::test]
async fn add_unpacks_local_archives_with_their_owners_and_copies_other_files() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dockerfile = "FROM busybox
ADD tree.tar.xz /opt/
ADD tree.tgz plain.txt /srv/
ADD --chown=7:8 tree.tar.bz2 /chowned
ADD fake.tar.gz /fake/
";
    let dir = context(
        &agent,
        "add",
        &[
            ("Dockerfile", dockerfile),
            ("plain.txt", "plain\n"),
            // A name that says archive, content that is not: copied as is.
            ("fake.tar.gz", "not a tar\n"),
            ("src/app/run.sh", "#!/bin/sh\necho run\n"),
        ],
    );
    std::fs::set_permissions(
        dir.join("src/app/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    // Archives made by GNU tar, as a user makes them, owned by 1234:5678.
    for (name, flag) in [
        ("tree.tar.xz", "-J"),
        ("tree.tgz", "-z"),
        ("tree.tar.bz2", "-j"),
    ] {
        let st = std::process::Command::new("tar")
            .args(["-c", flag, "--owner=1234", "--group=5678", "-f"])
            .arg(dir.join(name))
            .args(["-C", dir.join("src").to_str().unwrap(), "app"])
            .status()
            .expect("tar");
        assert!(st.success(), "tar {name}");
    }
    std::fs::remove_dir_all(dir.join("src")).unwrap();
    ok(&build(&agent, &dir, &["-t", "added"]));
    let out = run_out(
        &agent,
        "added",
        "for f in /opt/app/run.sh /srv/app/run.sh /chowned/app/run.sh; do stat -c '%u:%g %a' $f; done; \
         /opt/app/run.sh; cat /srv/plain.txt /fake/fake.tar.gz; stat -c %a /opt /chowned",
    )
    .await;
    assert_eq!(
        out, "1234:5678 750\n1234:5678 750\n7:8 750\nrun\nplain\nnot a tar\n755\n755\n",
        "{out}"
    );
}
