//! berth-monitor's command line: only berthd starts it, for one container
//! (`__monitor <dir>`) or ahead of time (`__monitor`). This runs the very
//! binary berthd embeds (agent/build.rs builds it).

use std::process::{Command, Stdio};

fn monitor() -> Command {
    Command::new(env!("BERTH_MONITOR_BIN"))
}

#[test]
fn anything_but_monitor_mode_is_a_usage_error() {
    for args in [&[][..], &["monitor"][..], &["--help"][..]] {
        let out = monitor().args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "berth-monitor {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("berth-monitor __monitor [<container dir>]"),
            "berth-monitor {args:?}: {stderr}"
        );
    }
}

#[test]
fn a_bad_launch_spec_is_reported_as_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    bad_spec_fails(monitor().arg("__monitor").arg(dir.path()));
    // A spare, started before it knows its container.
    bad_spec_fails(monitor().arg("__monitor"));
}

fn bad_spec_fails(cmd: &mut Command) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"not\": \"a launch spec\"}")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(report["failed"]["exit_code"], 125, "{report}");
    assert!(
        report["failed"]["message"]
            .as_str()
            .unwrap()
            .contains("bad launch spec"),
        "{report}"
    );
}
