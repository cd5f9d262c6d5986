//! End to end: a CRI container's security context beyond berth's defaults,
//! driven by crictl: supplemental groups, and masked and read-only paths
//! added to berth's own (never in their place).

mod common;

use common::cri::{container_config, pod_config, start_in, state, wait_for, Cri, Scratch};
use common::image::{busybox_with, Entry};
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

/// supplemental_groups_policy: Merge adds kubelet's groups to those the
/// image's /etc/group gives the user, Strict to its primary group only; the
/// kernel's view of the init and of an exec, and ContainerStatus's user,
/// say so.
#[tokio::test]
async fn supplemental_groups_merge_or_strict_and_status_reports_the_user() {
    let cri = Cri::start().await;
    cri.agent
        .import(
            busybox_with(
                "docker.io/library/grouped:latest",
                vec![
                    Entry::File(
                        "etc/passwd".into(),
                        b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n".to_vec(),
                        0o644,
                    ),
                    Entry::File(
                        "etc/group".into(),
                        b"root:x:0:\napp:x:1000:\nimage-group:x:50000:app\n".to_vec(),
                        0o644,
                    ),
                ],
            ),
            "",
        )
        .await
        .expect("importing the image");
    let scratch = Scratch::new();
    let pod_json = scratch.write("pod.json", &pod_config("grp", &scratch.0.join("logs")));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    for (policy, groups) in [(0, vec![1000, 1234, 50000]), (1, vec![1000, 1234])] {
        let mut c = container_config(&format!("p{policy}"), "exec sleep 1000");
        c["image"] = json!({"image": "grouped"});
        let sc = &mut c["linux"]["security_context"];
        sc["run_as_user"] = json!({"value": 1000});
        sc["supplemental_groups"] = json!([1234]);
        sc["supplemental_groups_policy"] = json!(policy);
        let id = start_in(&cri, &pod, &scratch.write("c.json", &c), &pod_json);
        wait_for("running", || state(&cri, &id) == "CONTAINER_RUNNING");
        let want: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let init = cri.ok(&["exec", "-s", &id, "grep", "^Groups", "/proc/1/status"]);
        assert_eq!(
            init.split_whitespace().skip(1).collect::<Vec<_>>(),
            want,
            "policy {policy}: init"
        );
        let exec = cri.ok(&["exec", "-s", &id, "id", "-G"]);
        assert_eq!(
            exec.split_whitespace().collect::<Vec<_>>(),
            want,
            "policy {policy}: exec"
        );
        let user = &cri.json(&["inspect", "-o", "json", &id])["status"]["user"]["linux"];
        assert_eq!(user["uid"], json!("1000"), "{user}");
        assert_eq!(user["gid"], json!("1000"), "{user}");
        assert_eq!(user["supplementalGroups"], json!(want), "{user}");
    }
    // The runtime says it takes the policy.
    let info = cri.json(&["info"]);
    assert_eq!(
        info["features"]["supplemental_groups_policy"],
        json!(true),
        "{info}"
    );
    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}

/// `no_new_privs: false` (kubelet's default, `allowPrivilegeEscalation`)
/// leaves the flag unset while the seccomp filter still holds (installed
/// before the privileges are dropped), for the init and its execs; `true`
/// sets it. No profile at all is unconfined, as the CRI defines it.
#[tokio::test]
async fn no_new_privs_and_seccomp_follow_the_security_context() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let pod_json = scratch.write("pod.json", &pod_config("nnp", &scratch.0.join("logs")));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let status = "grep -E '^(Uid|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '";
    for (name, nnp, seccomp, want) in [
        (
            "escalates",
            false,
            json!({"profile_type": 0}),
            "Uid: 1000 1000 1000 1000\nNoNewPrivs: 0\nSeccomp: 2\n",
        ),
        (
            "confined",
            true,
            json!({"profile_type": 0}),
            "Uid: 1000 1000 1000 1000\nNoNewPrivs: 1\nSeccomp: 2\n",
        ),
        (
            "unconfined",
            false,
            serde_json::Value::Null,
            "Uid: 1000 1000 1000 1000\nNoNewPrivs: 0\nSeccomp: 0\n",
        ),
    ] {
        let mut c = container_config(name, &format!("{status}; exec sleep 1000"));
        let sc = &mut c["linux"]["security_context"];
        sc["run_as_user"] = json!({"value": 1000});
        sc["no_new_privs"] = json!(nnp);
        if !seccomp.is_null() {
            sc["seccomp"] = seccomp;
        }
        let id = start_in(&cri, &pod, &scratch.write("c.json", &c), &pod_json);
        wait_for("the container's status lines", || {
            cri.ok(&["logs", &id]).contains("Seccomp")
        });
        assert_eq!(cri.ok(&["logs", &id]), want, "{name}: the init");
        let exec = cri.ok(&["exec", "-s", &id, "sh", "-c", status]);
        assert_eq!(exec.trim_end(), want.trim_end(), "{name}: an exec");
    }
    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}

