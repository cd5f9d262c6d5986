//! `berthctl rollout` end to end: four berthd agents, each in its own
//! network namespace serving mutual TLS (the harness of tests/fleet.rs),
//! upgraded one host at a time by the real berthctl.
//!
//! Needs root, iproute2 (`ip`) and util-linux (`nsenter`).

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use common::fleet::Fleet;
use common::image::{busybox_with, Entry};
use serde_json::Value;

const HOSTS: usize = 4;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("berthctl died by a signal: {:?}", o.status))
}

fn ok(f: &Fleet, args: &[&str]) -> String {
    let o = f.ctl(args);
    assert_eq!(
        code(&o),
        0,
        "berthctl {args:?} failed\nstdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Every container of every host (all states): host -> [(name, image,
/// state, id)], sorted by name.
fn containers(f: &Fleet) -> BTreeMap<String, Vec<(String, String, String, String)>> {
    let mut by_host: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for c in json_lines(&ok(f, &["--all", "ps", "-a", "-o", "json"])) {
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        by_host
            .entry(s("host"))
            .or_default()
            .push((s("name"), s("image"), s("state"), s("id")));
    }
    for v in by_host.values_mut() {
        v.sort();
    }
    by_host
}

const RUNNING: &str = "CONTAINER_STATE_RUNNING";

/// An image `app:VERSION` whose /version holds VERSION.
fn app_image(f: &Fleet, version: &str) -> String {
    let tar = f.dir.path().join(format!("app-{version}.tar"));
    let extra = vec![Entry::File(
        "version".into(),
        format!("{version}\n").into_bytes(),
        0o644,
    )];
    std::fs::write(&tar, busybox_with(&format!("app:{version}"), extra)).unwrap();
    tar.to_str().unwrap().to_string()
}

/// The acceptance scenario: a host missing the new image stops the
/// rollout there: hosts before it are upgraded, it and the hosts after it
/// keep their old container. A rerun once the image is there skips the
/// upgraded hosts and finishes the others; a health command that fails
/// stops at the first host and leaves it on its running container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_stops_at_the_first_failing_host() {
    let f = Fleet::start(HOSTS).await;
    let v1 = app_image(&f, "1");
    let v2 = app_image(&f, "2");
    ok(&f, &["--all", "image", "import", &v1]);
    // n3 lacks app:2: the rollout must stop there.
    ok(&f, &["-H", "n1,n2,n4", "image", "import", &v2]);
    ok(
        &f,
        &[
            "--all", "run", "-d", "--name", "api", "app:1", "sleep", "1000",
        ],
    );
    let before = containers(&f);
    for (host, cs) in &before {
        assert_eq!(cs.len(), 1, "{host}: {cs:?}");
        assert_eq!((cs[0].0.as_str(), cs[0].1.as_str()), ("api", "app:1"));
    }

    let rollout = [
        "--all",
        "rollout",
        "--name",
        "api",
        "--settle",
        "1s",
        "--health-cmd",
        "grep -qx 2 /version",
        "app:2",
        "sleep",
        "1000",
    ];
    let o = f.ctl(&rollout);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(code(&o), 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("rollout of api stopped at n3:") && err.contains("not rolled out: n4"),
        "{err}"
    );
    assert!(
        err.contains("app:2"),
        "the error names the missing image: {err}"
    );
    for line in [
        "n1 | started api.",
        "n1 | api.",
        "n1 | stopped and removed the old api",
        "n1 | updated: api (",
        "n2 | updated: api (",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(!out.contains("n4 |"), "n4 was touched:\n{out}");
    let summary: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("HOST")).collect();
    assert_eq!(summary.len(), 5, "{out}");
    for (row, want) in
        summary[1..]
            .iter()
            .zip(["n1 updated", "n2 updated", "n3 failed", "n4 not started"])
    {
        let words = row.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.starts_with(want), "{row:?} is not {want:?}\n{out}");
    }

    let after = containers(&f);
    for host in ["n1", "n2"] {
        let cs = &after[host];
        assert_eq!(cs.len(), 1, "{host}: {cs:?}");
        assert_eq!(
            (cs[0].0.as_str(), cs[0].1.as_str(), cs[0].2.as_str()),
            ("api", "app:2", RUNNING),
            "{host}"
        );
    }
    for host in ["n3", "n4"] {
        assert_eq!(after[host], before[host], "{host} changed");
        assert_eq!(after[host][0].2, RUNNING, "{host}");
    }

    // With the image on n3, the same command finishes the job: n1 and n2
    // already run this revision and keep their containers.
    ok(&f, &["-H", "n3", "image", "import", &v2]);
    // (-o before the image: after it, it would be the command's.)
    let json_rollout: Vec<&str> = ["-o", "json"].into_iter().chain(rollout).collect();
    let lines = json_lines(&ok(&f, &json_rollout));
    let results: BTreeMap<String, String> = lines
        .iter()
        .filter(|l| ["unchanged", "updated"].contains(&l["event"].as_str().unwrap()))
        .map(|l| {
            (
                l["host"].as_str().unwrap().to_string(),
                l["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("n1", "unchanged"),
        ("n2", "unchanged"),
        ("n3", "updated"),
        ("n4", "updated"),
    ]
    .into_iter()
    .map(|(h, e)| (h.to_string(), e.to_string()))
    .collect();
    assert_eq!(results, want, "{lines:?}");
    let revision = lines[0]["revision"].as_str().unwrap().to_string();
    assert!(lines.iter().all(|l| l["revision"] == revision), "{lines:?}");
    let done = containers(&f);
    for host in ["n1", "n2"] {
        assert_eq!(done[host], after[host], "{host} was redone");
    }
    for (host, cs) in &done {
        assert_eq!(cs.len(), 1, "{host}: {cs:?}");
        assert_eq!(
            (cs[0].0.as_str(), cs[0].1.as_str(), cs[0].2.as_str()),
            ("api", "app:2", RUNNING),
            "{host}"
        );
    }
    let labels = json_lines(&ok(&f, &["--all", "inspect", "-o", "json", "api"]));
    for c in &labels {
        assert_eq!(c["labels"]["berth.rollout"], "api", "{c}");
        assert_eq!(c["labels"]["berth.revision"], revision.as_str(), "{c}");
    }

    // A health command that never passes: the first host keeps its
    // container, the new one is gone, nothing else is touched.
    let o = f.ctl(&[
        "--all",
        "rollout",
        "--name",
        "api",
        "--settle",
        "0s",
        "--health-cmd",
        "echo not ready >&2; exit 1",
        "--health-timeout",
        "2s",
        "--health-interval",
        "200ms",
        "app:2",
        "sleep",
        "999",
    ]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("stopped at n1:")
            && err.contains("did not pass within 2s: exit status 1: not ready")
            && err.contains("not rolled out: n2, n3, n4"),
        "{err}"
    );
    assert_eq!(containers(&f), done, "a failed health check changed a host");
}

/// A new container that exits fails the rollout even without a health
/// command; `rollout` without --name is refused before any host is
/// touched; several replicas per host are replaced under their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_of_replicas_and_of_a_container_that_exits() {
    let f = Fleet::start(2).await;
    let v1 = app_image(&f, "1");
    ok(&f, &["--all", "image", "import", &v1]);
    ok(
        &f,
        &[
            "--all", "run", "-d", "--name", "web", "app:1", "sleep", "1000",
        ],
    );
    let before = containers(&f);
    let o = f.ctl(&[
        "--all", "rollout", "--name", "web", "--settle", "30s", "app:1", "sh", "-c", "exit 3",
    ]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("stopped at n1:") && err.contains("exited with status 3"),
        "{err}"
    );
    assert_eq!(containers(&f), before);

    let o = f.ctl(&["--all", "rollout", "app:1"]);
    assert_ne!(code(&o), 0);
    assert!(text(&o.stderr).contains("rollout needs --name NAME"));
    assert_eq!(containers(&f), before);

    // Several replicas per host: a first rollout creates them (no old
    // ones), a second replaces them all under the same names, a third
    // changes nothing.
    let svc = |cmd: &'static str| {
        [
            "--all",
            "rollout",
            "--name",
            "svc",
            "--replicas-per-host",
            "2",
            "--settle",
            "0s",
            "app:1",
            "sleep",
            cmd,
        ]
    };
    let replicas = |f: &Fleet| -> BTreeMap<String, Vec<(String, String)>> {
        containers(f)
            .into_iter()
            .map(|(h, cs)| {
                let v = cs
                    .into_iter()
                    .filter(|c| c.0.starts_with("svc"))
                    .map(|c| {
                        assert_eq!(c.2, RUNNING, "{h}: {c:?}");
                        (c.0, c.3)
                    })
                    .collect();
                (h, v)
            })
            .collect()
    };
    ok(&f, &svc("1000"));
    let first = replicas(&f);
    for (h, cs) in &first {
        let names: Vec<&str> = cs.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["svc-1", "svc-2"], "{h}");
    }
    ok(&f, &svc("2000"));
    let second = replicas(&f);
    for (h, cs) in &second {
        let names: Vec<&str> = cs.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["svc-1", "svc-2"], "{h}");
        for (c, old) in cs.iter().zip(&first[h]) {
            assert_ne!(c.1, old.1, "{h}: {} was not replaced", c.0);
        }
    }
    let out = ok(&f, &svc("2000"));
    assert!(out.contains("n1 | already runs this revision"), "{out}");
    assert_eq!(replicas(&f), second);
    // The web containers were never touched.
    let web = |m: BTreeMap<String, Vec<(String, String, String, String)>>| {
        m.into_iter()
            .map(|(h, cs)| {
                (
                    h,
                    cs.into_iter().filter(|c| c.0 == "web").collect::<Vec<_>>(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(web(containers(&f)), web(before));
}
