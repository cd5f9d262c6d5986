//! Small static C programs the tests build with Debian's gcc and glibc and
//! put into a busybox image, for what busybox cannot do (one system call
//! with chosen arguments, a namespace busybox's `unshare` lacks).

use std::process::Command;

use super::image::{busybox_with, Entry};
use super::Agent;

/// Compiles the C program `source` statically and returns the executable.
pub fn static_probe(name: &str, source: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join(format!("{name}.c"));
    let exe = dir.path().join(name);
    std::fs::write(&c, source).expect("writing the probe's source");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("running cc (Debian's gcc and libc6-dev build the probe)");
    assert!(
        out.status.success(),
        "compiling {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&exe).expect("reading the probe")
}

/// Imports busybox with `probe` at /bin/probe, as image `name`.
pub async fn import_with_probe(agent: &Agent, name: &str, probe: Vec<u8>) {
    agent
        .import(
            busybox_with(
                &format!("docker.io/library/{name}:latest"),
                vec![Entry::File("bin/probe".into(), probe, 0o755)],
            ),
            "",
        )
        .await
        .expect("importing the probe image");
}
