//! `berthctl exec`: exit statuses, stdin, a real terminal; the latency
//! measurement.

use super::*;

#[tokio::test]
async fn berthctl_exec_exit_status_and_stdin() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let o = agent.ctl(&["exec", &c.name, "sh", "-c", "echo hi; exit 4"]);
    assert_eq!(
        (cli::code(&o), cli::stdout(&o).as_str()),
        (4, "hi\n"),
        "{}",
        cli::stderr(&o)
    );
    let o = agent.ctl(&[
        "exec",
        "-e",
        "X=1",
        "-u",
        "1000",
        "-w",
        "/",
        &c.name,
        "sh",
        "-c",
        "echo $X $(id -u) $(pwd)",
    ]);
    assert_eq!(cli::stdout(&o), "1 1000 /\n", "{}", cli::stderr(&o));
    let o = agent.ctl(&["exec", &c.name, "nonexistent"]);
    assert_eq!(cli::code(&o), 127, "{}", cli::stderr(&o));
    // -i: stdin streams through, end of file closes it.
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args([
            "-H",
            agent.socket.to_str().unwrap(),
            "exec",
            "-i",
            &c.id,
            "sh",
            "-c",
            "cat; exit 6",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("berthctl");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(6), "through stdin\n")
    );
    let o = agent.ctl(&["exec", "nosuch", "true"]);
    assert_eq!(cli::code(&o), 1, "{}", cli::stderr(&o));
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (Debian's tmux package)")
    }

    fn pane(&self) -> String {
        cli::stdout(&self.cmd(&["capture-pane", "-p", "-t", "x"]))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// `berthctl exec -it` in a real terminal (tmux): a prompt, isatty, the
/// window's size and its change (SIGWINCH), the exit code, and the local
/// terminal restored after.
#[tokio::test]
async fn berthctl_exec_it_drives_a_real_terminal() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let tmux = Tmux {
        socket: agent.dir.join("tmux.sock"),
    };
    let status = agent.dir.join("status");
    let after = agent.dir.join("stty-after");
    let script = format!(
        "{} -H {} exec -it {} sh; echo $? > {}; stty -a > {}; sleep 1000",
        common::bin("berthctl").display(),
        agent.socket.display(),
        c.id,
        status.display(),
        after.display()
    );
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "x",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    assert!(o.status.success(), "{}", cli::stderr(&o));
    let shows =
        async |needle: &str| common::eventually(30, async || tmux.pane().contains(needle)).await;
    assert!(shows("/tmp #").await, "no prompt: {}", tmux.pane());
    tmux.cmd(&[
        "send-keys",
        "-t",
        "x",
        "test -t 0 && echo IS-A-TTY; stty size",
        "Enter",
    ]);
    assert!(shows("30 100").await, "{}", tmux.pane());
    assert!(shows("IS-A-TTY").await, "{}", tmux.pane());
    tmux.cmd(&["resize-window", "-t", "x", "-x", "120", "-y", "40"]);
    tmux.cmd(&["send-keys", "-t", "x", "stty size", "Enter"]);
    assert!(shows("40 120").await, "{}", tmux.pane());
    tmux.cmd(&["send-keys", "-t", "x", "exit 3", "Enter"]);
    assert!(
        common::eventually(30, async || std::fs::read_to_string(&after)
            .is_ok_and(|s| !s.is_empty()))
        .await,
        "berthctl did not end: {}",
        tmux.pane()
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "3");
    let stty = std::fs::read_to_string(&after).unwrap();
    assert!(
        stty.contains(" icanon") && stty.contains(" echo "),
        "terminal not restored: {stty}"
    );
    drop(tmux);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Latency of an exec of /bin/true through the API (ExecSync) and through
/// berthctl: the median of 50 each.
/// `cargo test -p berth --test exec -- --ignored --nocapture latency`
#[tokio::test]
#[ignore]
async fn latency() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut api = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let (code, _, _) = run(&agent, spec(&c.id, &["/bin/true"])).await;
        api.push(t.elapsed());
        assert_eq!(code, 0);
    }
    let mut ctl = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let o = agent.ctl(&["exec", &c.id, "/bin/true"]);
        ctl.push(t.elapsed());
        assert_eq!(cli::code(&o), 0);
    }
    println!(
        "exec /bin/true, median of 50: API ExecSync {:?}, berthctl exec {:?}",
        median(api),
        median(ctl)
    );
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
