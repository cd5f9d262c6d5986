//! End to end: a real berthd driven through the real `berthctl` binary, as
//! an operator uses it. Outputs and exit statuses are asserted exactly.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::Value;

// ---------------------------------------------------------------- helpers

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit status; a death by signal is a test failure in itself.
fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or_else(|| {
        panic!(
            "berthctl died by a signal: {:?}\nstderr: {}",
            o.status,
            stderr(o)
        )
    })
}

/// Runs berthctl, asserts exit status 0 and nothing on stderr, returns stdout.
fn ok(agent: &Agent, args: &[&str]) -> String {
    let o = agent.ctl(args);
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

/// Runs berthctl expecting exit status `want` and one `berthctl: ...` line
/// on stderr that mentions every one of `mentions`; returns that line.
fn fails(agent: &Agent, args: &[&str], want: i32, mentions: &[&str]) -> String {
    let o = agent.ctl(args);
    check_failure(&o, args, want, mentions)
}

fn check_failure(o: &Output, args: &[&str], want: i32, mentions: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(
        code(o),
        want,
        "berthctl {args:?}: wrong exit status\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(
        err.starts_with("berthctl: ") && err.ends_with('\n') && err.lines().count() == 1,
        "berthctl {args:?}: stderr should be one `berthctl: ...` line, got {err:?}"
    );
    for m in mentions {
        assert!(
            err.contains(m),
            "berthctl {args:?}: error {err:?} does not mention {m:?}"
        );
    }
    err
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a berthctl table into rows keyed by header, using the header's
/// column positions (cells are aligned to them; counted in characters).
fn table(out: &str) -> Vec<HashMap<String, String>> {
    let mut lines = out.lines();
    let header: Vec<char> = lines.next().expect("a header line").chars().collect();
    let mut starts = Vec::new();
    for i in 0..header.len() {
        let begins = header[i] != ' '
            && (i == 0 || (i >= 2 && header[i - 1] == ' ' && header[i - 2] == ' '));
        if begins {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).copied().unwrap_or(header.len());
            header[s..end].iter().collect::<String>().trim().to_string()
        })
        .collect();
    lines
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(n, name)| {
                    let s = starts[n].min(chars.len());
                    let e = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(chars.len())
                        .min(chars.len());
                    (
                        name.clone(),
                        chars[s..e].iter().collect::<String>().trim().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// Writes the busybox test image archive into the agent's directory.
fn busybox_archive(agent: &Agent) -> PathBuf {
    let path = agent.dir.join("busybox.tar");
    std::fs::write(
        &path,
        common::image::busybox("docker.io/library/busybox:latest"),
    )
    .unwrap();
    path
}

/// Imports busybox through `berthctl image import` and returns its image id.
fn import_busybox(agent: &Agent) -> String {
    let path = busybox_archive(agent);
    let out = ok(agent, &["image", "import", path.to_str().unwrap()]);
    let rest = out
        .strip_prefix("Imported: docker.io/library/busybox:latest (sha256:")
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected import output {out:?}"));
    assert!(is_hex(rest, 64), "{out:?}");
    format!("sha256:{rest}")
}

/// Polls `berthctl logs` until the container's stdout contains `needle`.
fn wait_for_log(agent: &Agent, name: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10 * u64::from(common::slow_factor()));
    loop {
        let o = agent.ctl(&["logs", name]);
        assert_eq!(code(&o), 0, "logs {name}: {}", stderr(&o));
        let out = stdout(&o);
        if out.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never printed {needle:?}; its log: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 64-bit integer of the JSON mapping, which prints them as strings.
fn int64(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a 64-bit integer as a string: {v}"))
}

/// An event's sequence number (a uint64: a string in JSON).
fn seq(e: &Value) -> u64 {
    int64(&e["seq"]) as u64
}

/// Inspects one container and returns its JSON object.
fn inspect(agent: &Agent, name: &str) -> Value {
    let v: Value =
        serde_json::from_str(&ok(agent, &["inspect", name])).expect("inspect prints JSON");
    let arr = v.as_array().expect("inspect prints an array");
    assert_eq!(arr.len(), 1, "{v}");
    arr[0].clone()
}

/// Names of all containers in `ps -a -o json`.
fn all_names(agent: &Agent) -> Vec<String> {
    json_lines(&ok(agent, &["ps", "-a", "-o", "json"]))
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// A berthctl process whose stdout is read line by line in a thread (for
/// `logs -f` and `events`); killed when dropped.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn spawn(agent: &Agent, args: &[&str]) -> Streaming {
        let mut child = Command::new(common::bin("berthctl"))
            .arg("--host")
            .arg(&agent.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning berthctl");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines: rx }
    }

    /// The next line, waiting at most `secs` seconds.
    fn next_line(&self, secs: u64) -> Option<String> {
        self.lines
            .recv_timeout(Duration::from_secs(secs * u64::from(common::slow_factor())))
            .ok()
    }

    /// Waits for the process to end by itself; returns its exit status and stderr.
    fn wait_exit(&mut self, secs: u64) -> (i32, String) {
        let deadline =
            Instant::now() + Duration::from_secs(secs * u64::from(common::slow_factor()));
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return (status.code().unwrap_or(-1), err);
            }
            assert!(
                Instant::now() < deadline,
                "berthctl did not end within {secs}s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- images

#[tokio::test]
async fn image_import_ls_inspect_rm() {
    let agent = Agent::start().await;
    // Empty store: just the header.
    assert_eq!(
        ok(&agent, &["image", "ls"]),
        "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"
    );
    assert_eq!(ok(&agent, &["image", "ls", "-o", "json"]), "");

    let id = import_busybox(&agent);
    let hex = id.strip_prefix("sha256:").unwrap();

    // Table: one row, Docker Hub name shortened.
    let out = ok(&agent, &["image", "ls"]);
    assert!(
        out.starts_with("REPOSITORY   TAG      IMAGE ID       CREATED"),
        "{out}"
    );
    let rows = table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["REPOSITORY"], "busybox");
    assert_eq!(rows[0]["TAG"], "latest");
    assert_eq!(rows[0]["IMAGE ID"], hex[..12]);
    assert!(
        rows[0]["SIZE"].ends_with("MB") || rows[0]["SIZE"].ends_with("kB"),
        "{out}"
    );
    assert_eq!(ok(&agent, &["images"]), out, "`images` is `image ls`");

    // JSON: one object per line.
    let imgs = json_lines(&ok(&agent, &["image", "ls", "-o", "json"]));
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0]["id"], id.as_str());
    assert_eq!(
        imgs[0]["references"],
        serde_json::json!(["docker.io/library/busybox:latest"])
    );
    assert!(int64(&imgs[0]["sizeBytes"]) > 0);

    // Inspect: a pretty JSON array, by short name, full reference and id prefix.
    for name in ["busybox", "docker.io/library/busybox:latest", &hex[..12]] {
        let v: Value = serde_json::from_str(&ok(&agent, &["image", "inspect", name])).unwrap();
        let arr = v.as_array().expect("an array");
        assert_eq!(arr.len(), 1);
        let i = &arr[0];
        assert_eq!(i["id"], id.as_str(), "{name}");
        assert_eq!(i["os"], "linux");
        assert_eq!(i["config"]["cmd"], serde_json::json!(["sh"]));
        assert_eq!(
            i["config"]["env"],
            serde_json::json!(["PATH=/bin", "IMAGE_VAR=from-image"])
        );
        assert_eq!(i["layers"].as_array().map(Vec::len), Some(1));
        assert_eq!(i["createdAt"], "2026-01-01T00:00:00Z");
    }
    let o = agent.ctl(&["image", "inspect", "nosuchimage"]);
    check_failure(&o, &["image", "inspect"], 1, &["nosuchimage"]);
    assert_eq!(stdout(&o), "[]\n");

    // A missing file is reported before anything is sent.
    let missing = agent.dir.join("missing.tar");
    fails(
        &agent,
        &["image", "import", missing.to_str().unwrap()],
        1,
        &["cannot open", "missing.tar"],
    );
    // Garbage is refused by the agent, and nothing is imported.
    let junk = agent.dir.join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive").unwrap();
    fails(&agent, &["image", "import", junk.to_str().unwrap()], 1, &[]);
    assert_eq!(
        json_lines(&ok(&agent, &["image", "ls", "-o", "json"])).len(),
        1
    );

    // In use: refused, and the image stays.
    let cid = ok(
        &agent,
        &["run", "-d", "--name", "user", "busybox", "sleep", "1000"],
    );
    let cid = cid.trim_end();
    let err = fails(&agent, &["image", "rm", "busybox"], 1, &["in use"]);
    assert!(
        err.contains("user") || err.contains(&cid[..12]),
        "names the container: {err}"
    );
    assert_eq!(table(&ok(&agent, &["image", "ls"])).len(), 1);
    // Removed with the container gone.
    assert_eq!(ok(&agent, &["rm", "-f", "user"]), "user\n");
    assert_eq!(
        ok(&agent, &["image", "rm", "busybox"]),
        format!("Untagged: docker.io/library/busybox:latest\nDeleted: {id}\n")
    );
    assert_eq!(
        ok(&agent, &["image", "ls"]),
        "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"
    );
    fails(&agent, &["image", "rm", "busybox"], 1, &["busybox"]);

    // -f removes it while a container runs; the container keeps running.
    assert_eq!(import_busybox(&agent), id, "same content, same id");
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "user2",
            "busybox",
            "sh",
            "-c",
            "echo started; sleep 1000",
        ],
    );
    wait_for_log(&agent, "user2", "started");
    fails(&agent, &["image", "rm", "busybox"], 1, &["in use"]);
    assert_eq!(
        ok(&agent, &["image", "rm", "-f", "busybox"]),
        format!("Untagged: docker.io/library/busybox:latest\nDeleted: {id}\n")
    );
    assert_eq!(ok(&agent, &["image", "ls", "-o", "json"]), "");
    assert_eq!(inspect(&agent, "user2")["state"], "CONTAINER_STATE_RUNNING");
    assert_eq!(ok(&agent, &["rm", "-f", "user2"]), "user2\n");
    assert!(all_names(&agent).is_empty());
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- run (attached)

#[tokio::test]
async fn run_attached_output_exit_codes_and_rm() {
    let agent = Agent::start().await;
    import_busybox(&agent);

    // Output and the default hostname (the short id).
    let out = ok(
        &agent,
        &[
            "run",
            "--rm",
            "busybox",
            "--",
            "sh",
            "-c",
            "echo hello; hostname",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0], "hello");
    assert!(
        is_hex(lines[1], 12),
        "hostname {:?} is not a short id",
        lines[1]
    );
    // --rm: gone as soon as run returns.
    assert_eq!(
        all_names(&agent),
        Vec::<String>::new(),
        "--rm left the container behind"
    );

    // The container's exit code is run's; stdout and stderr stay apart.
    let o = agent.ctl(&[
        "run",
        "--name",
        "three",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&o), 3, "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    // Without --rm it stays, exited with its code.
    let c = inspect(&agent, "three");
    assert_eq!(c["state"], "CONTAINER_STATE_EXITED");
    assert_eq!(c["exit"]["exitCode"], 3);
    let rows = table(&ok(&agent, &["ps", "-a"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["NAMES"], "three");
    assert!(
        rows[0]["STATUS"].starts_with("Exited (3) "),
        "{:?}",
        rows[0]
    );
    assert_eq!(ok(&agent, &["rm", "three"]), "three\n");

    // The Quick-start command.
    assert_eq!(
        ok(
            &agent,
            &[
                "run",
                "--rm",
                "--memory",
                "64m",
                "--cpus",
                "0.5",
                "--pids-limit",
                "32",
                "busybox",
                "--",
                "sh",
                "-c",
                "echo ok"
            ]
        ),
        "ok\n"
    );
    // The limits reach the container's cgroup.
    let id = ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "lim",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "32",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let id = id.trim_end();
    let c = inspect(&agent, "lim");
    assert_eq!(int64(&c["spec"]["resources"]["memoryBytes"]), 64 << 20);
    assert_eq!(int64(&c["spec"]["resources"]["nanoCpus"]), 500_000_000);
    assert_eq!(int64(&c["spec"]["resources"]["pidsLimit"]), 32);
    let read = |controller: &str, v2: &str, v1: &str| {
        let dir = agent.cgroup_dir(id, controller);
        let file = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            v2
        } else {
            v1
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.max", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max", "pids.max"), "32");
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(read("cpu", "cpu.max", ""), "50000 100000");
    } else {
        assert_eq!(read("cpu", "", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "", "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(ok(&agent, &["rm", "-f", "lim"]), "lim\n");

    // A command that does not exist: 127, with the command named.
    fails(
        &agent,
        &["run", "--rm", "busybox", "no-such-command"],
        127,
        &["no-such-command"],
    );
    assert_eq!(
        all_names(&agent),
        Vec::<String>::new(),
        "a failed --rm run left a container"
    );

    // stdin is not attached: a reading command sees EOF at once.
    assert_eq!(
        ok(
            &agent,
            &["run", "--rm", "busybox", "sh", "-c", "cat; echo done"]
        ),
        "done\n"
    );
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- detached lifecycle

#[tokio::test]
async fn detached_ps_inspect_logs_stop_kill_wait_rm() {
    let agent = Agent::start().await;
    import_busybox(&agent);

    let out = ok(
        &agent,
        &[
            "run", "-d", "--name", "web", "busybox", "sh", "-c",
            "trap 'echo bye; exit 0' TERM; echo one; echo warn >&2; sleep 0.2; echo two; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let id = out.strip_suffix('\n').unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        is_hex(id, 64),
        "run -d should print the full id, got {out:?}"
    );
    wait_for_log(&agent, "web", "ready");

    // ps: the table, -q, JSON.
    let ps = ok(&agent, &["ps"]);
    assert!(
        ps.starts_with("CONTAINER ID   IMAGE     COMMAND  "),
        "ps header: {ps}"
    );
    let rows = table(&ps);
    assert_eq!(rows.len(), 1, "{ps}");
    assert_eq!(rows[0]["CONTAINER ID"], id[..12]);
    assert_eq!(rows[0]["IMAGE"], "busybox");
    assert_eq!(rows[0]["NAMES"], "web");
    assert!(
        rows[0]["COMMAND"].starts_with("\"sh -c trap"),
        "{:?}",
        rows[0]
    );
    assert!(rows[0]["STATUS"].starts_with("Up "), "{:?}", rows[0]);
    assert!(rows[0]["CREATED"].ends_with(" ago"), "{:?}", rows[0]);
    assert_eq!(ok(&agent, &["ps", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(ok(&agent, &["ps", "-q", "--no-trunc"]), format!("{id}\n"));
    let js = json_lines(&ok(&agent, &["ps", "-o", "json"]));
    assert_eq!(js.len(), 1);
    assert_eq!(
        (js[0]["id"].as_str(), js[0]["state"].as_str()),
        (Some(id), Some("CONTAINER_STATE_RUNNING"))
    );
    // The API's message whole, defaults included (the hand-written JSON
    // dropped these).
    assert_eq!(
        (&js[0]["restartCount"], &js[0]["stoppedByUser"]),
        (&Value::from(0), &Value::from(false)),
        "{}",
        js[0]
    );
    // inspect -o json: one object per line, like every -o json.
    let lines = json_lines(&ok(&agent, &["inspect", "-o", "json", "web", &id[..8]]));
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|c| c["id"] == id), "{lines:?}");

    // inspect: by name, by id prefix; a JSON array.
    for key in ["web", &id[..8], id] {
        let c = inspect(&agent, key);
        assert_eq!(c["id"], id);
        assert_eq!(c["name"], "web");
        assert_eq!(c["state"], "CONTAINER_STATE_RUNNING");
        assert_eq!(c["image"], "busybox");
        assert!(c["pid"].as_i64().unwrap() > 0);
        assert_eq!(c["exit"], Value::Null);
    }

    // logs: stdout to stdout, stderr to stderr; --tail.
    let o = agent.ctl(&["logs", "web"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "one\ntwo\nready\n");
    assert_eq!(stderr(&o), "warn\n");
    let o = agent.ctl(&["logs", "--tail", "1", "web"]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "ready\n".to_string()),
        "stderr: {}",
        stderr(&o)
    );
    let o = agent.ctl(&["logs", "-t", "--tail", "1", "web"]);
    let line = stdout(&o);
    let (ts, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(rest, "ready\n");
    assert!(
        ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "timestamp {ts:?}"
    );
    let logs = json_lines(&ok(&agent, &["logs", "-o", "json", "web"]));
    let streams: Vec<(&str, &str)> = logs
        .iter()
        .map(|l| (l["stream"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect();
    assert!(
        streams.contains(&("LOG_STREAM_STDERR", "warn\n")),
        "{streams:?}"
    );
    assert!(
        streams.contains(&("LOG_STREAM_STDOUT", "one\n")),
        "{streams:?}"
    );
    // The message's own bytes field is there too, base64 as the mapping has it.
    assert!(logs.iter().any(|l| l["data"] == "b25lCg=="), "{logs:?}");

    // rm of a running container needs -f.
    fails(&agent, &["rm", "web"], 1, &["running"]);

    // stop -t 1: the container's TERM handler runs.
    let t = Instant::now();
    assert_eq!(ok(&agent, &["stop", "-t", "1", "web"]), "web\n");
    assert!(t.elapsed() < Duration::from_secs(10));
    let c = inspect(&agent, "web");
    assert_eq!(c["state"], "CONTAINER_STATE_EXITED");
    assert_eq!(c["exit"]["exitCode"], 0);
    assert_eq!(ok(&agent, &["logs", "--tail", "1", "web"]), "bye\n");
    assert_eq!(ok(&agent, &["ps", "-q"]), "");
    let rows = table(&ok(&agent, &["ps", "-a", "--filter", "status=exited"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["NAMES"], "web");
    assert!(
        rows[0]["STATUS"].starts_with("Exited (0) "),
        "{:?}",
        rows[0]
    );
    assert_eq!(
        ok(&agent, &["ps", "-a", "-q", "--filter", "status=running"]),
        ""
    );
    // wait on an exited container answers at once.
    assert_eq!(ok(&agent, &["wait", "web"]), "0\n");

    // kill -s USR1, then wait exits with the container's code.
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "sig",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 42' USR1; echo ready; while true; do sleep 0.1; done",
        ],
    );
    wait_for_log(&agent, "sig", "ready");
    assert_eq!(ok(&agent, &["kill", "-s", "USR1", "sig"]), "sig\n");
    let o = agent.ctl(&["wait", "sig"]);
    assert_eq!(
        (code(&o), stdout(&o), stderr(&o)),
        (42, "42\n".to_string(), String::new())
    );
    assert_eq!(ok(&agent, &["logs", "sig"]), "ready\ngot-usr1\n");
    // Killing an exited container is an error.
    fails(&agent, &["kill", "sig"], 1, &["sig"]);

    // wait blocks until the exit.
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "seven",
            "busybox",
            "sh",
            "-c",
            "sleep 0.5; exit 7",
        ],
    );
    let o = agent.ctl(&["wait", "seven"]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (7, "7\n".to_string()),
        "stderr: {}",
        stderr(&o)
    );

    // logs -f streams while the container runs and ends when it exits.
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "follow",
            "busybox",
            "sh",
            "-c",
            "echo first; while true; do sleep 0.1; done",
        ],
    );
    let mut f = Streaming::spawn(&agent, &["logs", "-f", "follow"]);
    assert_eq!(f.next_line(10).as_deref(), Some("first"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(f.still_running(), "logs -f ended while the container runs");
    assert_eq!(ok(&agent, &["kill", "follow"]), "follow\n");
    let (status, err) = f.wait_exit(10);
    assert_eq!((status, err.as_str()), (0, ""));
    assert_eq!(f.next_line(1), None, "nothing more after the exit");
    let c = inspect(&agent, "follow");
    assert_eq!(
        (c["exit"]["exitCode"].as_i64(), c["exit"]["signal"].as_i64()),
        (Some(137), Some(9))
    );

    // rm of exited containers, several at once.
    assert_eq!(ok(&agent, &["rm", "web", "sig"]), "web\nsig\n");
    // rm -f of a running container.
    ok(
        &agent,
        &["run", "-d", "--name", "busy", "busybox", "sleep", "1000"],
    );
    assert_eq!(ok(&agent, &["rm", "-f", "busy"]), "busy\n");
    let mut names = all_names(&agent);
    names.sort();
    assert_eq!(names, ["follow", "seven"]);

    // Unknown names: exit 1 and a message naming them.
    for args in [
        &["inspect", "nosuch"][..],
        &["logs", "nosuch"],
        &["stop", "nosuch"],
        &["kill", "nosuch"],
        &["wait", "nosuch"],
        &["rm", "nosuch"],
        &["rm", "-f", "nosuch"],
        &["start", "nosuch"],
    ] {
        fails(&agent, args, 1, &["nosuch"]);
    }
    // One bad name among good ones: the good ones are done, exit status 1.
    let o = agent.ctl(&["rm", "nosuch", "seven"]);
    check_failure(&o, &["rm", "nosuch", "seven"], 1, &["nosuch"]);
    assert_eq!(stdout(&o), "seven\n");
    assert_eq!(all_names(&agent), ["follow"]);
    assert_eq!(ok(&agent, &["rm", "follow"]), "follow\n");
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- events

/// Waits for lines on `s` until one satisfies `pred`; returns all lines read.
fn read_until(s: &Streaming, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let Some(line) = s.next_line(15) else {
            panic!("no {what} event; saw {seen:#?}")
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let done = pred(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_stream_and_filters() {
    let agent = Agent::start().await;
    import_busybox(&agent);

    let all = Streaming::spawn(&agent, &["events", "-o", "json"]);
    let exited = Streaming::spawn(
        &agent,
        &["events", "-o", "json", "--filter", "event=exited"],
    );
    // The subscriptions are live only once berthctl has made them: run
    // throw-away containers until both have shown something.
    let mut all_seen = Vec::new();
    let mut exited_seen = Vec::new();
    for n in 0.. {
        assert!(n < 20, "events never showed anything");
        let name = format!("sync{n}");
        ok(&agent, &["run", "--rm", "--name", &name, "busybox", "true"]);
        std::thread::sleep(Duration::from_millis(200));
        while let Ok(l) = all.lines.try_recv() {
            all_seen.push(serde_json::from_str::<Value>(&l).unwrap());
        }
        while let Ok(l) = exited.lines.try_recv() {
            exited_seen.push(serde_json::from_str::<Value>(&l).unwrap());
        }
        if !all_seen.is_empty() && !exited_seen.is_empty() {
            // Let the last sync container's removal arrive too.
            let removed =
                |e: &Value| e["name"] == name.as_str() && e["action"] == "EVENT_ACTION_REMOVED";
            if !all_seen.iter().any(removed) {
                all_seen.extend(read_until(&all, "EVENT_ACTION_REMOVED", removed));
            }
            break;
        }
    }
    let last_seq = seq(all_seen.last().unwrap());
    // A container filter, replaying from the next sequence number so that
    // nothing is missed whenever the subscription becomes live.
    let from = (last_seq + 1).to_string();
    let one = Streaming::spawn(
        &agent,
        &[
            "events",
            "-o",
            "json",
            "--since-seq",
            &from,
            "--filter",
            "container=ev1",
        ],
    );

    let o = agent.ctl(&[
        "run", "--name", "ev1", "-l", "app=ev", "busybox", "sh", "-c", "exit 5",
    ]);
    assert_eq!(code(&o), 5, "stderr: {}", stderr(&o));
    ok(
        &agent,
        &["run", "--rm", "--name", "other", "busybox", "true"],
    );
    assert_eq!(ok(&agent, &["rm", "ev1"]), "ev1\n");

    // Unfiltered: everything, in order, seq increasing one by one.
    let rest = read_until(&all, "ev1 removed", |e| {
        e["name"] == "ev1" && e["action"] == "EVENT_ACTION_REMOVED"
    });
    all_seen.extend(rest);
    let seqs: Vec<u64> = all_seen.iter().map(seq).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "seq not increasing by one: {seqs:?}");
    }
    let ev1: Vec<&Value> = all_seen.iter().filter(|e| e["name"] == "ev1").collect();
    let actions: Vec<&str> = ev1.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "EVENT_ACTION_CREATED",
            "EVENT_ACTION_STARTED",
            "EVENT_ACTION_EXITED",
            "EVENT_ACTION_REMOVED"
        ],
        "{:#?}",
        summary(&all_seen)
    );
    let ev1_id = ev1[0]["id"].as_str().unwrap();
    assert!(is_hex(ev1_id, 64));
    for e in &ev1 {
        assert_eq!(e["type"], "OBJECT_TYPE_CONTAINER");
        assert_eq!(e["id"], ev1_id);
        assert_eq!(e["image"], "busybox");
        assert_eq!(e["labels"]["app"], "ev");
    }
    assert_eq!(ev1[2]["exit"]["exitCode"], 5);
    let other: Vec<(String, String)> = summary(&all_seen)
        .into_iter()
        .filter(|(n, _)| n == "other")
        .collect();
    let other: Vec<&str> = other.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        other,
        [
            "EVENT_ACTION_CREATED",
            "EVENT_ACTION_STARTED",
            "EVENT_ACTION_EXITED",
            "EVENT_ACTION_REMOVED"
        ]
    );

    // container=ev1: only ev1's events, replayed and live.
    let got = read_until(&one, "ev1 removed", |e| {
        e["action"] == "EVENT_ACTION_REMOVED"
    });
    let actions: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("ev1", "EVENT_ACTION_CREATED"),
            ("ev1", "EVENT_ACTION_STARTED"),
            ("ev1", "EVENT_ACTION_EXITED"),
            ("ev1", "EVENT_ACTION_REMOVED")
        ]
    );
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > last_seq);

    // event=exited: only exits, of every container.
    exited_seen.extend(read_until(&exited, "other exited", |e| {
        e["name"] == "other"
    }));
    assert!(
        exited_seen
            .iter()
            .all(|e| e["action"] == "EVENT_ACTION_EXITED"),
        "{:#?}",
        summary(&exited_seen)
    );
    let names: Vec<&str> = exited_seen
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let tail = &names[names.len() - 2..];
    assert_eq!(tail, ["ev1", "other"]);
    let seqs: Vec<u64> = exited_seen.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(exited_seen[exited_seen.len() - 2]["exit"]["exitCode"], 5);

    // The table form: one line per event.
    let table_events = Streaming::spawn(
        &agent,
        &["events", "--since-seq", "1", "--filter", "container=ev1"],
    );
    let line = table_events.next_line(10).expect("a table line");
    let parts: Vec<&str> = line.split(' ').collect();
    assert!(parts.len() >= 5, "{line:?}");
    assert!(parts[0].ends_with('Z'), "{line:?}");
    assert_eq!(
        &parts[2..5],
        ["container", "created", &ev1_id[..12]],
        "{line:?}"
    );
    assert!(
        line.contains("name=ev1") && line.contains("image=busybox"),
        "{line:?}"
    );

    // An invalid filter is a clear error.
    fails(
        &agent,
        &["events", "--filter", "event=exploded"],
        1,
        &["exploded"],
    );
    drop((all, exited, one, table_events));
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- info

#[tokio::test]
async fn info_reports_cgroup_version() {
    let agent = Agent::start().await;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let want = if v2 { "2" } else { "1" };
    let out = ok(&agent, &["info"]);
    let fields: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once(": ")).collect();
    assert_eq!(fields.get("Cgroup version").copied(), Some(want), "{out}");
    // The parent as the agent resolved it, from the cgroup root.
    let parent = format!("/{}", agent.cgroup_parent);
    assert_eq!(
        fields.get("Cgroup parent").copied(),
        Some(parent.as_str()),
        "{out}"
    );
    assert_eq!(
        fields.get("State dir").copied(),
        agent.state_dir.to_str(),
        "{out}"
    );
    assert_eq!(
        fields.get("Security options").copied(),
        Some("seccomp (default profile)"),
        "{out}"
    );
    assert_eq!(
        fields.get("Containers").copied(),
        Some("0 (0 running, 0 created, 0 exited)"),
        "{out}"
    );
    assert_eq!(fields.get("Images").copied(), Some("0"), "{out}");

    let js = json_lines(&ok(&agent, &["info", "-o", "json"]));
    assert_eq!(js.len(), 1);
    let i = &js[0];
    assert_eq!(i["cgroupVersion"].as_u64(), Some(if v2 { 2 } else { 1 }));
    assert_eq!(i["os"], "linux");
    assert_eq!(i["cgroupParent"], parent.as_str());
    assert!(i["cpus"].as_u64().unwrap() >= 1);
    assert!(int64(&i["memoryTotalBytes"]) > 0);
    assert_eq!(i["containers"], 0);

    import_busybox(&agent);
    ok(&agent, &["create", "--name", "c1", "busybox", "true"]);
    let i = &json_lines(&ok(&agent, &["info", "-o", "json"]))[0];
    assert_eq!(
        (
            i["images"].as_u64(),
            i["containers"].as_u64(),
            i["containersCreated"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    ok(&agent, &["rm", "c1"]);

    // version: both sides.
    let out = ok(&agent, &["version"]);
    assert!(out.starts_with("Client:\n Version:      "), "{out}");
    assert!(out.contains("\nServer:\n Version:      "), "{out}");
    agent.assert_clean().await;
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn errors_are_clear_and_have_the_right_status() {
    let agent = Agent::start().await;
    import_busybox(&agent);

    // A bad --memory is a usage error (2), nothing is created.
    let o = agent.ctl(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(code(&o), 2, "stderr: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--memory") && err.contains("lots") && err.contains("64m"),
        "{err}"
    );
    assert_eq!(stdout(&o), "");
    let o = agent.ctl(&["run", "--cpus", "half", "busybox", "true"]);
    assert_eq!(code(&o), 2, "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("--cpus"), "{}", stderr(&o));
    assert!(all_names(&agent).is_empty());

    // An unknown image: run fails with 125, in both modes; create with 1.
    fails(
        &agent,
        &["run", "nosuchimage"],
        125,
        &["no such image", "nosuchimage"],
    );
    fails(
        &agent,
        &["run", "--rm", "nosuchimage", "true"],
        125,
        &["nosuchimage"],
    );
    fails(&agent, &["run", "-d", "nosuchimage"], 125, &["nosuchimage"]);
    fails(&agent, &["create", "nosuchimage"], 1, &["nosuchimage"]);
    assert!(all_names(&agent).is_empty());

    // A duplicate name.
    ok(
        &agent,
        &["run", "-d", "--name", "dup", "busybox", "sleep", "1000"],
    );
    fails(
        &agent,
        &["run", "-d", "--name", "dup", "busybox", "true"],
        125,
        &["dup", "already in use"],
    );
    fails(
        &agent,
        &["run", "--rm", "--name", "dup", "busybox", "true"],
        125,
        &["dup", "already in use"],
    );
    fails(
        &agent,
        &["create", "--name", "dup", "busybox"],
        1,
        &["dup", "already in use"],
    );
    assert_eq!(all_names(&agent), ["dup"]);
    // An invalid name.
    fails(
        &agent,
        &["run", "-d", "--name", "bad name", "busybox", "true"],
        125,
        &["bad name"],
    );
    assert_eq!(ok(&agent, &["rm", "-f", "dup"]), "dup\n");

    // Bad filters.
    fails(&agent, &["ps", "--filter", "status=bogus"], 1, &["bogus"]);
    fails(&agent, &["logs", "--tail", "x", "dup"], 1, &["--tail"]);

    // An unreachable agent: 125, "cannot connect", whatever the command.
    let dead = agent.dir.join("nobody.sock");
    for args in [
        &["ps"][..],
        &["run", "--rm", "busybox", "true"],
        &["image", "ls"],
        &["events"],
        &["info"],
    ] {
        let o = Command::new(common::bin("berthctl"))
            .arg("--host")
            .arg(&dead)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = check_failure(
            &o,
            args,
            125,
            &["cannot connect", "nobody.sock", "is berthd running?"],
        );
        assert!(
            err.starts_with(&format!(
                "berthctl: cannot connect to berthd at unix://{}",
                dead.display()
            )),
            "{err}"
        );
        assert_eq!(stdout(&o), "");
    }
    // Also through BERTH_HOST, and for a TCP address nobody listens on.
    let o = Command::new(common::bin("berthctl"))
        .env("BERTH_HOST", &dead)
        .arg("ps")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check_failure(&o, &["ps"], 125, &["cannot connect", "nobody.sock"]);
    let o = Command::new(common::bin("berthctl"))
        .args(["--host", "http://127.0.0.1:1", "ps"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check_failure(&o, &["ps"], 125, &["cannot connect", "127.0.0.1:1"]);
    agent.assert_clean().await;
}

// ------------------------------------------- events across agent restarts

#[tokio::test]
async fn events_follow_reconnects_across_an_agent_restart() {
    let mut agent = Agent::start().await;
    import_busybox(&agent);
    ok(
        &agent,
        &["run", "--rm", "--name", "before", "busybox", "true"],
    );
    let events = Streaming::spawn(&agent, &["events", "-o", "json", "--since-seq", "1"]);
    let first = read_until(&events, "EVENT_ACTION_REMOVED", |e| {
        e["name"] == "before" && e["action"] == "EVENT_ACTION_REMOVED"
    });
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn().await;
    ok(
        &agent,
        &["run", "--rm", "--name", "after", "busybox", "true"],
    );
    let second = read_until(&events, "EVENT_ACTION_REMOVED", |e| {
        e["name"] == "after" && e["action"] == "EVENT_ACTION_REMOVED"
    });
    let seqs: Vec<u64> = first.iter().chain(&second).map(seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "events lost or repeated across the restart");
    let instances: std::collections::BTreeSet<&str> = first
        .iter()
        .chain(&second)
        .map(|e| e["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 2, "two agent runs");
    agent.assert_clean().await;
}

#[tokio::test]
async fn pause_unpause_update_restart_policy() {
    let agent = Agent::start().await;
    import_busybox(&agent);
    ok(
        &agent,
        &[
            "run",
            "-d",
            "--name",
            "svc",
            "--memory",
            "64m",
            "--restart",
            "on-failure:3",
            "busybox",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 1000 & wait",
        ],
    );
    assert_eq!(ok(&agent, &["pause", "svc"]).trim(), "svc");
    let rows = table(&ok(&agent, &["ps"]));
    assert!(rows[0]["STATUS"].ends_with("(Paused)"), "{rows:?}");
    assert_eq!(inspect(&agent, "svc")["state"], "CONTAINER_STATE_PAUSED");
    ok(&agent, &["unpause", "svc"]);
    assert_eq!(inspect(&agent, "svc")["state"], "CONTAINER_STATE_RUNNING");
    ok(
        &agent,
        &["update", "--memory", "128m", "--restart", "always", "svc"],
    );
    let c = inspect(&agent, "svc");
    assert_eq!(int64(&c["spec"]["resources"]["memoryBytes"]), 128 << 20);
    fails(&agent, &["update", "svc"], 1, &["nothing to update"]);
    // A bad policy is a usage error (clap's format, exit 2).
    let o = agent.ctl(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("unknown restart policy"),
        "{}",
        stderr(&o)
    );
    ok(&agent, &["rm", "-f", "svc"]);
    agent.assert_clean().await;
}
