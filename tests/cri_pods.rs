//! End to end: CRI pod sandboxes and their containers on berth's runtime,
//! driven by the real `crictl` (cri-tools v1.37.0) as kubelet's stand-in:
//! runp, create, start, ps, logs, exec, stats, update, events, stop, stopp,
//! rmp, across a kill -9 of berthd, beside berth's own API. The pod
//! network (CNI) and shared PID namespaces are in tests/cri_network.rs.

mod common;

use std::time::{Duration, Instant};

use berth::v1 as pb;
use common::cri::{container_config, ns, pod_config, start_in, state, wait_for, Cri, Scratch};
use serde_json::{json, Value};

#[tokio::test]
async fn a_pod_lifecycle_through_crictl() {
    let mut cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let logs = scratch.0.join("logs");
    let pod_json = scratch.write("pod.json", &pod_config("web", &logs));

    // runp: a ready pod with kubelet's metadata, labels and annotations.
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    assert_eq!(pod.len(), 64, "pod id {pod:?}");
    let status = cri.json(&["inspectp", "-o", "json", &pod]);
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    assert_eq!(status["status"]["metadata"]["name"], "web", "{status}");
    assert_eq!(status["status"]["labels"]["app"], "web", "{status}");
    assert_eq!(status["status"]["annotations"]["note"], "made by a test");
    // The same pod again is refused: its name is reserved.
    let err = cri.fails(&["runp", &pod_json]);
    assert!(err.contains("AlreadyExists"), "{err}");

    // Two containers in it.
    let app_json = scratch.write(
        "app.json",
        &container_config(
            "app",
            "echo $GREETING from $(hostname); cat /etc/resolv.conf; exec sleep 1000",
        ),
    );
    let app = cri
        .ok(&["create", &pod, &app_json, &pod_json])
        .trim()
        .to_string();
    assert_eq!(state(&cri, &app), "CONTAINER_CREATED");
    cri.ok(&["start", &app]);
    // `crictl run`: a second pod and a container in it, in one go.
    let other_json = scratch.write("other.json", &pod_config("other", &logs));
    let side_json = scratch.write("side.json", &container_config("side", "exec sleep 1000"));
    let side = cri
        .ok(&["run", "--no-pull", &side_json, &other_json])
        .trim()
        .to_string();
    assert_eq!(side.len(), 64, "{side}");
    wait_for("side running", || state(&cri, &side) == "CONTAINER_RUNNING");
    wait_for("app running", || state(&cri, &app) == "CONTAINER_RUNNING");

    // Its output is in kubelet's log file, in the CRI format, and `logs`.
    wait_for("app's log", || {
        cri.ok(&["logs", &app]).contains("nameserver 10.96.0.10")
    });
    let out = cri.ok(&["logs", &app]);
    assert!(out.contains("hello from web-host"), "{out}");
    assert!(out.contains("search default.svc.cluster.local"), "{out}");
    assert!(out.contains("options ndots:5"), "{out}");
    let file = std::fs::read_to_string(logs.join("app/0.log")).expect("kubelet's log path");
    assert!(
        file.lines()
            .any(|l| l.contains(" stdout F hello from web-host")),
        "{file}"
    );

    // ps and inspect show kubelet's view.
    let ps = cri.json(&["ps", "-o", "json", "--pod", &pod]);
    let names: Vec<&str> = ps["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["app"], "{ps}");
    let inspect = cri.json(&["inspect", "-o", "json", &app]);
    assert_eq!(inspect["status"]["labels"]["role"], "app", "{inspect}");
    assert_eq!(inspect["status"]["annotations"]["kind"], "test");
    assert_eq!(
        inspect["status"]["logPath"],
        logs.join("app/0.log").display().to_string()
    );

    // ExecSync: output and exit code; the pod's network, IPC and UTS
    // namespaces are the app's; its PID namespace is its own.
    let side_in_pod = {
        let side2_json = scratch.write("side2.json", &container_config("side2", "exec sleep 1000"));
        let id = cri
            .ok(&["create", &pod, &side2_json, &pod_json])
            .trim()
            .to_string();
        cri.ok(&["start", &id]);
        wait_for("side2 running", || state(&cri, &id) == "CONTAINER_RUNNING");
        id
    };
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(
            ns(&cri, &app, kind),
            ns(&cri, &side_in_pod, kind),
            "{kind} not shared"
        );
    }
    assert_ne!(
        ns(&cri, &app, "pid"),
        ns(&cri, &side_in_pod, "pid"),
        "pid shared"
    );
    assert_ne!(
        ns(&cri, &app, "net"),
        ns(&cri, &side, "net"),
        "two pods share a network"
    );
    let out = cri.crictl(&["exec", "-s", &app, "sh", "-c", "echo out; echo err >&2"]);
    assert!(out.status.success(), "{out:?}");
    // crictl prints the stdout it got, then the stderr.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n\nerr\n\n");
    let err = cri.fails(&["exec", "-s", &app, "sh", "-c", "echo err >&2; exit 3"]);
    assert!(err.contains("exited with 3: err"), "{err}");
    let err = cri.fails(&["exec", "-s", "--timeout", "1", &app, "sleep", "60"]);
    assert!(err.contains("DeadlineExceeded"), "{err}");

    // Stats: the running app's CPU and memory from its cgroup, its
    // writable layer; the pod's sums.
    let stats = cri.json(&["stats", "-o", "json", "--id", &app]);
    let st = &stats["stats"][0];
    assert_eq!(st["attributes"]["id"], app.as_str(), "{stats}");
    assert_eq!(st["attributes"]["metadata"]["name"], "app", "{stats}");
    let num = |v: &Value| {
        v["value"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or(v["value"].as_u64())
    };
    assert!(
        num(&st["memory"]["workingSetBytes"]).is_some_and(|b| b > 0),
        "{stats}"
    );
    assert!(
        num(&st["cpu"]["usageCoreNanoSeconds"]).is_some_and(|n| n > 0),
        "{stats}"
    );
    assert!(st["writableLayer"]["usedBytes"].is_object(), "{stats}");
    let podstats = cri.json(&["statsp", "-o", "json", "--id", &pod]);
    let ps0 = &podstats["stats"][0];
    assert_eq!(ps0["attributes"]["id"], pod.as_str(), "{podstats}");
    assert!(
        num(&ps0["linux"]["memory"]["workingSetBytes"]).is_some_and(|b| b > 0),
        "{podstats}"
    );

    // kubelet's OOM score holds for the container and its execs.
    let oom = cri.ok(&[
        "exec",
        "-s",
        &app,
        "sh",
        "-c",
        "cat /proc/1/oom_score_adj /proc/self/oom_score_adj",
    ]);
    assert_eq!(oom.trim_end(), "700\n700");

    // UpdateContainerResources: live, and berth's record says so.
    cri.ok(&[
        "update",
        "--memory",
        "134217728",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        &app,
    ]);
    let limits = cri
        .agent
        .inspect(&app)
        .await
        .spec
        .and_then(|s| s.resources)
        .unwrap_or_default();
    assert_eq!(limits.memory_bytes, 134_217_728, "{limits:?}");
    assert_eq!(limits.nano_cpus, 500_000_000, "{limits:?}");
    let err = cri.fails(&["update", "--memory", "4096", &app]);
    assert!(
        err.contains("InvalidArgument") || err.contains("memory"),
        "{err}"
    );

    // berth's own API sees the pod's containers, labelled, but does not
    // remove them: only the CRI does.
    let ps = cri.agent.ctl(&["ps", "-a", "--format", "{{.Names}}"]);
    let berth_names = String::from_utf8_lossy(&ps.stdout).into_owned();
    assert!(berth_names.contains("k8s_app_web_"), "{berth_names}");
    let rm = cri.agent.ctl(&["rm", "-f", &app]);
    assert!(
        !rm.status.success(),
        "berthctl rm removed a pod's container"
    );
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("crictl rm"),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let prune = cri.agent.ctl(&["container", "prune", "-f"]);
    assert!(prune.status.success(), "{prune:?}");
    // And a container of berth's own API is not the CRI's.
    let own = cri
        .agent
        .run(pb::ContainerSpec {
            image: "busybox".into(),
            name: "own".into(),
            command: vec!["sleep".into(), "1000".into()],
            network: "none".into(),
            ..Default::default()
        })
        .await;
    let err = cri.fails(&["inspect", &own.id]);
    assert!(err.contains("NotFound"), "{err}");

    // Pods, containers and the running app survive a kill -9 of berthd.
    cri.agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    cri.agent.spawn().await;
    assert_eq!(state(&cri, &app), "CONTAINER_RUNNING");
    assert_eq!(
        cri.json(&["inspectp", "-o", "json", &pod])["status"]["state"],
        "SANDBOX_READY"
    );
    assert_eq!(ns(&cri, &app, "uts"), ns(&cri, &side_in_pod, "uts"));

    // stop: the stop signal, then SIGKILL after the grace.
    cri.ok(&["stop", "--timeout", "0", &app]);
    assert_eq!(state(&cri, &app), "CONTAINER_EXITED");
    let inspect = cri.json(&["inspect", "-o", "json", &app]);
    assert_eq!(inspect["status"]["reason"], "Error", "{inspect}");
    assert_eq!(inspect["status"]["exitCode"], 137, "{inspect}");
    // A CRI container starts once.
    let err = cri.fails(&["start", &app]);
    assert!(
        err.contains("FailedPrecondition") && err.contains("starts once"),
        "{err}"
    );

    // stopp stops the rest and makes it not ready; rmp removes it all.
    cri.ok(&["stopp", &pod]);
    assert_eq!(
        cri.json(&["inspectp", "-o", "json", &pod])["status"]["state"],
        "SANDBOX_NOTREADY"
    );
    assert_eq!(state(&cri, &side_in_pod), "CONTAINER_EXITED");
    let err = cri.fails(&["create", &pod, &app_json, &pod_json]);
    assert!(err.contains("not ready"), "{err}");
    cri.ok(&["rmp", &pod]);
    let all = cri.json(&["ps", "-a", "-o", "json", "--pod", &pod]);
    assert_eq!(all["containers"], json!([]), "{all}");
    // The log file is kubelet's: it stays for kubelet to remove with the
    // pod's log directory, as with containerd.
    let kept = std::fs::symlink_metadata(logs.join("app/0.log")).expect("the log file stays");
    assert!(kept.file_type().is_file(), "{kept:?}");
    assert!(
        !cri.agent.state_dir.join("cri/pods").join(&pod).exists(),
        "the pod's state outlived it"
    );
    // (crictl asks for the status before it removes, so a second `rmp`
    // fails in crictl, with NotFound, before berth is asked.)
    let err = cri.fails(&["rmp", &pod]);
    assert!(err.contains("NotFound"), "{err}");
    // The other pod (crictl run's) is untouched.
    let pods = cri.json(&["pods", "-o", "json"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(1), "{pods}");
}

/// Pod sysctls (`linux.sysctls`) are set in the pod's own network and IPC
/// namespaces, which its containers share; the host's stay as they were.
#[tokio::test]
async fn pod_sysctls_hold_in_its_containers_and_not_on_the_host() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let port_file = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let shm_file = "/proc/sys/kernel/shm_rmid_forced";
    let host_port = std::fs::read_to_string(port_file).expect("host");
    let host_shm = std::fs::read_to_string(shm_file).expect("host");
    let port = if host_port.trim() == "42" { "43" } else { "42" };
    let shm = if host_shm.trim() == "1" { "0" } else { "1" };
    let mut pod = pod_config("tuned", &scratch.0.join("logs"));
    pod["linux"]["sysctls"] = json!({
        "net.ipv4.ip_unprivileged_port_start": port,
        "kernel.shm_rmid_forced": shm,
    });
    let pod_json = scratch.write("pod.json", &pod);
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let c = scratch.write("c.json", &container_config("c", "exec sleep 1000"));
    let id = start_in(&cri, &pod, &c, &pod_json);
    wait_for("c running", || state(&cri, &id) == "CONTAINER_RUNNING");
    let got = cri.ok(&["exec", "-s", &id, "cat", port_file, shm_file]);
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        [port, shm],
        "{got:?}"
    );
    assert_eq!(std::fs::read_to_string(port_file).expect("host"), host_port);
    assert_eq!(std::fs::read_to_string(shm_file).expect("host"), host_shm);
    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}

