//! End to end: the Docker habits berthctl serves (issue 22), through the
//! real `berthctl` binary against a real berthd: help laid out with a
//! command's own options first, honest "not supported yet" errors, every
//! event type as a filter, `events --since/--until` time windows that end
//! by themselves, restart attempts and delays in the event table, and
//! `inspect -o json` as one object per line.

mod common;

use common::cli::{
    code, ctl_alone, ctl_ending, expect_failure, expect_ok, json_lines, ok, stderr, stdout,
    unix_now,
};
use common::Agent;
use serde_json::Value;

// ---------------------------------------------------------------- help

/// The line numbers of the help headings `names`, in order of `names`.
fn heading_lines(help: &str, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| {
            help.lines()
                .position(|l| l == format!("{n}:"))
                .unwrap_or_else(|| panic!("no {n:?} heading in:\n{help}"))
        })
        .collect()
}

#[test]
fn help_shows_a_commands_own_options_first_then_target_hosts_then_tls() {
    for cmd in [
        &["ps", "--help"][..],
        &["events", "--help"],
        &["run", "--help"],
        &["image", "ls", "--help"],
    ] {
        let help = expect_ok(&ctl_alone(cmd), cmd);
        let at = heading_lines(&help, &["Options", "Target hosts", "TLS"]);
        assert!(at[0] < at[1] && at[1] < at[2], "{cmd:?}:\n{help}");
        let section = |from: usize, to: usize| -> Vec<&str> {
            help.lines()
                .skip(from + 1)
                .take(to.saturating_sub(from + 1))
                .collect()
        };
        let own = section(at[0], at[1]).join("\n");
        let hosts = section(at[1], at[2]).join("\n");
        let tls = section(at[2], usize::MAX).join("\n");
        // Fleet and TLS flags are only in their own sections.
        for flag in ["--host <", "--inventory", "--selector", "--parallel"] {
            assert!(!own.contains(flag), "{cmd:?}: {flag} among own options");
            assert!(
                hosts.contains(flag),
                "{cmd:?}: {flag} not under Target hosts"
            );
        }
        for flag in ["--tls-ca", "--tls-cert", "--tls-key"] {
            assert!(!own.contains(flag) && !hosts.contains(flag), "{cmd:?}");
            assert!(tls.contains(flag), "{cmd:?}: {flag} not under TLS");
        }
        assert!(own.contains("--help"), "{cmd:?}");
    }
    // The command's own options are the first ones shown.
    let help = stdout(&ctl_alone(&["events", "--help"]));
    let own_at = help.find("--since <TIME>").expect("events --since");
    assert!(own_at < help.find("--host <").unwrap(), "{help}");
    let help = stdout(&ctl_alone(&["ps", "--help"]));
    assert!(help.find("--quiet").unwrap() < help.find("--inventory").unwrap());
}

