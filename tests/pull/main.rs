//! End to end: pulling from a real registry (Debian's docker-registry on
//! loopback, images pushed with skopeo) into a real berthd.
//!
//! One test binary; its tests are grouped by concern in the modules below.

#[path = "../common/mod.rs"]
mod common;

mod build;
mod codes_and_auth;
mod containers;
mod crash;
mod fleet;
mod layouts;
mod push;
mod transfers;

use std::path::Path;
use std::time::Duration;

use berth::v1 as pb;
use common::image::{busybox_layer, Entry};
use common::registry::{host_arch, noise, Layout, Proxy, Registry, TestLayer};
use common::Agent;
use tokio_stream::StreamExt;

/// A pull through the API: every progress message, then the image.
async fn pull(
    agent: &Agent,
    reference: &str,
    creds: Option<(&str, &str)>,
) -> Result<(Vec<pb::PullImageProgress>, pb::Image), tonic::Status> {
    let mut s = agent
        .images()
        .pull(pb::PullImageRequest {
            reference: reference.to_string(),
            credentials: creds.map(|(u, p)| pb::RegistryCredentials {
                username: u.into(),
                password: p.into(),
            }),
        })
        .await?
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = s.next().await {
        msgs.push(m?);
    }
    let image = msgs
        .last()
        .and_then(|m| m.image.clone())
        .expect("the last message carries the image");
    Ok((msgs, image))
}

/// Final state of each layer.
fn final_states(msgs: &[pb::PullImageProgress]) -> Vec<pb::LayerState> {
    msgs.last()
        .unwrap()
        .layers
        .iter()
        .map(|l| pb::LayerState::try_from(l.state).unwrap())
        .collect()
}

/// Runs berthctl with `input` on its stdin.
fn ctl_stdin(agent: &Agent, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running berthctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn file(path: &str, data: &[u8]) -> Entry {
    Entry::File(path.into(), data.to_vec(), 0o644)
}

/// Runs `script` in a container of `image`; returns stdout.
async fn run(agent: &Agent, image: &str, script: &str) -> String {
    let mut spec = common::sh(script);
    spec.image = image.to_string();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "stdout {out:?} stderr {err:?}");
    out
}

/// Files and directories under the store's dir `sub`.
fn entries(agent: &Agent, sub: &str) -> Vec<String> {
    std::fs::read_dir(agent.state_dir.join("images").join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
