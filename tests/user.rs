//! End to end: how `--user` resolves against the image's own /etc/passwd.

mod common;

use common::image::{busybox_with, Entry};
use common::{sh, Agent};

/// A numeric user is a uid (runc's semantics), never a name: an image whose
/// /etc/passwd has an entry *named* 1000 with uid 0 must not turn
/// `--user 1000` into root. Likewise a numeric group is a gid.
#[tokio::test]
async fn a_numeric_user_is_a_uid_not_a_name() {
    let agent = Agent::start().await;
    let passwd = "root:x:0:0:root:/root:/bin/sh\n1000:x:0:0::/:/bin/sh\n";
    let group = "root:x:0:\n1000:x:0:\n";
    agent
        .import(
            busybox_with(
                "docker.io/library/numeric-names:latest",
                vec![
                    Entry::File("etc/passwd".into(), passwd.as_bytes().to_vec(), 0o644),
                    Entry::File("etc/group".into(), group.as_bytes().to_vec(), 0o644),
                ],
            ),
            "",
        )
        .await
        .expect("importing the image");

    // Not only `id`: the kernel's view, every uid and gid of the process.
    let script = "id -u; id -g; grep -E '^(Uid|Gid)' /proc/self/status";
    let mut spec = sh(script);
    spec.image = "numeric-names".into();
    spec.user = "1000".into();
    let (exit, out, err) = agent.run_to_exit(spec.clone()).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    // No passwd entry has uid 1000: the primary group is 0, as with runc.
    assert_eq!(
        out, "1000\n0\nUid:\t1000\t1000\t1000\t1000\nGid:\t0\t0\t0\t0\n",
        "--user 1000 with a passwd user named 1000"
    );

    spec.user = "1000:1000".into();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(
        out, "1000\n1000\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n",
        "--user 1000:1000 with a group named 1000"
    );
    agent.assert_clean().await;
}