/// kubelet rotates a container's log itself: it renames the file at its
/// path and asks for a new one (ReopenContainerLog, which critest checks).
/// The log is a file of its own there, so the rename keeps what was written
/// and the output goes on in a new file at the path.
#[tokio::test]
async fn kubelets_log_rotation_keeps_the_old_file_and_goes_on_in_a_new_one() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let logs = scratch.0.join("logs");
    let pod_json = scratch.write("pod.json", &pod_config("rot", &logs));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let ticker = scratch.write(
        "ticker.json",
        &container_config(
            "ticker",
            "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ),
    );
    let id = start_in(&cri, &pod, &ticker, &pod_json);
    let path = logs.join("ticker/0.log");
    let meta = std::fs::symlink_metadata(&path).expect("the log file");
    assert!(
        meta.file_type().is_file(),
        "not a file of its own: {meta:?}"
    );
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for("ticks in the log", || read(&path).contains("tick 3\n"));

    let rotated = logs.join("ticker/0.log.20261207-000000");
    std::fs::rename(&path, &rotated).expect("rotating");
    // The monitor notices the path naming no file (or another one) at its
    // next output, at most a second on, and writes at the path again.
    wait_for("a new log at the path", || {
        read(&path).contains(" stdout F tick ")
    });
    // Made by the monitor, with kubelet's mode (as containerd's).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("new log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let old = read(&rotated);
    let new = read(&path);
    let last_old = old.lines().last().expect("old lines").to_string();
    let first_new = new.lines().next().expect("new lines").to_string();
    let tick = |l: &str| -> u64 { l.rsplit(' ').next().and_then(|n| n.parse().ok()).expect(l) };
    // No line lost or repeated across the two files.
    assert_eq!(
        tick(&first_new),
        tick(&last_old) + 1,
        "{last_old} / {first_new}"
    );
    assert!(cri.ok(&["logs", &id]).contains("tick "));

    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}

