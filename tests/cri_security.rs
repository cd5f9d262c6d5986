//! End to end: a CRI container's security context beyond berth's defaults,
//! driven by crictl: supplemental groups, and masked and read-only paths
//! added to berth's own (never in their place).

mod common;

use common::cri::{container_config, pod_config, start_in, state, wait_for, Cri, Scratch};
use serde_json::json;

#[tokio::test]
async fn groups_and_added_masked_and_read_only_paths_hold() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let pod_json = scratch.write("pod.json", &pod_config("sec", &scratch.0.join("logs")));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();

    let mut c = container_config("c", "exec sleep 1000");
    let sc = &mut c["linux"]["security_context"];
    sc["run_as_user"] = json!({"value": 1000});
    sc["supplemental_groups"] = json!([1234, 5678]);
    sc["masked_paths"] = json!(["/etc/hostname", "/proc/sys/kernel"]);
    sc["readonly_paths"] = json!(["/tmp"]);
    let id = start_in(&cri, &pod, &scratch.write("c.json", &c), &pod_json);
    wait_for("c running", || state(&cri, &id) == "CONTAINER_RUNNING");
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "-s", id.as_str()];
        all.extend(args);
        cri.crictl(&all)
    };

    let groups = exec(&["grep", "^Groups", "/proc/self/status"]);
    let groups = String::from_utf8_lossy(&groups.stdout);
    // Its primary group (0: uid 1000 has no passwd entry), then the added.
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "0", "1234", "5678"],
        "{groups}"
    );
    // /tmp is read-only, for root of the container too.
    let touch = exec(&["touch", "/tmp/x"]);
    assert!(!touch.status.success());
    assert!(
        String::from_utf8_lossy(&touch.stderr).contains("Read-only file system"),
        "{touch:?}"
    );
    // A masked file reads empty, a masked directory is an empty one.
    let hostname = exec(&["cat", "/etc/hostname"]);
    assert!(
        hostname.status.success() && String::from_utf8_lossy(&hostname.stdout).trim().is_empty(),
        "{hostname:?}"
    );
    let kernel = exec(&["ls", "-A", "/proc/sys/kernel"]);
    assert!(
        kernel.status.success() && String::from_utf8_lossy(&kernel.stdout).trim().is_empty(),
        "{kernel:?}"
    );
    // berth's own still hold.
    let interrupts = exec(&["wc", "-c", "/proc/interrupts"]);
    assert!(
        String::from_utf8_lossy(&interrupts.stdout).starts_with("0 "),
        "{interrupts:?}"
    );

    // Paths that are not plain absolute ones, and groups that are not gids,
    // are refused by name.
    for (field, value) in [
        ("readonly_paths", json!(["/tmp/../etc"])),
        ("masked_paths", json!(["relative"])),
        ("masked_paths", json!(["/"])),
        ("supplemental_groups", json!([-1])),
    ] {
        let mut bad = container_config("bad", "true");
        bad["linux"]["security_context"][field] = value.clone();
        let err = cri.fails(&["create", &pod, &scratch.write("bad.json", &bad), &pod_json]);
        assert!(err.contains("InvalidArgument"), "{field} {value}: {err}");
    }
    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}
