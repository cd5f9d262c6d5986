//! End to end: how `--user` resolves against the image's own /etc/passwd.

mod common;

use common::image::{busybox_with, Entry};
use common::{sh, Agent};

/// Imports busybox as `docker.io/library/<name>:latest`, with this
/// /etc/passwd and /etc/group.
async fn import_with_accounts(agent: &Agent, name: &str, passwd: &str, group: &str) {
    agent
        .import(
            busybox_with(
                &format!("docker.io/library/{name}:latest"),
                vec![
                    Entry::File("etc/passwd".into(), passwd.as_bytes().to_vec(), 0o644),
                    Entry::File("etc/group".into(), group.as_bytes().to_vec(), 0o644),
                ],
            ),
            "",
        )
        .await
        .expect("importing the image");
}

/// A numeric user is a uid (runc's semantics), never a name: an image whose
/// /etc/passwd has an entry *named* 1000 with uid 0 must not turn
/// `--user 1000` into root. Likewise a numeric group is a gid.
#[tokio::test]
async fn a_numeric_user_is_a_uid_not_a_name() {
    let agent = Agent::start().await;
    let passwd = "root:x:0:0:root:/root:/bin/sh\n1000:x:0:0::/:/bin/sh\n";
    let group = "root:x:0:\n1000:x:0:\n";
    import_with_accounts(&agent, "numeric-names", passwd, group).await;

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

/// `--group-add`: gids and names of the image's /etc/group join the user's
/// own supplementary groups, for the init and its execs; a name the image
/// lacks fails the start by name, and a bad entry is refused at Create.
#[tokio::test]
async fn added_groups_are_the_processes_and_its_execs() {
    let agent = Agent::start().await;
    let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n";
    let group = "root:x:0:\napp:x:1000:\naudio:x:29:app\nvideo:x:44:\n";
    import_with_accounts(&agent, "with-groups", passwd, group).await;
    let run = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "grouped",
        "--network",
        "none",
        "--user",
        "app",
        "--group-add",
        "video",
        "--group-add",
        "1234",
        "with-groups",
        "sh",
        "-c",
        "grep ^Groups /proc/self/status; exec sleep 1000",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The kernel's view: its own (1000), its /etc/group membership (29),
    // then the added ones.
    let want = "Groups:\t29 44 1000 1234 \n";
    let logged = common::eventually(60, async || {
        String::from_utf8_lossy(&agent.ctl(&["logs", "grouped"]).stdout) == want
    })
    .await;
    assert!(logged, "{:?}", agent.ctl(&["logs", "grouped"]));
    let exec = agent.ctl(&["exec", "grouped", "grep", "^Groups", "/proc/self/status"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), want, "{exec:?}");
    let inspect = agent.inspect("grouped").await;
    assert_eq!(inspect.spec.expect("spec").group_add, ["video", "1234"]);
    agent.force_remove("grouped").await;

    let missing = agent.ctl(&["run", "--rm", "--group-add", "wheel", "with-groups", "true"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no group named \"wheel\""), "{err}");
    for bad in ["4294967295", "a:b", "../x", ""] {
        let out = agent.ctl(&["run", "--rm", "--group-add", bad, "with-groups", "true"]);
        assert!(!out.status.success(), "{bad:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("group_add") || err.contains("gid"),
            "{bad:?}: {err}"
        );
    }
    let ps = agent.ctl(&["ps", "-a", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout),
        "",
        "a refused container was made"
    );
    agent.assert_clean().await;
}
