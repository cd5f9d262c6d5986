//! Running the real `berthctl` in end-to-end tests: exit statuses, one-line
//! errors, JSON lines, and commands that must end by themselves within a
//! bounded time (killed, and the test failed, otherwise).

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{bin, slow_factor, Agent};

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit status; a death by signal is a test failure in itself.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or_else(|| {
        panic!(
            "berthctl died by a signal: {:?}\nstderr: {}",
            o.status,
            stderr(o)
        )
    })
}

/// Runs berthctl with no agent (help, parse errors, completions).
pub fn ctl_alone(args: &[&str]) -> Output {
    Command::new(bin("berthctl"))
        .args(args)
        .env_remove("BERTH_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("running berthctl")
}

/// Asserts exit status 0 and an empty stderr; returns stdout.
pub fn expect_ok(o: &Output, args: &[&str]) -> String {
    assert_eq!(
        code(o),
        0,
        "berthctl {args:?} failed\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert_eq!(stderr(o), "", "berthctl {args:?} wrote to stderr");
    stdout(o)
}

/// Runs berthctl against `agent`, expecting success; returns stdout.
pub fn ok(agent: &Agent, args: &[&str]) -> String {
    expect_ok(&agent.ctl(args), args)
}

/// Asserts exit status `want` and one `berthctl: ...` line on stderr that
/// mentions every one of `mentions`; returns that line.
pub fn expect_failure(o: &Output, args: &[&str], want: i32, mentions: &[&str]) -> String {
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

/// Each line of `out` as a JSON value; panics on anything else.
pub fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// Runs berthctl against `agent` and waits at most `secs` (scaled by
/// [`slow_factor`]) for it to end by itself: for commands that must not
/// hang, such as `events --until`. Kills it and fails the test otherwise.
pub fn ctl_ending(agent: &Agent, args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning berthctl");
    // Read both pipes in threads so a full pipe cannot stall the child.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(secs * u64::from(slow_factor()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for berthctl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berthctl {args:?} did not end within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Now, as Unix seconds with nanoseconds: a time `--since`/`--until` take.
pub fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}