#[test]
fn docker_habits_that_are_not_there_say_not_supported_yet_and_the_others_parse() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["create", "--attach", "stderr", "busybox"],
            "choosing the streams of a created container",
        ),
        (&["commit", "c1"], "making an image from a container"),
        (&["volume", "ls", "--format", "{{.Name}}"], "--format"),
    ];
    for (args, what) in cases {
        let o = ctl_alone(args);
        let err = expect_failure(&o, args, 2, &["not supported yet", what]);
        assert!(!err.contains("tip"), "{args:?}: {err}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    // Habits that work now (issue 20): -i, -t, attach, start -ai; only
    // the agent is missing here.
    for args in [
        &["run", "-it", "busybox", "sh"][..],
        &["run", "-i", "--rm", "busybox", "cat"],
        &["run", "--tty", "--detach-keys", "ctrl-x,q", "busybox", "sh"],
        &["create", "-t", "busybox"],
        &["attach", "--no-stdin", "--sig-proxy=false", "web"],
        &["start", "-ai", "web"],
        &["run", "-a", "stdout", "busybox", "sh"],
        &["run", "-it", "--sig-proxy=false", "busybox"],
    ] {
        let mut full = vec!["-H", "unix:///nonexistent/berthd.sock"];
        full.extend_from_slice(args);
        let o = ctl_alone(&full);
        let err = stderr(&o);
        assert_eq!(code(&o), 125, "{args:?}: {err}");
        assert!(!err.contains("not supported"), "{args:?}: {err}");
    }
    let o = ctl_alone(&["run", "--detach-keys", "ctrl-1", "busybox"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("ctrl-1"), "{}", stderr(&o));
    // A typo of a command berthctl has still gets clap's suggestion.
    let o = ctl_alone(&["pss"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.contains("'ps'") && !err.contains("not supported"),
        "{err}"
    );
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn events_time_windows_end_by_themselves_and_every_type_filters() {
    let agent = Agent::start().await;
    agent.import_busybox().await;

    // Each container's events are all published once `rm` has answered
    // (an autoremove may still be under way when `run --rm` returns).
    let run_and_rm = |name: &str| {
        ok(&agent, &["run", "--name", name, "busybox", "true"]);
        assert_eq!(ok(&agent, &["rm", name]), format!("{name}\n"));
    };
    run_and_rm("before");
    let t1 = unix_now();
    run_and_rm("inside");
    let t2 = unix_now();
    run_and_rm("after");

    // Both ends: exactly the events between them, then exit 0 by itself.
    let args = ["events", "-o", "json", "--since", &t1, "--until", &t2];
    let o = ctl_ending(&agent, &args, 20);
    let events = json_lines(&expect_ok(&o, &args));
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "inside"),
        "{names:?}"
    );
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "EVENT_ACTION_CREATED",
            "EVENT_ACTION_STARTED",
            "EVENT_ACTION_EXITED",
            "EVENT_ACTION_REMOVED"
        ]
    );

    // --until alone: from the oldest retained event; filters still apply.
    let args = [
        "events",
        "-o",
        "json",
        "--until",
        &t2,
        "-f",
        "event=destroy",
    ];
    let o = ctl_ending(&agent, &args, 20);
    let events = json_lines(&expect_ok(&o, &args));
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["before", "inside"]);

    // A duration back from now (with --until so that it ends).
    let now = unix_now();
    let args = [
        "events",
        "-o",
        "json",
        "--since",
        "1h",
        "--until",
        &now,
        "-f",
        "container=after",
    ];
    let o = ctl_ending(&agent, &args, 20);
    assert_eq!(json_lines(&expect_ok(&o, &args)).len(), 4);

    // Restarts: every type is a filter, with attempt and delay shown.
    let o = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let restarts = |args: &[&str]| -> Vec<Value> {
        let o = ctl_ending(&agent, args, 20);
        json_lines(&expect_ok(&o, args))
    };
    let mut seen = Vec::new();
    let found = common::eventually(30, async || {
        let now = unix_now();
        seen = restarts(&[
            "events",
            "-o",
            "json",
            "--until",
            &now,
            "-f",
            "event=restarting",
            "-f",
            "container=flaky",
        ]);
        seen.len() == 2
    })
    .await;
    assert!(found, "two restarts never showed: {seen:#?}");
    for (i, e) in seen.iter().enumerate() {
        assert_eq!(e["action"], "EVENT_ACTION_RESTARTING");
        assert_eq!(e["restartAttempt"], i as u64 + 1, "{e}");
        assert!(e["restartDelayMs"].as_str().is_some(), "{e}");
    }
    // Docker's verb works too, and the table shows attempt and delay.
    let now = unix_now();
    let args = [
        "events",
        "--until",
        &now,
        "-f",
        "event=restart",
        "-f",
        "container=flaky",
    ];
    let o = ctl_ending(&agent, &args, 20);
    let table = expect_ok(&o, &args);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.contains(" container restarting "), "{l}");
        assert!(l.contains(&format!("attempt={}", i + 1)), "{l}");
        assert!(l.contains(", delay="), "{l}");
    }
    // Each action word of the table is a filter the agent applies.
    for word in [
        "created",
        "started",
        "exited",
        "restarting",
        "pulled",
        "paused",
        "resumed",
        "updated",
        "stopping",
        "killed",
        "removed",
        "imported",
    ] {
        let args = ["events", "--until", &now, "-f", &format!("event={word}")];
        let o = ctl_ending(&agent, &args, 20);
        let out = expect_ok(&o, &args);
        assert!(
            out.lines().all(|l| l.contains(&format!(" {word} "))),
            "event={word}: {out}"
        );
    }

    // Bad windows change nothing and say why.
    let o = agent.ctl(&["events", "--since", "yesterday"]);
    expect_failure(&o, &["events", "--since", "yesterday"], 1, &["yesterday"]);
    let o = agent.ctl(&["events", "--since", &t2, "--until", &t1]);
    expect_failure(&o, &["events"], 1, &["--until is before --since"]);

    ok(&agent, &["rm", "-f", "flaky"]);
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- inspect

