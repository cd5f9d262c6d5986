//! End to end across many hosts: five berthd agents, each in its own network
//! namespace on a bridge the test creates, serving mutual TLS, driven by the
//! real berthctl through an inventory.
//!
//! Needs root, iproute2 (`ip`) and util-linux (`nsenter`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::{berthctl, Fleet, PORT};
use common::{sh, slow_factor};
use serde_json::Value;

const HOSTS: usize = 5;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("berthctl died by a signal: {:?}", o.status))
}

/// Runs berthctl on the fleet, asserts success and a clean stderr.
fn ok(f: &Fleet, args: &[&str]) -> String {
    let o = f.ctl(args);
    assert_eq!(
        code(&o),
        0,
        "berthctl {args:?} failed\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(stderr(&o), "", "berthctl {args:?} wrote to stderr");
    stdout(&o)
}

/// The rows of a table, split on runs of 3+ spaces, header first.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn names(f: &Fleet) -> Vec<String> {
    f.members.iter().map(|m| m.name.clone()).collect()
}

/// The first column of every row but the header.
fn hosts_column(out: &str) -> Vec<String> {
    table(out)
        .into_iter()
        .skip(1)
        .map(|r| r[0].clone())
        .collect()
}

/// A child process killed when dropped, even when the test fails.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_placement_tls_and_partial_failure() {
    let f = Fleet::start(HOSTS).await;
    let all = names(&f);

    // Import once, to every host.
    let tar = f.dir.path().join("busybox.tar");
    std::fs::write(
        &tar,
        common::image::busybox("docker.io/library/busybox:latest"),
    )
    .unwrap();
    let out = ok(&f, &["--all", "image", "import", tar.to_str().unwrap()]);
    assert_eq!(hosts_column(&out), all, "{out}");

    // Health, version, capacity of every host.
    let out = ok(&f, &["--all", "info"]);
    let rows = table(&out);
    assert_eq!(rows[0][0], "HOST");
    assert_eq!(hosts_column(&out), all);
    assert!(rows[1..].iter().all(|r| r[1] == "serving"), "{out}");

    // Run everywhere, then see every container, its logs, stop and remove.
    let out = ok(
        &f,
        &[
            "--all",
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo hello; exec sleep 1000",
        ],
    );
    assert_eq!(hosts_column(&out), all, "{out}");
    let ps = ok(&f, &["--all", "ps"]);
    assert_eq!(hosts_column(&ps), all, "{ps}");
    assert!(ps.starts_with("HOST   CONTAINER ID   IMAGE"), "{ps}");
    let ps = json_lines(&ok(&f, &["--all", "ps", "-o", "json"]));
    let hosts: Vec<&str> = ps.iter().map(|c| c["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, all);
    assert!(ps
        .iter()
        .all(|c| c["name"] == "web" && c["state"] == "CONTAINER_STATE_RUNNING"));

    let deadline = Instant::now() + Duration::from_secs(10 * u64::from(slow_factor()));
    loop {
        let out = ok(&f, &["--all", "logs", "web"]);
        let want: Vec<String> = all.iter().map(|h| format!("{h} | hello")).collect();
        let got: Vec<String> = out.lines().map(str::to_string).collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One path for one host and many: the same verbs and the same JSON, with
    // a HOST column (a `host` field) only for many hosts.
    let out = ok(&f, &["--all", "pause", "web"]);
    assert_eq!(hosts_column(&out), all, "{out}");
    let ps = json_lines(&ok(&f, &["-H", "n1,n2", "ps", "-o", "json"]));
    assert!(
        ps.iter()
            .all(|c| c["state"] == "CONTAINER_STATE_PAUSED" && c["host"].is_string()),
        "{ps:?}"
    );
    let ps = ok(&f, &["-H", "n1", "ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    let one = json_lines(&ok(&f, &["-H", "n1", "unpause", "-o", "json", "web"]));
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["state"], "CONTAINER_STATE_RUNNING", "{one:?}");
    assert!(one[0].get("host").is_none(), "{one:?}");
    let many = json_lines(&ok(
        &f,
        &["-H", "n2,n3,n4,n5", "unpause", "-o", "json", "web"],
    ));
    assert_eq!(many.len(), HOSTS - 1, "{many:?}");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().filter(|k| *k != "host").cloned().collect())
            .unwrap_or_default()
    };
    for c in &many {
        assert_eq!(keys(c), keys(&one[0]), "{c}");
        assert_eq!(c["state"], "CONTAINER_STATE_RUNNING", "{c}");
    }

    // Targets: a group narrowed by a label.
    let odd = ok(&f, &["--group", "all", "--selector", "parity=odd", "ps"]);
    assert_eq!(hosts_column(&odd), ["n1", "n3", "n5"]);
    let two = ok(&f, &["-H", "n4,n2", "ps", "-q"]);
    assert_eq!(two.lines().count(), 2, "{two}");

    // Placement: spread puts one replica on each host and says where.
    let out = ok(
        &f,
        &[
            "--all",
            "run",
            "--place",
            "spread",
            "--replicas",
            "5",
            "--memory",
            "16m",
            "--name",
            "rep",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let rows = table(&out);
    assert_eq!(
        rows[0],
        ["REPLICA", "HOST", "CONTAINER ID", "NAME"],
        "{out}"
    );
    let placed: BTreeSet<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(placed.len(), HOSTS, "{out}");
    assert_eq!(rows[1][3], "rep-1");
    // A request no host can fit is refused, and nothing is started.
    let o = f.ctl(&[
        "--all",
        "run",
        "--place",
        "least-loaded",
        "--memory",
        "100000g",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no host can fit replica 1 of 1") && stderr(&o).contains("n1: memory"),
        "{}",
        stderr(&o)
    );
    let ps = ok(&f, &["--all", "ps", "-q"]);
    assert_eq!(ps.lines().count(), 2 * HOSTS, "{ps}");
    // The agents report what the replicas reserved.
    let info = json_lines(&ok(&f, &["--all", "top-hosts", "-o", "json"]));
    assert!(info
        .iter()
        .all(|i| i["host"].is_string() && i["health"] == "serving"));

    let out = ok(&f, &["--all", "stop", "-t", "1", "web"]);
    assert_eq!(hosts_column(&out), all, "{out}");
    let out = ok(&f, &["--all", "rm", "web"]);
    assert_eq!(hosts_column(&out), all, "{out}");
    let o = f.ctl(&["--all", "rm", "web"]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        stderr(&o),
        "berthctl: no such container on any targeted host: web\n"
    );

    // Only holders of a certificate from the fleet CA get in.
    let addr = format!("https://{}:{PORT}", f.members[0].ip);
    let ca = f.certs.dir.join("ca.pem");
    let no_cert = berthctl(&[], &["-H", &addr, "--tls-ca", ca.to_str().unwrap(), "ps"]);
    assert_ne!(code(&no_cert), 0, "a client without a certificate got in");
    let rogue = berthctl(
        &[],
        &[
            "-H",
            &addr,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            f.certs.rogue_dir.join("rogue.pem").to_str().unwrap(),
            "--tls-key",
            f.certs.rogue_dir.join("rogue-key.pem").to_str().unwrap(),
            "ps",
        ],
    );
    assert_ne!(code(&rogue), 0, "a client of another CA got in");
    let plain = berthctl(
        &[],
        &["-H", &format!("http://{}:{PORT}", f.members[0].ip), "ps"],
    );
    assert_ne!(code(&plain), 0, "plain TCP got in");
    let good = berthctl(
        &[],
        &[
            "-H",
            &addr,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            f.certs.dir.join("ops.pem").to_str().unwrap(),
            "--tls-key",
            f.certs.dir.join("ops-key.pem").to_str().unwrap(),
            "ps",
        ],
    );
    assert_eq!(code(&good), 0, "{}", stderr(&good));
    let log = f.members[0].agent.log();
    assert!(
        log.matches("rejected a TCP client").count() >= 3,
        "rejections are not logged:\n{log}"
    );

    // An agent killed in the middle of a command: the others finish, the
    // dead one is named, and the exit status says it.
    let child = f
        .ctl_command(&[
            "--all",
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "sleep 3; echo done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut f = f;
    f.members[2]
        .agent
        .stop_agent(nix::sys::signal::Signal::SIGKILL);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        code(&o),
        1,
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    let mut done: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    done.sort();
    assert_eq!(
        done,
        ["n1 | done", "n2 | done", "n4 | done", "n5 | done"],
        "stderr: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).lines().any(|l| l.starts_with("berthctl: n3: ")),
        "{}",
        stderr(&o)
    );
    // And afterwards: results from the rest, n3 listed after them.
    let o = f.ctl(&["--all", "ps"]);
    assert_eq!(code(&o), 1);
    assert_eq!(hosts_column(&stdout(&o)), ["n1", "n2", "n4", "n5"]);
    assert!(
        stderr(&o).starts_with("berthctl: n3: cannot connect to berthd at https://"),
        "{}",
        stderr(&o)
    );
}

/// (host, seq, action, name) of an event line of `events -o json`; the
/// action as a lower-case word (`EVENT_ACTION_EXITED` is "exited").
type Ev = (String, u64, String, String);

/// `berthctl --all events --since-seq 1 -o json`, parsed as it streams.
struct EventsWatch {
    _child: Reaper,
    events: mpsc::Receiver<Ev>,
    stderr: Arc<Mutex<Vec<String>>>,
    seen: BTreeMap<String, Vec<Ev>>,
}

impl EventsWatch {
    fn start(f: &Fleet) -> EventsWatch {
        let mut child = f
            .ctl_command(&["--all", "events", "--since-seq", "1", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let ev = (
                    v["host"].as_str().unwrap_or_default().to_string(),
                    // A uint64 is a string in the JSON mapping.
                    v["seq"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                    v["action"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("EVENT_ACTION_")
                        .to_lowercase(),
                    v["name"].as_str().unwrap_or_default().to_string(),
                );
                if tx.send(ev).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        EventsWatch {
            _child: Reaper(child),
            events: rx,
            stderr,
            seen: BTreeMap::new(),
        }
    }

    /// Collects events until `done` holds, or fails after `secs`.
    async fn until(
        &mut self,
        secs: u64,
        what: &str,
        done: impl Fn(&BTreeMap<String, Vec<Ev>>) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(secs * u64::from(slow_factor()));
        while !done(&self.seen) {
            while let Ok(ev) = self.events.try_recv() {
                self.seen.entry(ev.0.clone()).or_default().push(ev);
            }
            if done(&self.seen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:#?}\nstderr: {:?}",
                self.seen,
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr_has(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Asserts every host's events are exactly seq 1, 2, 3, ... in order:
    /// nothing lost, nothing repeated.
    fn assert_complete_and_ordered(&self) {
        for (host, evs) in &self.seen {
            let seqs: Vec<u64> = evs.iter().map(|e| e.1).collect();
            let want: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(
                seqs, want,
                "{host}: events lost, repeated or out of order: {evs:#?}"
            );
        }
    }
}

fn named(evs: &[Ev], name: &str) -> Vec<String> {
    evs.iter()
        .filter(|e| e.3 == name)
        .map(|e| e.2.clone())
        .collect()
}

async fn run_named(m: &common::fleet::Member, name: &str) {
    let mut spec = sh("true");
    spec.name = name.into();
    let (exit, _, _) = m.agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0);
}

/// Merged events from every agent arrive complete and in order per host,
/// including across a network partition of one agent: the stream breaks,
/// berthctl reconnects with backoff and resumes from its cursor, and gets
/// exactly the events it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_events_survive_a_partition() {
    let f = Fleet::start(HOSTS).await;
    for m in &f.members {
        m.agent.import_busybox().await;
    }
    let mut w = EventsWatch::start(&f);
    for m in &f.members {
        run_named(m, &format!("first-{}", m.name)).await;
    }
    // imported, created, started, exited on each host.
    w.until(30, "the first events of every host", |s| {
        s.len() == HOSTS && s.values().all(|e| e.len() >= 4)
    })
    .await;

    // Cut n2 off, and have things happen on it meanwhile (through its unix
    // socket, which the partition does not touch).
    let net = f.net.as_ref().unwrap();
    net.set_link(1, false);
    run_named(&f.members[1], "during").await;
    let deadline = Instant::now() + Duration::from_secs(40 * u64::from(slow_factor()));
    while !w.stderr_has("n2: event stream lost") {
        assert!(
            Instant::now() < deadline,
            "berthctl never noticed the partition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.set_link(1, true);
    run_named(&f.members[1], "after").await;
    w.until(40, "n2's missed events", |s| {
        s.get("n2")
            .is_some_and(|e| named(e, "after").contains(&"exited".to_string()))
    })
    .await;
    // One more event on every host, so that nothing is still in flight.
    for m in &f.members {
        run_named(m, "last").await;
    }
    w.until(30, "the last events", |s| {
        s.values()
            .all(|e| named(e, "last").contains(&"exited".to_string()))
    })
    .await;

    w.assert_complete_and_ordered();
    let n2 = &w.seen["n2"];
    assert_eq!(named(n2, "during"), ["created", "started", "exited"]);
    assert_eq!(named(n2, "after"), ["created", "started", "exited"]);
    assert!(
        w.stderr_has("n2: reconnected; resuming at seq 5"),
        "{:?}",
        w.stderr
    );
}

/// Merged events across an agent *restart*: berthctl resubscribes from the
/// last sequence number it saw plus one and gets exactly what it missed.
///
/// Waits on the durable event log (the issue on containers outliving the
/// agent). With today's in-memory log a restarted agent numbers its events
/// from 1 again: berthctl resubscribes with from_seq = 5 (last seen + 1), the
/// new agent's events of "after" are seqs 1..3, so the replay skips them and
/// the wait "n2's events after the restart" times out. Were they delivered
/// live instead, `assert_complete_and_ordered` would fail on n2's sequence
/// going back to 1. With a durable log the new events are 5, 6, 7 and both
/// hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_events_survive_an_agent_restart() {
    let mut f = Fleet::start(HOSTS).await;
    for m in &f.members {
        m.agent.import_busybox().await;
    }
    let mut w = EventsWatch::start(&f);
    for m in &f.members {
        run_named(m, "before").await;
    }
    w.until(30, "the first events of every host", |s| {
        s.len() == HOSTS && s.values().all(|e| e.len() >= 4)
    })
    .await;
    f.members[1]
        .agent
        .stop_agent(nix::sys::signal::Signal::SIGKILL);
    f.members[1].spawn().await;
    // Right away, possibly before berthctl has reconnected.
    run_named(&f.members[1], "after").await;
    w.until(40, "n2's events after the restart", |s| {
        s.get("n2")
            .is_some_and(|e| named(e, "after").contains(&"exited".to_string()))
    })
    .await;
    w.assert_complete_and_ordered();
    assert_eq!(
        named(&w.seen["n2"], "after"),
        ["created", "started", "exited"]
    );
}

/// Benchmark, not a test: `berthctl --all ps` over 50 agents (mutual TLS on
/// loopback) against 50 sequential single-host `berthctl -H nX ps` calls.
/// Run it alone:
///
/// ```sh
/// cargo test --test fleet -- --ignored --nocapture bench_ps_all_50_agents
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_ps_all_50_agents() {
    const N: usize = 50;
    let f = Fleet::start_local(N).await;
    let time = |args: &[&str]| {
        let t = Instant::now();
        let o = f.ctl(args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        t.elapsed()
    };
    // Warm-up (page cache, first TLS handshakes' key loading).
    time(&["--all", "ps"]);
    let mut fanout: Vec<Duration> = (0..5).map(|_| time(&["--all", "ps"])).collect();
    fanout.sort();
    let mut sequential: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            for m in &f.members {
                let o = f.ctl(&["-H", &m.name, "ps"]);
                assert_eq!(code(&o), 0, "{}", stderr(&o));
            }
            t.elapsed()
        })
        .collect();
    sequential.sort();
    let (a, b) = (fanout[fanout.len() / 2], sequential[sequential.len() / 2]);
    println!(
        "berthctl --all ps over {N} agents: median {:.1} ms (runs: {:?})",
        a.as_secs_f64() * 1000.0,
        fanout
    );
    println!(
        "{N} sequential berthctl -H nX ps: median {:.1} ms (runs: {:?})",
        b.as_secs_f64() * 1000.0,
        sequential
    );
    println!("speed-up: {:.1}x", b.as_secs_f64() / a.as_secs_f64());
}
