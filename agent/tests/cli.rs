//! berthd's command line. (Having an integration test here also makes
//! `cargo test --workspace` build the berthd binary that tests/ drive.)

use std::process::Command;

fn berthd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berthd"))
}

#[test]
fn help_lists_the_flags_with_their_defaults() {
    let out = berthd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--socket",
        "--state-dir",
        "--cgroup-parent",
        "--events-retain",
        "--insecure-tcp",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("/run/berth/berthd.sock"));
    assert!(text.contains("/var/lib/berth"));
}

#[test]
fn version_is_the_crate_version() {
    let out = berthd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("berthd {}", env!("CARGO_PKG_VERSION"))
    );
}
