//! Helpers of the build tests (tests/build.rs, tests/build_cache.rs):
//! contexts, `berthctl build` runs and their JSON progress, images run.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth::v1 as pb;

use super::{sh, Agent};

/// A context directory with `files` (path, content).
pub fn context(agent: &Agent, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = agent.dir.join(name);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

pub fn build(agent: &Agent, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let d = dir.to_string_lossy().to_string();
    args.push(&d);
    agent.ctl(&args)
}

pub fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "build failed: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The build's progress messages (`-o json`): the last is the result.
pub fn json_build(agent: &Agent, dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["-o", "json"];
    args.extend_from_slice(extra);
    let o = build(agent, dir, &args);
    ok(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

pub fn result(msgs: &[serde_json::Value]) -> &serde_json::Value {
    &msgs.last().expect("messages")["result"]
}

pub async fn image(agent: &Agent, name: &str) -> pb::Image {
    agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: name.to_string(),
        })
        .await
        .expect("inspect image")
        .into_inner()
        .image
        .expect("an image")
}

/// Runs `spec` (image `img`) and returns its stdout, asserting exit 0.
pub async fn run_out(agent: &Agent, img: &str, script: &str) -> String {
    let mut spec = sh(script);
    spec.image = img.to_string();
    // Past the image's own entrypoint, if it has one.
    spec.entrypoint = Some(pb::StringList { values: Vec::new() });
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{out}\n{err}");
    out
}

/// Steps by number: (cached, image) of each step's `done`.
pub fn steps(msgs: &[serde_json::Value]) -> Vec<(bool, String)> {
    msgs.iter()
        .filter_map(|m| m.get("done"))
        .map(|d| {
            (
                d["cached"].as_bool().unwrap_or(false),
                d["imageId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