/// A SysV shared memory segment of this test's (and berthd's) IPC
/// namespace, the host's; removed when dropped, even if the test fails.
struct Segment(i32);

impl Segment {
    fn new() -> Segment {
        // SAFETY: plain system call; no memory is attached.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        Segment(id)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: removes the segment this test made; no buffer is passed.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// hostPID and hostIPC: the pod's containers see the host's processes and
/// SysV IPC objects; a pod without them sees neither.
#[tokio::test]
async fn host_pid_and_ipc_pods_see_the_hosts_and_others_do_not() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let segment = Segment::new();
    let me = std::process::id().to_string();
    // A file in the host's /dev/shm (removed even if the test fails).
    let marker = HostShmFile::new(&format!("berth-test-{me}"));
    let sees = |name: &str, mode: i32| -> (bool, bool, bool) {
        let mut pod = pod_config(name, &scratch.0.join("logs"));
        let options = json!({"network": 0, "pid": mode, "ipc": mode});
        pod["linux"]["security_context"]["namespace_options"] = options.clone();
        let pod_json = scratch.write(&format!("{name}.json"), &pod);
        let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
        let mut c = container_config(name, "exec sleep 1000");
        c["linux"]["security_context"]["namespace_options"] = options;
        let id = start_in(
            &cri,
            &pod,
            &scratch.write(&format!("{name}-c.json"), &c),
            &pod_json,
        );
        wait_for("running", || state(&cri, &id) == "CONTAINER_RUNNING");
        let shm = cri.ok(&["exec", "-s", &id, "cat", "/proc/sysvipc/shm"]);
        let shm_seen = shm
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&segment.0.to_string()));
        let proc_seen = cri.crictl(&["exec", "-s", &id, "test", "-d", &format!("/proc/{me}")]);
        let dev_shm_seen = cri.crictl(&["exec", "-s", &id, "test", "-f", &marker.in_container()]);
        cri.ok(&["stopp", &pod]);
        cri.ok(&["rmp", &pod]);
        (
            proc_seen.status.success(),
            shm_seen,
            dev_shm_seen.status.success(),
        )
    };
    // NODE is 2, POD 0 in cri-api's NamespaceMode.
    assert_eq!(sees("host", 2), (true, true, true), "hostPID and hostIPC");
    assert_eq!(sees("own", 0), (false, false, false), "the pod's own");
}

/// A file in the host's /dev/shm, removed when dropped.
struct HostShmFile(std::path::PathBuf);

impl HostShmFile {
    fn new(name: &str) -> HostShmFile {
        let path = std::path::Path::new("/dev/shm").join(name);
        std::fs::write(&path, b"host").expect("a file in the host's /dev/shm");
        HostShmFile(path)
    }

