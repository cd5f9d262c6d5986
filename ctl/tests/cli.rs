//! berthctl's command line without an agent. (Having an integration test
//! here also makes `cargo test --workspace` build the berthctl binary that
//! tests/ drive.)

use std::process::Command;

fn berthctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berthctl"))
}

#[test]
fn help_lists_the_commands() {
    let out = berthctl().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "ps", "logs", "events", "image", "info"] {
        assert!(text.contains(cmd), "--help lacks {cmd}:\n{text}");
    }
}

#[test]
fn an_unreachable_agent_exits_125_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("berthctl-cli-{}", std::process::id()));
    let out = berthctl()
        .arg("--host")
        .arg(dir.join("missing.sock"))
        .arg("ps")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}
