//! Real gRPC clients in other languages against a real berthd: Python
//! (grpcio), Node (@grpc/grpc-js) and Go (grpc-go), each written as a user
//! of that language would write it, with the target `unix:///...` and no
//! options. Each imports an image, creates, starts and waits for a container,
//! reads its logs, replays its events with resume and reads an error's
//! details (tests/clients/<language>/). A missing toolchain or missing
//! dependencies fail the test: .ci/run installs them.
//!
//! The README's examples are run as they are printed, too
//! (`readme_examples_run`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Agent;

/// The longest a client may take, Go's build of grpc-go included.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn clients_dir(lang: &str) -> PathBuf {
    repo().join("tests/clients").join(lang)
}

/// Finds a tool in PATH or at one of `fallbacks`; fails loudly otherwise.
fn tool(name: &str, fallbacks: &[&str], install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    for f in fallbacks {
        if Path::new(f).is_file() {
            return PathBuf::from(f);
        }
    }
    panic!("{name} not found in PATH: the client tests need it ({install})");
}

/// An agent with the busybox test image written out as an archive, for a
/// client to import.
async fn agent_with_archive(reference: &str) -> (Agent, PathBuf) {
    let agent = Agent::start().await;
    let archive = agent.dir.join("busybox.tar");
    std::fs::write(&archive, common::image::busybox(reference)).unwrap();
    (agent, archive)
}

/// Runs a client to its end and fails the test, with its output, unless it
/// succeeded.
async fn run_client(what: &str, agent: &Agent, cmd: &mut tokio::process::Command) -> String {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- berthd log\n{}",
        out.status,
        agent.log()
    );
    stdout
}

#[tokio::test]
async fn python_grpcio_client() {
    let python = tool("python3", &[], "apt-get install python3");
    let deps = std::process::Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, grpc_reflection, grpc_status"])
        .output()
        .expect("running python3");
    assert!(
        deps.status.success(),
        "the Python client's packages are missing: pip install -r tests/clients/python/requirements.txt\n{}",
        String::from_utf8_lossy(&deps.stderr)
    );
    let (agent, archive) = agent_with_archive("berth-client-py:1").await;
    let out = run_client(
        "the Python client",
        &agent,
        tokio::process::Command::new(python)
            .arg(clients_dir("python").join("client.py"))
            .arg(&agent.socket)
            .arg(repo().join("proto"))
            .arg(&archive)
            .arg("berth-client-py:1"),
    )
    .await;
    assert!(out.contains("python client: all passed"), "{out}");
}

#[tokio::test]
async fn node_grpc_js_client() {
    let node = tool("node", &[], "apt-get install nodejs npm");
    let dir = clients_dir("node");
    assert!(
        dir.join("node_modules/@grpc/grpc-js").is_dir(),
        "the Node client's packages are missing: npm ci --prefix tests/clients/node"
    );
    let (agent, archive) = agent_with_archive("berth-client-node:1").await;
    let out = run_client(
        "the Node client",
        &agent,
        tokio::process::Command::new(node)
            .arg(dir.join("client.js"))
            .arg(&agent.socket)
            .arg(repo().join("proto"))
            .arg(&archive)
            .arg("berth-client-node:1"),
    )
    .await;
    assert!(out.contains("node client: all passed"), "{out}");
}

#[tokio::test]
async fn go_grpc_go_client() {
    let go = tool("go", &["/usr/local/go/bin/go"], "a Go toolchain");
    let (agent, archive) = agent_with_archive("berth-client-go:1").await;
    let exe = agent.dir.join("berth-go-client");
    // -mod=readonly: the versions are those of go.mod and go.sum, never
    // newer ones looked up at test time.
    run_client(
        "building the Go client (needs `go mod download` in tests/clients/go)",
        &agent,
        tokio::process::Command::new(&go)
            .current_dir(clients_dir("go"))
            .args(["build", "-mod=readonly", "-o"])
            .arg(&exe)
            .arg("."),
    )
    .await;
    let out = run_client(
        "the Go client",
        &agent,
        tokio::process::Command::new(&exe)
            .arg(&agent.socket)
            .arg(&archive)
            .arg("berth-client-go:1"),
    )
    .await;
    assert!(out.contains("go client: all passed"), "{out}");
}