#[tokio::test]
async fn inspect_json_is_one_object_per_line() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    ok(&agent, &["create", "--name", "one", "busybox", "true"]);
    ok(&agent, &["create", "--name", "two", "busybox", "true"]);

    let out = ok(&agent, &["inspect", "-o", "json", "one", "two"]);
    let objects = json_lines(&out);
    assert_eq!(objects.len(), 2, "{out}");
    assert_eq!(objects[0]["name"], "one");
    assert_eq!(objects[1]["name"], "two");
    // Without -o json: one pretty array, as `docker inspect`.
    let v: Value = serde_json::from_str(&ok(&agent, &["inspect", "one", "two"])).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    let out = ok(&agent, &["image", "inspect", "-o", "json", "busybox"]);
    let objects = json_lines(&out);
    assert_eq!(objects.len(), 1, "{out}");
    assert!(objects[0]["id"].as_str().unwrap().starts_with("sha256:"));

    ok(&agent, &["rm", "one", "two"]);
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- -q

#[tokio::test]
async fn images_quiet_prints_one_id_per_image() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // A second reference to the same image: still one id.
    let archive = agent.dir.join("b.tar");
    std::fs::write(
        &archive,
        common::image::busybox("docker.io/library/busybox:other"),
    )
    .unwrap();
    ok(&agent, &["image", "import", archive.to_str().unwrap()]);
    let id = json_lines(&ok(&agent, &["image", "ls", "-o", "json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = id.strip_prefix("sha256:").unwrap();
    assert_eq!(ok(&agent, &["images", "-q"]), format!("{}\n", &hex[..12]));
    assert_eq!(
        ok(&agent, &["image", "ls", "--quiet"]),
        format!("{}\n", &hex[..12])
    );
    assert_eq!(
        ok(&agent, &["images", "-q", "--no-trunc"]),
        format!("{id}\n")
    );
    // The table still lists each reference.
    assert_eq!(ok(&agent, &["images"]).lines().count(), 3);
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- restart

#[tokio::test]
async fn restart_stops_and_starts_again() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let inspect = |name: &str| -> Value {
        json_lines(&ok(&agent, &["inspect", "-o", "json", name]))
            .pop()
            .expect("one container")
    };
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done",
        ],
    );
    let before = inspect("web");
    assert_eq!(before["state"], "CONTAINER_STATE_RUNNING");

    assert_eq!(ok(&agent, &["restart", "-t", "5", "web"]), "web\n");
    let after = inspect("web");
    assert_eq!(after["state"], "CONTAINER_STATE_RUNNING", "{after}");
    assert_eq!(after["startCount"], 2, "{after}");
    assert_ne!(after["pid"], before["pid"]);
    // It ended by its stop signal (exit 0), not by SIGKILL.
    assert_eq!(after["exit"]["exitCode"], 0, "{after}");
    let found = common::eventually(10, async || {
        ok(&agent, &["logs", "web"]).matches("up\n").count() == 2
    })
    .await;
    assert!(found, "the restarted container never printed again");

    // An exited container is started again; a missing one fails alone.
    ok(&agent, &["stop", "web"]);
    let o = agent.ctl(&["restart", "nosuch", "web"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "web\n");
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
    let third = inspect("web");
    assert_eq!(third["state"], "CONTAINER_STATE_RUNNING", "{third}");
    assert_eq!(third["startCount"], 3);

    ok(&agent, &["rm", "-f", "web"]);
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- completion, man

/// What bash completes for `words` (the last one being completed), with
/// the script `berthctl completion bash` prints loaded.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let o = std::process::Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(format!(
            "source {script}; COMP_WORDS=({line}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
             COMP_POINT=${{#COMP_LINE}}; _berthctl berthctl {cur} {prev}; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script = script.display(),
            cword = words.len() - 1,
            cur = words[words.len() - 1],
            prev = words[words.len() - 2],
        ))
        .output()
        .expect("running bash");
    assert!(o.status.success(), "bash: {}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

#[test]
fn completions_and_man_pages_follow_the_command_line() {
    let dir = tempfile_dir("completion");
    // bash: the script loads and completes commands and their options.
    let script = dir.join("berthctl.bash");
    let out = expect_ok(&ctl_alone(&["completion", "bash"]), &["completion", "bash"]);
    std::fs::write(&script, &out).unwrap();
    assert_eq!(bash_completes(&script, &["berthctl", "resta"]), ["restart"]);
    let opts = bash_completes(&script, &["berthctl", "events", "--un"]);
    assert_eq!(opts, ["--until"]);
    let opts = bash_completes(&script, &["berthctl", "images", "--q"]);
    assert_eq!(opts, ["--quiet"]);
    // zsh and fish: their scripts name every command.
    let zsh = expect_ok(&ctl_alone(&["completion", "zsh"]), &["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef berthctl"), "{zsh}");
    let fish = expect_ok(&ctl_alone(&["completion", "fish"]), &["completion", "fish"]);
    for cmd in ["run", "restart", "events", "image", "completion"] {
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh lacks {cmd}");
        assert!(fish.contains(&format!("-a \"{cmd}\"")), "fish lacks {cmd}");
    }
    let o = ctl_alone(&["completion", "powershell"]);
    assert_eq!(code(&o), 2);

    // man: one page per command, each with its own options.
    let man = dir.join("man1");
    let args = ["man", "--dir", man.to_str().unwrap()];
    let listed = expect_ok(&ctl_alone(&args), &args);
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(listed.lines().count(), pages.len());
    for page in [
        "berthctl.1",
        "berthctl-run.1",
        "berthctl-image-import.1",
        "berthctl-restart.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} missing: {pages:?}");
    }
    let events = std::fs::read_to_string(man.join("berthctl-events.1")).unwrap();
    assert!(events.contains(".TH BERTHCTL-EVENTS 1"), "{events}");
    assert!(events.contains("\\-\\-until"), "{events}");
    assert!(events.contains("berthctl events"), "{events}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for one test, under the system's temporary directory.
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("berth-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------- tag

#[tokio::test]
async fn image_tag_adds_a_reference_and_moves_one() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let refs = |image: &str| -> Vec<String> {
        let v = json_lines(&ok(&agent, &["image", "inspect", "-o", "json", image]));
        v[0]["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ok(&agent, &["image", "tag", "busybox", "app:v1"]), "");
    assert_eq!(
        refs("app:v1"),
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/app:v1"
        ]
    );
    // `tag` is the same; by id too, and -o json prints the image.
    let id = refs_id(&agent, "busybox");
    let out = ok(
        &agent,
        &["-o", "json", "tag", &id[7..19], "registry:5000/team/app:v2"],
    );
    assert_eq!(json_lines(&out)[0]["id"], id.as_str());
    assert_eq!(refs("busybox").len(), 3);

    // A second image takes app:v1 over; busybox keeps its other names.
    let archive = agent.dir.join("other.tar");
    let extra = vec![common::image::Entry::File(
        "other".into(),
        b"another image".to_vec(),
        0o644,
    )];
    std::fs::write(
        &archive,
        common::image::busybox_with("docker.io/library/other:1", extra),
    )
    .unwrap();
    ok(&agent, &["image", "import", archive.to_str().unwrap()]);
    ok(&agent, &["tag", "other:1", "app:v1"]);
    assert_eq!(
        refs("app:v1"),
        ["docker.io/library/other:1", "docker.io/library/app:v1"]
    );
    assert!(!refs("busybox").contains(&"docker.io/library/app:v1".to_string()));

    // Bad input changes nothing and says why.
    let before = ok(&agent, &["images"]);
    let o = agent.ctl(&["tag", "nosuch", "x:1"]);
    expect_failure(&o, &["tag"], 1, &["nosuch"]);
    let o = agent.ctl(&["tag", "busybox", "Bad Name"]);
    expect_failure(&o, &["tag"], 1, &["Bad Name"]);
    let digest = format!("app@sha256:{}", "a".repeat(64));
    let o = agent.ctl(&["tag", "busybox", &digest]);
    expect_failure(&o, &["tag"], 1, &["digest"]);
    assert_eq!(ok(&agent, &["images"]), before);
    agent.assert_clean().await;
}

/// The id of an image, by name.
fn refs_id(agent: &Agent, image: &str) -> String {
    json_lines(&ok(agent, &["image", "inspect", "-o", "json", image]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}
