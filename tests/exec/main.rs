//! End to end: exec into a running container (issue 20), through the API
//! (Exec, ExecSync) and `berthctl exec`.
//!
//! One test binary; its tests are grouped by concern in the modules below.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod attach_api;
mod ctl;
mod durable;
mod interactive;

use std::time::Duration;

use berth::v1 as pb;
use berth::v1::exec_client::ExecClient;
use berth::v1::exec_request::Request as In;
use berth::v1::exec_response::Response as Out;
use common::image::{busybox_with, Entry};
use common::{cli, Agent};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

/// An agent with busybox (plus the `stty` and `unshare` applets).
async fn agent_with(args: &[&str]) -> Agent {
    let agent = Agent::start_with(args).await;
    let extra = ["stty", "unshare"]
        .iter()
        .map(|a| Entry::Symlink(format!("bin/{a}"), "busybox".into()))
        .collect();
    agent
        .import(busybox_with("docker.io/library/busybox:latest", extra), "")
        .await
        .expect("import");
    agent
}

/// A running container that sleeps, with FOO=bar in its env and /tmp as
/// its working directory.
async fn sleeper(agent: &Agent) -> pb::Container {
    agent
        .run(pb::ContainerSpec {
            image: "busybox".into(),
            command: vec!["sleep".into(), "1000".into()],
            env: vec!["FOO=bar".into()],
            working_dir: "/tmp".into(),
            ..Default::default()
        })
        .await
}

fn spec(container: &str, argv: &[&str]) -> pb::ExecSpec {
    pb::ExecSpec {
        container: container.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn sync(
    agent: &Agent,
    req: pb::ExecSyncRequest,
) -> Result<pb::ExecSyncResponse, tonic::Status> {
    ExecClient::new(agent.channel.clone())
        .exec_sync(req)
        .await
        .map(|r| r.into_inner())
}

/// Runs `s` to completion: (exit code, stdout, stderr).
async fn run(agent: &Agent, s: pb::ExecSpec) -> (i32, String, String) {
    let r = sync(
        agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        r.exit.expect("exit").exit_code,
        text(&r.stdout),
        text(&r.stderr),
    )
}

fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// An interactive exec: the request sender and the response stream.
async fn open(
    agent: &Agent,
    s: pb::ExecSpec,
) -> (
    mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ExecRequest {
        request: Some(In::Start(s)),
    })
    .await
    .unwrap();
    let resp = ExecClient::new(agent.channel.clone())
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("exec")
        .into_inner();
    (tx, resp)
}

fn req(r: In) -> pb::ExecRequest {
    pb::ExecRequest { request: Some(r) }
}

/// Reads responses until stdout holds `needle` (or the exit): all stdout so far.
async fn read_until(resp: &mut tonic::Streaming<pb::ExecResponse>, out: &mut String, needle: &str) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while !out.contains(needle) {
            match resp
                .message()
                .await
                .expect("stream")
                .expect("ended")
                .response
            {
                Some(Out::Stdout(b)) => out.push_str(&String::from_utf8_lossy(&b)),
                Some(Out::Exit(x)) => panic!("exited {x:?} before {needle:?}: {out}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle:?} in {out:?}");
}

/// The exit, after any output.
async fn exit_of(resp: &mut tonic::Streaming<pb::ExecResponse>) -> pb::ExitStatus {
    loop {
        match resp
            .message()
            .await
            .expect("stream")
            .expect("ended")
            .response
        {
            Some(Out::Exit(x)) => return x,
            _ => continue,
        }
    }
}
