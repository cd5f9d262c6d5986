//! A privileged container on an agent that no longer allows them.

use super::entry::RECORD_FILE;
use super::error::ContainerError;
use super::record::Record;
use super::restart::Policy;
use super::testkit::{put_container, Harness, Recorder};

#[tokio::test]
async fn a_privileged_container_is_not_started_without_allow_privileged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = put_container(dir.path(), "priv", Policy::No);
    // As Create left it on a berthd started with --allow-privileged.
    let path = dir.path().join("containers").join(&id).join(RECORD_FILE);
    let mut rec: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rec.spec.privileged = true;
    rec.spec.seccomp = crate::seccomp::Choice::Unconfined;
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    // berthd restarted without --allow-privileged (the harness's default).
    let h = Harness::open(dir.path(), Recorder::new());
    let started = h.mgr.start(&h.mgr.get(&id).unwrap()).await;
    assert!(
        matches!(started, Err(ContainerError::PrivilegedNotAllowed)),
        "started anyway: {:?}, launched {} run(s)",
        started.map(|r| (r.state, r.spec.privileged)),
        h.launcher.runs().len()
    );
}
