//! End to end: berthd's CRI v1 front end (`--cri-socket`), driven by the
//! real `crictl` of cri-tools v1.37.0 (Kubernetes SIG Node's CLI), with
//! images imported through berth's own API and pulled from a real registry
//! (Debian's docker-registry) on loopback.

mod common;

use std::path::Path;
use std::process::Command;

use common::cri::{crictl_path, Cri};
use common::image::busybox_layer;
use common::registry::{host_arch, Layout, Registry, TestLayer};
use serde_json::Value;

impl Cri {
    /// The image events on berth's event log so far (`berthctl events`).
    fn image_events(&self) -> String {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        let out = self
            .agent
            .ctl(&["events", "-f", "type=image", "--until", &until.to_string()]);
        assert!(
            out.status.success(),
            "berthctl events: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A verbose info value: crictl shows it as the JSON it is, or as a string
/// of JSON.
fn embedded(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        None => v.clone(),
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn version_and_info_describe_berth() {
    let cri = Cri::start().await;
    let out = cri.ok(&["version"]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    assert_eq!(field("RuntimeName"), "berth");
    assert_eq!(field("RuntimeVersion"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("RuntimeApiVersion"), "v1");

    let info = cri.json(&["info"]);
    let conditions = info["status"]["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions: {info}"));
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .unwrap_or_else(|| panic!("no {t} condition: {info}"))
    };
    assert_eq!(cond("RuntimeReady")["status"], true, "{info}");
    let net = cond("NetworkReady");
    assert_eq!(net["status"], false, "{info}");
    assert_eq!(net["reason"], "NetworkPluginNotReady", "{info}");
    assert!(
        net["message"]
            .as_str()
            .is_some_and(|m| m.contains("no CNI configuration")),
        "{info}"
    );
    // Verbose info says where the images are.
    let berth = embedded(&info["berth"]);
    assert_eq!(
        berth["imageStore"],
        cri.agent.state_dir.join("images").display().to_string(),
        "{info}"
    );
}

#[tokio::test]
async fn calls_not_served_yet_say_so() {
    let cri = Cri::start().await;
    for (args, rpc) in [
        (&["metricdescs"][..], "ListMetricDescriptors"),
        (&["metricsp"][..], "ListPodSandboxMetrics"),
    ] {
        let err = cri.fails(args);
        assert!(
            err.contains(&format!("berth CRI: not supported yet: {rpc}")),
            "crictl {args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn images_are_listed_inspected_measured_and_removed() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let berth = cri.berth_images().await;
    assert_eq!(berth.len(), 1);
    let id = berth[0].id.clone();

    // The table: repository, tag, and the id's first 13 characters.
    let table = cri.ok(&["images"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("docker.io/library/busybox "))
        .unwrap_or_else(|| panic!("busybox not listed:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "latest", "{row}");
    assert!(
        id.starts_with(&format!("sha256:{}", cols[2])),
        "{row} vs {id}"
    );

    let list = cri.json(&["images", "-o", "json"]);
    let images = list["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{list}");
    assert_eq!(images[0]["id"], id.as_str());
    assert_eq!(
        strs(&images[0]["repoTags"]),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        strs(&images[0]["repoDigests"]),
        [format!(
            "docker.io/library/busybox@{}",
            berth[0].manifest_digest
        )]
    );
    assert!(
        images[0]["size"]
            .as_str()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // A filter that names another repository lists nothing.
    let none = cri.json(&["images", "-o", "json", "alpine"]);
    assert!(
        none["images"].as_array().is_none_or(Vec::is_empty),
        "{none}"
    );

    let status = cri.json(&["inspecti", "busybox"]);
    assert_eq!(status["status"]["id"], id.as_str(), "{status}");
    assert_eq!(
        strs(&status["status"]["repoTags"]),
        ["docker.io/library/busybox:latest"]
    );
    // Verbose info: the record with its layers.
    let info = embedded(&status["info"]);
    let layers = info["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in the verbose info: {status}"));
    assert_eq!(layers.len(), 1, "{status}");

    let fs = cri.json(&["imagefsinfo", "-o", "json"]);
    let usage = &fs["status"]["imageFilesystems"][0];
    assert_eq!(
        usage["fsId"]["mountpoint"],
        cri.agent.state_dir.join("images").display().to_string(),
        "{fs}"
    );
    let num = |v: &Value| v["value"].as_str().unwrap_or("0").parse::<u64>().unwrap();
    // busybox-static alone is over a megabyte.
    assert!(num(&usage["usedBytes"]) > 1 << 20, "{fs}");
    assert!(num(&usage["inodesUsed"]) > 3, "{fs}");
    assert!(usage["timestamp"].as_str().unwrap_or("0") != "0", "{fs}");

    // An image a berth container uses is not removed through CRI.
    let c = cri.agent.create(common::sh("true")).await;
    let err = cri.fails(&["rmi", "busybox"]);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(cri.berth_images().await.len(), 1);
    cri.agent.force_remove(&c.id).await;

    cri.ok(&["rmi", "busybox"]);
    assert!(cri.berth_images().await.is_empty());
    let events = cri.image_events();
    assert!(
        events
            .lines()
            .any(|l| l.contains("removed") && l.contains(&id[7..19])),
        "no removed event: {events}"
    );
    assert!(
        !cri.ok(&["images"]).contains("busybox"),
        "busybox still listed"
    );
    // Its layers are gone from the store as well.
    let fs = cri.json(&["imagefsinfo", "-o", "json"]);
    assert!(
        num(&fs["status"]["imageFilesystems"][0]["usedBytes"]) < 1 << 20,
        "{fs}"
    );
}

/// Pushes a busybox image to `reg` as `repo:1`; returns its reference.
fn push_busybox(reg: &Registry, repo: &str) -> String {
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![TestLayer {
            entries: busybox_layer(),
            gzip: true,
        }],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", &format!("{repo}:1"), &[]);
    format!("{}/{repo}:1", reg.addr())
}

#[tokio::test]
async fn pull_from_a_registry_lands_in_berths_store() {
    let reg = Registry::start();
    let cri = Cri::start().await;
    let r = push_busybox(&reg, "crib");
    let out = cri.ok(&["pull", &r]);
    let berth = cri.berth_images().await;
    assert_eq!(berth.len(), 1);
    assert!(
        out.contains(&berth[0].id),
        "crictl pull printed {out:?}; berth has {}",
        berth[0].id
    );
    assert_eq!(berth[0].references, std::slice::from_ref(&r));
    let status = cri.json(&["inspecti", &r]);
    assert_eq!(status["status"]["id"], berth[0].id.as_str());
    // The pull is on berth's event log like any other.
    let events = cri.image_events();
    assert!(
        events.contains("pulled") && events.contains(&berth[0].id[7..19]),
        "no pulled event: {events}"
    );

    // Bad input: a clear error, nothing stored.
    let err = cri.fails(&["pull", "Bad_Name!"]);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert_eq!(cri.berth_images().await.len(), 1);
}

#[tokio::test]
async fn pull_uses_the_credentials_of_the_request() {
    let reg = Registry::start_with_auth("kube", "s3cret");
    let cri = Cri::start().await;
    let r = push_busybox(&reg, "private");
    let err = cri.fails(&["pull", &r]);
    assert!(err.contains("Unauthenticated"), "{err}");
    let err = cri.fails(&["pull", "--creds", "kube:wrong", &r]);
    assert!(err.contains("Unauthenticated"), "{err}");
    assert!(!err.contains("wrong"), "the password is echoed: {err}");
    assert!(cri.berth_images().await.is_empty());

    // username/password fields.
    cri.ok(&["pull", "--creds", "kube:s3cret", &r]);
    assert_eq!(cri.berth_images().await.len(), 1);
    cri.ok(&["rmi", &r]);
    assert!(cri.berth_images().await.is_empty());
    // The `auth` field: base64 of user:password.
    cri.ok(&["pull", "--auth", "a3ViZTpzM2NyZXQ=", &r]);
    assert_eq!(cri.berth_images().await.len(), 1);
    // An `auth` that is not base64 is refused.
    let err = cri.fails(&["pull", "--auth", "!!!", &r]);
    assert!(err.contains("InvalidArgument"), "{err}");
}

#[tokio::test]
async fn the_socket_is_root_only_and_goes_with_berthd() {
    let mut cri = Cri::start().await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cri.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    cri.agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    assert!(
        !Path::new(&cri.socket).exists(),
        "the CRI socket outlived berthd"
    );
    // A new berthd on the same state serves CRI again.
    cri.agent.spawn().await;
    cri.ok(&["version"]);
}

#[test]
fn the_cri_socket_must_be_a_socket_of_its_own() {
    crictl_path();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("berthd.sock");
    let mut child = Command::new(common::bin("berthd"))
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--cri-socket")
        .arg(&sock)
        .args(["--default-network=none", "--auto-pull=false"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running berthd");
    // A berthd that does not refuse must not hang the test or stay behind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("berthd started with --cri-socket equal to --socket");
    }
    let out = child.wait_with_output().expect("berthd's output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "berthd started: {err}");
    assert!(err.contains("--cri-socket"), "{err}");
    assert!(!sock.exists(), "a socket was made");
    assert!(!dir.path().join("state").exists(), "state was made");
}
