//! The log writer when its file cannot be written. Not run in the cgroup v2
//! VM (scripts/test-cgroup-v2.sh): it makes the log file immutable, which
//! ext4 enforces on descriptors opened before and the VM's tmpfs does not.

mod common;

use std::io::Write;

use berth::v1 as pb;
use common::{sh, Agent};

/// Takes the immutable attribute off a file again when dropped, so a failed
/// test leaves nothing undeletable behind.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        let st = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .expect("running chattr (e2fsprogs)");
        assert!(st.success(), "chattr +i {}: {st}", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A log the monitor cannot write (here: made immutable; in life a full
/// disk) costs the output, never the container or its exit record.
#[tokio::test]
async fn a_log_that_cannot_be_written_does_not_stop_the_container() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(sh(
            "trap 'echo after; exit 7' USR1; echo ready; while :; do sleep 0.05; done",
        ))
        .await;
    let dir = agent.state_dir.join("containers").join(&c.id);
    let log = dir.join("container.log");
    agent.wait_for_output(&c.id, "ready").await;
    // Opened before the flag is set, as the monitor's is.
    let mut probe = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let frozen = Immutable::set(log.clone());
    assert!(
        probe.write_all(b"not a record\n").is_err(),
        "{} does not refuse writes to an immutable file through an open descriptor \
         (tmpfs does not): run this test with the state directory on ext4",
        log.display()
    );
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "SIGUSR1".into(),
        })
        .await
        .unwrap();
    let w = agent.wait(&c.id).await;
    drop(frozen);
    assert_eq!(
        w.exit.unwrap().exit_code,
        7,
        "the exit was recorded as it happened"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ready") && !text.contains("after"), "{text}");
    let monitor_log = std::fs::read_to_string(dir.join("monitor.log")).unwrap();
    assert!(monitor_log.contains("dropping output"), "{monitor_log}");
}
