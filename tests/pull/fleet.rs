//! `berthctl pull` across hosts: every agent pulls at once, progress lines
//! carry their host, and a host that fails is named after the others are
//! done (issue 22).

use super::*;

#[tokio::test]
async fn berthctl_pulls_on_many_hosts_at_once_and_names_the_one_that_failed() {
    let reg = Registry::start();
    let a = Agent::start().await;
    let b = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh", "-c", "echo fleet"],
        vec![TestLayer {
            entries: busybox_layer(),
            gzip: true,
        }],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "fleet:1", &[]);
    let r = format!("{}/fleet:1", reg.addr());
    let (sa, sb) = (
        a.socket.display().to_string(),
        b.socket.display().to_string(),
    );
    let ctl = |hosts: &str, args: &[&str]| {
        std::process::Command::new(common::bin("berthctl"))
            .args(["--host", hosts])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running berthctl")
    };

    let o = ctl(&format!("{sa},{sb}"), &["pull", &r]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for host in [&sa, &sb] {
        // Each host's progress, then its Pulled line, all tagged with it.
        let mine: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(host.as_str()))
            .collect();
        assert!(
            mine.iter()
                .any(|l| l.contains("| ") && l.contains(": done (")),
            "{out}"
        );
        assert!(
            mine.iter()
                .any(|l| l.contains(&format!("| Pulled: {r} (sha256:"))),
            "{out}"
        );
    }
    assert!(
        out.lines()
            .all(|l| l.starts_with(&sa) || l.starts_with(&sb)),
        "{out}"
    );
    // Both stored the same image.
    let id = |agent: &Agent| {
        let o = agent.ctl(&["image", "inspect", "-o", "json", &r]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        v["id"].as_str().unwrap_or_default().to_string()
    };
    assert!(id(&a).starts_with("sha256:"));
    assert_eq!(id(&a), id(&b));

    // JSON: every object names its host; the last per host is the image.
    let o = ctl(&format!("{sa},{sb}"), &["pull", "-o", "json", &r]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(objects.iter().all(|v| v["host"] == sa || v["host"] == sb));
    let images = objects.iter().filter(|v| v["id"].is_string()).count();
    assert_eq!(images, 2, "{objects:?}");

    // A host that cannot be reached: the others pull, it is named, and
    // the command fails.
    let c = Agent::start().await;
    let gone = c.dir.join("no-agent.sock").display().to_string();
    let o = ctl(&format!("{gone},{}", c.socket.display()), &["pull", &r]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(err.contains(&gone), "{err}");
    assert!(id(&c).starts_with("sha256:"), "the reachable host pulled");

    for agent in [&a, &b, &c] {
        agent.assert_clean().await;
    }
}

/// `berthctl push` across hosts: every agent pushes its own image of that
/// name at once, with progress lines and a `Pushed` line per host; the
/// image pulls back with the same id; a host without the image is named
/// and the command fails while the others push.
#[tokio::test]
async fn berthctl_pushes_from_many_hosts_at_once_and_names_the_one_that_failed() {
    let reg = Registry::start();
    let a = Agent::start().await;
    let b = Agent::start().await;
    let r = format!("{}/team/fleet-push:1", reg.addr());
    for agent in [&a, &b] {
        agent
            .import(common::image::two_layer(&r), "")
            .await
            .expect("import");
    }
    let (sa, sb) = (
        a.socket.display().to_string(),
        b.socket.display().to_string(),
    );
    let ctl = |hosts: &str, args: &[&str]| {
        std::process::Command::new(common::bin("berthctl"))
            .args(["--host", hosts])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running berthctl")
    };
    let o = ctl(&format!("{sa},{sb}"), &["push", &r]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut digests = Vec::new();
    for host in [&sa, &sb] {
        let mine: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(host.as_str()))
            .collect();
        assert!(
            mine.iter()
                .any(|l| l.contains(": done (") || l.contains(": already present (")),
            "no progress line for {host}: {out}"
        );
        let pushed = mine
            .iter()
            .find_map(|l| l.split_once(&format!("| Pushed: {r} (")))
            .unwrap_or_else(|| panic!("no Pushed line for {host}: {out}"))
            .1
            .trim_end_matches(')')
            .to_string();
        assert!(pushed.starts_with("sha256:"), "{out}");
        digests.push(pushed);
    }
    assert_eq!(digests[0], digests[1], "the same image, the same manifest");
    assert!(
        out.lines()
            .all(|l| l.starts_with(&sa) || l.starts_with(&sb)),
        "{out}"
    );

    // What was pushed pulls back: remove it on one host, pull it there.
    let id = |agent: &Agent| {
        let o = agent.ctl(&["image", "inspect", "-o", "json", &r]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        v["id"].as_str().unwrap_or_default().to_string()
    };
    let before = id(&a);
    let o = a.ctl(&["image", "rm", &r]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = a.ctl(&["pull", &r]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(id(&a), before);

    // A host without the image: named, the command fails, the other pushes.
    let c = Agent::start().await;
    let sc = c.socket.display().to_string();
    let o = ctl(&format!("{sa},{sc}"), &["push", "-o", "json", &r]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("berthctl: {sc}: ")), "{err}");
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        objects.iter().any(|v| v["host"] == sa
            && v["done"] == true
            && v["manifestDigest"] == digests[0].as_str()),
        "{objects:?}"
    );
    assert!(objects.iter().all(|v| v["host"] == sa), "{objects:?}");

    for agent in [&a, &b, &c] {
        agent.assert_clean().await;
    }
}