#[tokio::test]
async fn bad_pods_and_containers_are_refused_clearly() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let logs = scratch.0.join("logs");

    // TARGET (another container's) is never a pod's PID namespace.
    let mut shared = pod_config("shared", &logs);
    shared["linux"]["security_context"]["namespace_options"]["pid"] = json!(3);
    let err = cri.fails(&["runp", &scratch.write("shared.json", &shared)]);
    assert!(
        err.contains("InvalidArgument") && err.contains("namespace_options.pid"),
        "{err}"
    );
    // A bad hostname.
    let mut bad = pod_config("bad", &logs);
    bad["hostname"] = json!("no spaces allowed");
    let err = cri.fails(&["runp", &scratch.write("bad.json", &bad)]);
    assert!(err.contains("InvalidArgument"), "{err}");
    // Sysctls of the host, or of its network for a pod on it.
    let mut host_sysctl = pod_config("vm", &logs);
    host_sysctl["linux"]["sysctls"] = json!({"vm.swappiness": "1"});
    let err = cri.fails(&["runp", &scratch.write("vm.json", &host_sysctl)]);
    assert!(
        err.contains("InvalidArgument") && err.contains("vm.swappiness"),
        "{err}"
    );
    let mut host_net = pod_config("hostnet", &logs);
    host_net["linux"]["sysctls"] = json!({"net.ipv4.ip_forward": "1"});
    host_net["linux"]["security_context"]["namespace_options"]["network"] = json!(2);
    let err = cri.fails(&["runp", &scratch.write("hostnet.json", &host_net)]);
    assert!(err.contains("host's network"), "{err}");
    // One the kernel does not have: refused, and the half-made pod goes.
    let mut unknown = pod_config("unknown", &logs);
    unknown["linux"]["sysctls"] = json!({"net.ipv4.no_such_sysctl": "1"});
    let err = cri.fails(&["runp", &scratch.write("unknown.json", &unknown)]);
    assert!(err.contains("no_such_sysctl"), "{err}");
    let pods = cri.json(&["pods", "-o", "json"]);
    assert_eq!(pods["items"], json!([]), "a refused pod was made: {pods}");
    let pinned = std::fs::read_dir(cri.agent.state_dir.join("cri/pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pinned, 0, "a refused pod left state");

    let pod_json = scratch.write("pod.json", &pod_config("ok", &logs));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    // A log path that leaves the pod's log directory.
    let mut escape = container_config("esc", "true");
    escape["log_path"] = json!("../../etc/x.log");
    let err = cri.fails(&[
        "create",
        &pod,
        &scratch.write("esc.json", &escape),
        &pod_json,
    ]);
    assert!(err.contains("InvalidArgument"), "{err}");
    // An image berth does not have.
    let mut missing = container_config("missing", "true");
    missing["image"]["image"] = json!("no-such-image");
    let err = cri.fails(&[
        "create",
        &pod,
        &scratch.write("missing.json", &missing),
        &pod_json,
    ]);
    assert!(err.contains("no such image"), "{err}");
    // A pod that does not exist.
    let ok_json = scratch.write("c.json", &container_config("c", "true"));
    let err = cri.fails(&["create", &"0".repeat(64), &ok_json, &pod_json]);
    assert!(err.contains("NotFound"), "{err}");
    let all = cri.json(&["ps", "-a", "-o", "json"]);
    assert_eq!(
        all["containers"],
        json!([]),
        "a refused container was made: {all}"
    );
    cri.ok(&["rmp", "-f", &pod]);
}

#[tokio::test]
async fn container_events_stream_to_crictl_and_pods_are_on_berths_event_log() {
    use std::io::Read;
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let pod_json = scratch.write("pod.json", &pod_config("ev", &scratch.0.join("logs")));

    // `crictl events` (GetContainerEvents) from before anything happens.
    let endpoint = format!("unix://{}", cri.socket.display());
    let mut events = std::process::Command::new(common::cri::crictl_path())
        .args(["--config", "/dev/null", "--runtime-endpoint", &endpoint])
        .args(["events", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("crictl events");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = events.stdout.take().expect("its stdout");
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // The event types crictl showed for container (or sandbox) `of`.
    let kinds_of = |of: &str| -> Vec<String> {
        let text = seen.lock().unwrap().clone();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<serde_json::Value>()
            .map_while(Result::ok)
            .filter(|e| e["containerId"] == of)
            .filter_map(|e| e["containerEventType"].as_str().map(str::to_string))
            .collect()
    };
    // Subscribed once a container's first event arrives: one made (and
    // removed) until then.
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let c_json = scratch.write("c.json", &container_config("c", "exit 0"));
    let mut id = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while id.is_empty() || !kinds_of(&id).iter().any(|k| k == "CONTAINER_CREATED_EVENT") {
        assert!(Instant::now() < deadline, "no event reached crictl events");
        if !id.is_empty() {
            cri.ok(&["rm", &id]);
        }
        id = cri
            .ok(&["create", &pod, &c_json, &pod_json])
            .trim()
            .to_string();
        std::thread::sleep(Duration::from_millis(200));
    }
    cri.ok(&["start", &id]);
    wait_for("c exited", || state(&cri, &id) == "CONTAINER_EXITED");
    cri.ok(&["rm", &id]);
    let all_four = |kinds: Vec<String>| {
        [
            "CONTAINER_CREATED_EVENT",
            "CONTAINER_STARTED_EVENT",
            "CONTAINER_STOPPED_EVENT",
            "CONTAINER_DELETED_EVENT",
        ]
        .iter()
        .all(|t| kinds.iter().any(|k| k == t))
    };
    wait_for("all four events of c", || all_four(kinds_of(&id)));
    let text = seen.lock().unwrap().clone();
    assert!(text.contains(&pod), "events name no pod: {text}");

    // The sandbox is its own events' container, as with containerd:
    // stopped and deleted here (created and started came before crictl
    // was surely subscribed).
    cri.ok(&["rmp", "-f", &pod]);
    wait_for("the sandbox's stop and removal", || {
        let kinds = kinds_of(&pod);
        kinds.iter().any(|k| k == "CONTAINER_STOPPED_EVENT")
            && kinds.iter().any(|k| k == "CONTAINER_DELETED_EVENT")
    });
    // A second pod, made while crictl surely listens: all four.
    let second = cri.ok(&["runp", &pod_json]).trim().to_string();
    cri.ok(&["stopp", &second]);
    cri.ok(&["rmp", &second]);
    wait_for("all four events of a sandbox", || {
        all_four(kinds_of(&second))
    });
    let _ = events.kill();
    let _ = events.wait();

    // The pod's own life is on berth's event log.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let log = cri
        .agent
        .ctl(&["events", "-f", "type=pod", "--until", &until.to_string()]);
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    for action in ["created", "stopping", "removed"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("pod {action} {}", &pod[..12]))),
            "no pod {action} event: {log}"
        );
    }
}