    fn in_container(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for HostShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A pod's containers share one /dev/shm (POSIX shared memory, as they
/// share SysV IPC), which another pod does not see; it goes with the pod.
#[tokio::test]
async fn a_pods_containers_share_its_dev_shm_and_no_other_pod_does() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let run = |name: &str| -> (String, String, String) {
        let pod_json = scratch.write(
            &format!("{name}.json"),
            &pod_config(name, &scratch.0.join("logs")),
        );
        let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
        let mut ids = Vec::new();
        for c in ["a", "b"] {
            let config = container_config(c, "exec sleep 1000");
            let path = scratch.write(&format!("{name}-{c}.json"), &config);
            let id = start_in(&cri, &pod, &path, &pod_json);
            wait_for("running", || state(&cri, &id) == "CONTAINER_RUNNING");
            ids.push(id);
        }
        (pod, ids.remove(0), ids.remove(0))
    };
    let (pod, a, b) = run("one");
    cri.ok(&["exec", "-s", &a, "sh", "-c", "echo shared > /dev/shm/seg"]);
    let got = cri.ok(&["exec", "-s", &b, "cat", "/dev/shm/seg"]);
    assert_eq!(got.trim(), "shared");
    // It is berth's, not a mount kubelet asked for: the status lists none.
    let status = cri.json(&["inspect", "-o", "json", &a]);
    assert_eq!(status["status"]["mounts"], json!([]), "{status}");
    let (other, c, _) = run("two");
    let seen = cri.crictl(&["exec", "-s", &c, "test", "-e", "/dev/shm/seg"]);
    assert!(
        !seen.status.success(),
        "another pod sees the first one's /dev/shm"
    );
    // Still a tmpfs of 64 MiB, nosuid, nodev and noexec, as a container's.
    let mounts = cri.ok(&["exec", "-s", &a, "grep", " /dev/shm ", "/proc/self/mounts"]);
    assert!(
        mounts.contains("tmpfs") && mounts.contains("size=65536k"),
        "{mounts}"
    );
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(mounts.contains(flag), "{flag}: {mounts}");
    }
    // The stop releases it (and its memory), as containerd's does.
    let shm = cri
        .agent
        .state_dir
        .join("cri/pods")
        .join(&pod)
        .join("ns/shm");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&format!(" {} ", shm.display()))
    };
    assert!(mounted(), "{} is not mounted", shm.display());
    cri.ok(&["stopp", &pod]);
    assert!(!mounted(), "{} outlived the pod's stop", shm.display());
    for p in [&pod, &other] {
        cri.ok(&["stopp", p]);
        cri.ok(&["rmp", p]);
    }
    let left = std::fs::read_dir(cri.agent.state_dir.join("cri/pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "a pod's directory (and its /dev/shm) outlived it");
}

/// A tmpfs mounted on `path` for the test; unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn on(path: std::path::PathBuf) -> Tmpfs {
        std::fs::create_dir_all(&path).expect("mount point");
        nix::mount::mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mounting a tmpfs");
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// kubelet's read-only mounts are read-only at their top only, as with
/// containerd, unless `recursive_read_only` asks for all of it; either way
/// nothing under them can write to the host's top directory.
#[tokio::test]
async fn read_only_mounts_are_top_only_unless_recursive_is_asked() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let host = scratch.0.join("data");
    let _sub = Tmpfs::on(host.join("sub"));
    let pod_json = scratch.write("pod.json", &pod_config("ro", &scratch.0.join("logs")));
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let writes = |name: &str, recursive: bool| -> (bool, bool) {
        let mut c = container_config(name, "exec sleep 1000");
        c["mounts"] = json!([{
            "container_path": "/data",
            "host_path": host.display().to_string(),
            "readonly": true,
            "recursive_read_only": recursive,
        }]);
        let id = start_in(
            &cri,
            &pod,
            &scratch.write(&format!("{name}.json"), &c),
            &pod_json,
        );
        wait_for("running", || state(&cri, &id) == "CONTAINER_RUNNING");
        let touch = |p: &str| {
            cri.crictl(&["exec", "-s", &id, "touch", p])
                .status
                .success()
        };
        (touch("/data/top"), touch(&format!("/data/sub/{name}")))
    };
    assert_eq!(
        writes("top", false),
        (false, true),
        "read-only at the top only"
    );
    assert!(
        host.join("sub/top").exists(),
        "the write reached the host's tmpfs"
    );
    assert_eq!(writes("all", true), (false, false), "recursively read-only");
    assert!(!host.join("top").exists() && !host.join("sub/all").exists());
    cri.ok(&["stopp", &pod]);
    cri.ok(&["rmp", &pod]);
}
