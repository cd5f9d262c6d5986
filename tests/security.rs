//! End to end: what a container can do to the host beyond its own root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use berth::v1 as pb;
use common::{sh, Agent};

/// Runs `args` as host user `nobody` (65534), no supplementary groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        // Through a shell: util-linux 2.38's setpriv ran a program at a
        // path that the user cannot reach (as `cat` of it is refused); a
        // shell's exec is held to the user's rights.
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .output()
        .expect("running setpriv (util-linux)")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A container's layer, record and log are out of reach of other host
/// users: a setuid-root file the container makes cannot be run from the
/// host, and its environment and output cannot be read (issue 18, D).
#[tokio::test]
async fn other_host_users_cannot_reach_a_containers_state() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh(
        "mkdir -p /opt && cp /bin/busybox /opt/busybox && chmod 4755 /opt/busybox \\
         && echo log-secret && sleep 600",
    );
    spec.env = vec!["DB_PASSWORD=env-secret".into()];
    let c = agent.run(spec).await;
    agent.wait_for_output(&c.id, "log-secret").await;

    let state = &agent.state_dir;
    let dir = state.join("containers").join(&c.id);
    // The harness's own directory must let nobody get as far as the state
    // dir, or the checks below would prove nothing.
    let walk = as_nobody(&[
        "test",
        "-x",
        agent.state_dir.parent().unwrap().to_str().unwrap(),
    ]);
    assert!(
        walk.status.success(),
        "nobody cannot reach the agent's directory"
    );
    // Named busybox, so that busybox runs its applet from the arguments.
    let suid = dir.join("upper/opt/busybox");
    assert_eq!(mode(&suid), 0o4755, "the container made its setuid file");

    let run = as_nobody(&[suid.to_str().unwrap(), "id", "-u"]);
    assert!(
        !run.status.success(),
        "nobody ran the container's setuid file: {}",
        String::from_utf8_lossy(&run.stdout)
    );
    for file in ["container.json", "container.log"] {
        let read = as_nobody(&["cat", dir.join(file).to_str().unwrap()]);
        let out = String::from_utf8_lossy(&read.stdout);
        assert!(
            !read.status.success() && !out.contains("secret"),
            "nobody read {file}: {out}"
        );
    }
    let list = as_nobody(&["ls", state.join("containers").to_str().unwrap()]);
    assert!(!list.status.success(), "nobody listed the containers");
    let list = as_nobody(&["ls", state.to_str().unwrap()]);
    assert!(!list.status.success(), "nobody listed the state dir");

    assert_eq!(mode(state), 0o711);
    for sub in ["containers", "images", "events", "bin", "tmp", "trash"] {
        assert_eq!(mode(&state.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("container.json")), 0o600);
    assert_eq!(mode(&dir.join("container.log")), 0o600);
    let running = dir.join("running.json");
    assert_eq!(mode(&running), 0o600, "written by the monitor");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// A state directory an older berthd left readable is made private when
/// berthd starts on it.
#[tokio::test]
async fn an_open_state_dir_is_tightened_at_start() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.create(sh("true")).await;
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    let state = agent.state_dir.clone();
    let dir = state.join("containers").join(&c.id);
    let open = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    for p in [
        &state,
        &state.join("containers"),
        &state.join("images"),
        &dir,
    ] {
        open(p, 0o755).unwrap();
    }
    open(&dir.join("container.json"), 0o644).unwrap();
    agent.spawn().await;
    assert_eq!(mode(&state), 0o711);
    assert_eq!(mode(&state.join("containers")), 0o700);
    assert_eq!(mode(&state.join("images")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("container.json")), 0o600);
    // The container still works after the change.
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .expect("start");
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 0);
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: c.id.clone(),
            force: false,
            ..Default::default()
        })
        .await
        .expect("remove");
    agent.assert_clean().await;
}
