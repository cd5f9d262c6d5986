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
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_status",
        ])
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

/// The fenced blocks of `lang` in the README's "From another language"
/// section, as printed.
fn readme_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("### From another language")
        .expect("README has a \"From another language\" section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |e| e + 4)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("```{lang}") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n") + "\n");
        }
    }
    blocks
}

/// A directory where the README's relative `proto` names the repository's.
fn example_dir(agent: &Agent) -> PathBuf {
    let dir = agent.dir.join("readme-example");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(repo().join("proto"), dir.join("proto")).unwrap();
    dir
}

/// The README's examples, with only the socket path replaced by the test
/// agent's: they print the version, then the exit code of `echo hi`.
fn assert_example_output(what: &str, out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [env!("CARGO_PKG_VERSION"), "0"],
        "{what} printed something else:\n{out}"
    );
}

#[tokio::test]
async fn readme_python_example_runs_as_printed() {
    let python = tool("python3", &[], "apt-get install python3");
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = example_dir(&agent);
    let sh = readme_blocks("sh");
    let protoc = sh
        .iter()
        .flat_map(|b| b.lines())
        .find(|l| l.contains("grpc_tools.protoc"))
        .expect("the README shows how to generate the Python bindings");
    run_client(
        "the README's protoc command",
        &agent,
        tokio::process::Command::new("sh")
            .current_dir(&dir)
            .args(["-c", protoc]),
    )
    .await;
    let [example] = &readme_blocks("python")[..] else {
        panic!("the README has one Python example");
    };
    let example = example.replace("/run/berth/berthd.sock", agent.socket.to_str().unwrap());
    let out = run_client(
        "the README's Python example",
        &agent,
        tokio::process::Command::new(python)
            .current_dir(&dir)
            .args(["-c", &example]),
    )
    .await;
    assert_example_output("the README's Python example", &out);
}

#[tokio::test]
async fn readme_node_example_runs_as_printed() {
    let node = tool("node", &[], "apt-get install nodejs npm");
    let modules = clients_dir("node").join("node_modules");
    assert!(
        modules.join("@grpc/grpc-js").is_dir(),
        "the Node client's packages are missing: npm ci --prefix tests/clients/node"
    );
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = example_dir(&agent);
    let [example] = &readme_blocks("js")[..] else {
        panic!("the README has one Node example");
    };
    let example = example.replace("/run/berth/berthd.sock", agent.socket.to_str().unwrap());
    let out = run_client(
        "the README's Node example",
        &agent,
        tokio::process::Command::new(node)
            .current_dir(&dir)
            .env("NODE_PATH", modules)
            .args(["-e", &example]),
    )
    .await;
    assert_example_output("the README's Node example", &out);
}
