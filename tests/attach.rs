//! End to end: attaching to containers (issue 20) through the real
//! `berthctl` against a real berthd: `run -it` in a real terminal (a pty
//! of the test's own: its size, a resize, Ctrl-D, exit codes), `run -i`
//! with piped and binary stdin, the detach keys then `attach` back,
//! `create -it` + `start -ai`, `attach` to a container without stdin,
//! and Ctrl-C sent on to the container by `run -i`.
//!
//! Needs root, like every end-to-end suite:
//! `cargo build --workspace && cargo test -p berth --test attach`

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::v1 as pb;
use common::image::{busybox_with, Entry};
use common::{bin, cli, slow_factor, Agent};
use sha2::{Digest, Sha256};

/// An agent with busybox (plus the `stty` applet).
async fn agent() -> Agent {
    let agent = Agent::start().await;
    let extra = vec![Entry::Symlink("bin/stty".into(), "busybox".into())];
    agent
        .import(busybox_with("docker.io/library/busybox:latest", extra), "")
        .await
        .expect("import");
    agent
}

/// How long to wait for a condition, scaled for slow machines.
fn patience(secs: u64) -> Duration {
    Duration::from_secs(secs * u64::from(slow_factor()))
}

/// Everything read so far from a stream (a pty's master, a pipe), filled
/// by a thread of its own; `expect` moves a cursor past what it found.
struct Reader {
    buf: Arc<Mutex<Vec<u8>>>,
    seen: usize,
}

impl Reader {
    fn new(mut r: impl Read + Send + 'static) -> Reader {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let fill = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // A pty's master reads EIO once the last slave is closed.
            while let Ok(n @ 1..) = r.read(&mut chunk) {
                fill.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Reader { buf, seen: 0 }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Waits up to `secs` for `needle` after the cursor; moves the cursor
    /// past it. False if it never came.
    fn find(&mut self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + patience(secs);
        loop {
            {
                let buf = self.buf.lock().unwrap();
                let hay = &buf[self.seen.min(buf.len())..];
                if let Some(at) = hay
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    self.seen += at + needle.len();
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// As `find`, failing the test when `needle` does not come.
    fn expect(&mut self, needle: &str) {
        assert!(
            self.find(needle, 30),
            "no {needle:?} after byte {} of:\n{}",
            self.seen,
            self.text()
        );
    }
}

/// berthctl in a pseudo-terminal of the test's own: its session leader,
/// with the pty as controlling terminal (so the kernel sends it SIGWINCH
/// at a resize and SIGINT at a typed Ctrl-C without raw mode). Killed if
/// still running when dropped.
struct Pty {
    master: OwnedFd,
    child: Child,
    out: Reader,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    fn spawn(agent: &Agent, args: &[&str], rows: u16, cols: u16) -> Pty {
        let (mut master, mut slave) = (-1, -1);
        let ws = winsize(rows, cols);
        // SAFETY: openpty writes two descriptors into the ints, which
        // outlive the call; no name or termios is asked for, the winsize
        // is read during the call only.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by
        // nothing else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let fd = || Stdio::from(slave.try_clone().expect("dup the pty"));
        let mut cmd = Command::new(bin("berthctl"));
        cmd.arg("--host")
            .arg(&agent.socket)
            .args(args)
            .stdin(fd())
            .stdout(fd())
            .stderr(fd());
        // SAFETY: setsid and ioctl are async-signal-safe; the child only
        // makes itself a session leader with stdin (the pty) as its
        // controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning berthctl");
        // Only the child holds the slave now: its exit ends the reads.
        drop(slave);
        let reader = std::fs::File::from(master.try_clone().expect("dup the master"));
        Pty {
            master,
            child,
            out: Reader::new(reader),
        }
    }

    /// Types `keys`.
    fn type_(&self, keys: &[u8]) {
        let mut f = std::fs::File::from(self.master.try_clone().expect("dup the master"));
        f.write_all(keys).expect("typing into the pty");
    }

    /// Sets the window's size (the kernel sends SIGWINCH to berthctl).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Whether the terminal is back in canonical mode with echo.
    fn is_sane(&self) -> bool {
        // SAFETY: termios is plain old data; zeroed is a valid value.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios into `t`, which outlives
        // the call (on the master it reads the slave's settings).
        let rc = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut t) };
        rc == 0 && t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }

    /// berthctl's exit status, waiting at most a minute.
    fn exit_code(&mut self) -> i32 {
        let out = &self.out;
        let s = end_of(&mut self.child, || format!("its terminal:\n{}", out.text()));
        s.code()
            .unwrap_or_else(|| panic!("berthctl died by {s:?}; its terminal:\n{}", out.text()))
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How `child` (berthctl) ended, waiting at most a minute; killed, and
/// the test failed with `what()`, otherwise.
fn end_of(child: &mut Child, what: impl Fn() -> String) -> std::process::ExitStatus {
    let deadline = Instant::now() + patience(60);
    loop {
        if let Some(s) = child.try_wait().expect("waiting for berthctl") {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berthctl did not end: {}", what());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// berthctl with `input` on its stdin (written by a thread, then closed),
/// ended within a minute (killed, and the test failed, otherwise).
fn ctl_piped(agent: &Agent, args: &[&str], input: Vec<u8>) -> std::process::Output {
    let mut child = Command::new(bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning berthctl");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        // A berthctl that failed early closes its stdin: its stderr says why.
        let _ = stdin.write_all(&input);
    });
    let out = Reader::new(child.stdout.take().expect("stdout"));
    let err = Reader::new(child.stderr.take().expect("stderr"));
    let status = end_of(&mut child, || format!("{args:?}; stderr: {}", err.text()));
    let _ = writer.join();
    // The pipes are at end of file once the child is gone; let the
    // readers drain them.
    let drained = |r: &Reader| {
        let mut last = usize::MAX;
        let deadline = Instant::now() + patience(10);
        while Instant::now() < deadline {
            let n = r.buf.lock().unwrap().len();
            if n == last {
                break;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(50));
        }
        r.buf.lock().unwrap().clone()
    };
    std::process::Output {
        status,
        stdout: drained(&out),
        stderr: drained(&err),
    }
}

async fn state_of(agent: &Agent, name: &str) -> pb::ContainerState {
    pb::ContainerState::try_from(agent.inspect(name).await.state).unwrap_or_default()
}

/// (a) `run -it`: a prompt, a computation, the terminal's size and its
/// change, Ctrl-D ending with 0, `exit 3` with 3; the terminal restored.
#[tokio::test]
async fn run_it_drives_a_real_terminal() {
    let agent = agent().await;
    let mut t = Pty::spawn(
        &agent,
        &["run", "-it", "--name", "a1", "busybox", "sh"],
        30,
        100,
    );
    t.out.expect("/ # ");
    t.type_(b"echo $((6*7))\r");
    t.out.expect("42");
    t.type_(b"test -t 0 && echo TTY-$((6+1)); stty size\r");
    t.out.expect("TTY-7");
    t.out.expect("30 100");
    t.resize(40, 120);
    // The resize travels apart from what is typed: ask until it shows.
    let mut resized = false;
    for _ in 0..10 {
        t.type_(b"stty size\r");
        if t.out.find("40 120", 3) {
            resized = true;
            break;
        }
    }
    assert!(resized, "the resize never arrived:\n{}", t.out.text());
    t.type_(&[0x04]);
    assert_eq!(t.exit_code(), 0, "{}", t.out.text());
    assert!(t.is_sane(), "terminal not restored");
    assert_eq!(state_of(&agent, "a1").await, pb::ContainerState::Exited);

    let mut t = Pty::spawn(
        &agent,
        &["run", "-it", "--rm", "--name", "a2", "busybox"],
        24,
        80,
    );
    t.out.expect("/ # ");
    t.type_(b"exit 3\r");
    assert_eq!(t.exit_code(), 3, "{}", t.out.text());
    assert!(t.is_sane(), "terminal not restored");
    // --rm: gone once run returned.
    let o = agent.ctl(&["inspect", "a2"]);
    assert_eq!(cli::code(&o), 1, "{}", cli::stdout(&o));

    agent.force_remove("a1").await;
    agent.assert_clean().await;
}

/// (b) `run -i` with piped stdin: a line, then 4 MiB of random bytes
/// through `cat`, unchanged.
#[tokio::test]
async fn run_i_streams_piped_and_binary_stdin() {
    let agent = agent().await;
    let args = ["run", "-i", "--rm", "busybox", "cat"];
    let o = ctl_piped(&agent, &args, b"hi\n".to_vec());
    assert_eq!(
        (cli::code(&o), cli::stdout(&o).as_str()),
        (0, "hi\n"),
        "{}",
        cli::stderr(&o)
    );
    let mut data = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("/dev/urandom");
    let o = ctl_piped(&agent, &args, data.clone());
    assert_eq!(cli::code(&o), 0, "{}", cli::stderr(&o));
    assert_eq!(
        hex::encode(Sha256::digest(&o.stdout)),
        hex::encode(Sha256::digest(&data)),
        "{} bytes came back of {}",
        o.stdout.len(),
        data.len()
    );
    agent.assert_clean().await;
}

/// (c) Ctrl-P Ctrl-Q detaches (exit 0, the container runs on); `attach`
/// comes back to its terminal, and its exit code is berthctl's.
#[tokio::test]
async fn detach_keys_then_attach_back() {
    let agent = agent().await;
    let mut t = Pty::spawn(
        &agent,
        &["run", "-it", "--name", "c1", "busybox", "sh"],
        30,
        100,
    );
    t.out.expect("/ # ");
    t.type_(&[0x10, 0x11]);
    assert_eq!(t.exit_code(), 0, "{}", t.out.text());
    t.out.expect("read escape sequence");
    assert!(t.is_sane(), "terminal not restored");
    assert_eq!(state_of(&agent, "c1").await, pb::ContainerState::Running);

    let mut t = Pty::spawn(&agent, &["attach", "c1"], 30, 100);
    // The output comes from the container: quotes the echo of the typed
    // line does not lose.
    t.type_(b"echo ba''ck\r");
    t.out.expect("back");
    t.type_(b"exit 5\r");
    assert_eq!(t.exit_code(), 5, "{}", t.out.text());
    assert!(t.is_sane(), "terminal not restored");
    assert_eq!(state_of(&agent, "c1").await, pb::ContainerState::Exited);
    agent.force_remove("c1").await;
    agent.assert_clean().await;
}

/// (d) `create -it` then `start -ai`.
#[tokio::test]
async fn create_it_then_start_ai() {
    let agent = agent().await;
    let id = cli::ok(&agent, &["create", "-it", "--name", "d1", "busybox", "sh"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let spec = agent.inspect("d1").await.spec.unwrap_or_default();
    assert!(spec.open_stdin && spec.tty, "{spec:?}");
    let mut t = Pty::spawn(&agent, &["start", "-ai", "d1"], 25, 90);
    t.out.expect("/ # ");
    t.type_(b"stty size; echo $((2*21))\r");
    t.out.expect("25 90");
    t.out.expect("42");
    t.type_(b"exit 7\r");
    assert_eq!(t.exit_code(), 7, "{}", t.out.text());
    assert!(t.is_sane(), "terminal not restored");
    agent.force_remove("d1").await;
    agent.assert_clean().await;
}

/// (e) `attach` to a container created without -i: its output from the
/// attach on, then its exit code.
#[tokio::test]
async fn attach_without_stdin_gets_the_output_and_the_exit_code() {
    let agent = agent().await;
    let script = "while [ ! -e /tmp/go ]; do echo waiting; sleep 0.1; done; \
                  echo done-$((40+2)); echo to-stderr >&2; exit 9";
    cli::ok(
        &agent,
        &["run", "-d", "--name", "e1", "busybox", "sh", "-c", script],
    );
    let mut child = Command::new(bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(["attach", "e1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning berthctl");
    let mut out = Reader::new(child.stdout.take().expect("stdout"));
    let mut err = Reader::new(child.stderr.take().expect("stderr"));
    assert!(
        out.find("waiting\n", 30),
        "no output: {}{}",
        out.text(),
        err.text()
    );
    let o = agent.ctl(&["exec", "e1", "touch", "/tmp/go"]);
    assert_eq!(cli::code(&o), 0, "{}", cli::stderr(&o));
    out.expect("done-42\n");
    err.expect("to-stderr\n");
    let status = end_of(&mut child, || format!("attach; stderr: {}", err.text()));
    assert_eq!(status.code(), Some(9), "{}", err.text());
    agent.force_remove("e1").await;
    agent.assert_clean().await;
}

/// (f) `run -i` without -t: Ctrl-C is sent on to the container (which
/// traps it), said once on stderr, and its exit code is berthctl's.
#[tokio::test]
async fn run_i_sends_ctrl_c_on_to_the_container() {
    let agent = agent().await;
    let script = "trap 'echo got-INT; exit 4' INT; echo ready; while true; do sleep 0.1; done";
    let mut t = Pty::spawn(
        &agent,
        &["run", "-i", "--name", "f1", "busybox", "sh", "-c", script],
        24,
        80,
    );
    t.out.expect("ready");
    // Not in raw mode: the terminal turns Ctrl-C into SIGINT to berthctl.
    t.type_(&[0x03]);
    t.out.expect("berthctl: sent SIGINT to ");
    t.out.expect("got-INT");
    assert_eq!(t.exit_code(), 4, "{}", t.out.text());
    assert_eq!(state_of(&agent, "f1").await, pb::ContainerState::Exited);
    agent.force_remove("f1").await;
    agent.assert_clean().await;
}

/// Opens an Attach call to `id` through the API; the sender carries the
/// requests after `open`.
async fn attach_call(
    agent: &Agent,
    open: pb::AttachOpen,
) -> (
    tokio::sync::mpsc::Sender<pb::AttachRequest>,
    tonic::Streaming<pb::AttachResponse>,
) {
    use pb::attach_request::Request as In;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::AttachRequest {
        request: Some(In::Open(open)),
    })
    .await
    .expect("queueing open");
    let mut resp = agent
        .containers()
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("attach")
        .into_inner();
    let first = resp.message().await.expect("first message");
    assert!(
        matches!(
            first,
            Some(pb::AttachResponse {
                response: Some(pb::attach_response::Response::Attached(_))
            })
        ),
        "{first:?}"
    );
    (tx, resp)
}

/// The rest of a call after a detach: it must end with OK and no exit.
async fn ends_detached(mut resp: tonic::Streaming<pb::AttachResponse>) {
    let ended = tokio::time::timeout(patience(30), async {
        loop {
            match resp.message().await {
                Ok(Some(pb::AttachResponse {
                    response: Some(pb::attach_response::Response::Exit(x)),
                })) => panic!("an exit after the detach: {x:?}"),
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(s) => panic!("the detached call failed: {s:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the call did not end after the detach");
}

/// (g) `AttachRequest.detach` through the API: the stdin sent before it
/// reaches the container, the call ends with OK and no exit, and the
/// container runs on; the same for a container attached through its log.
#[tokio::test]
async fn the_detach_request_ends_the_call_after_the_stdin_before_it() {
    use pb::attach_request::Request as In;
    let agent = agent().await;
    let spec = pb::ContainerSpec {
        name: "g1".into(),
        open_stdin: true,
        ..common::sh("while read l; do eval \"$l\"; done")
    };
    let c = agent.run(spec).await;
    let (tx, resp) = attach_call(
        &agent,
        pb::AttachOpen {
            id: c.id.clone(),
            stdin: true,
            ..Default::default()
        },
    )
    .await;
    for r in [In::Stdin(b"touch /tmp/typed\n".to_vec()), In::Detach(true)] {
        tx.send(pb::AttachRequest { request: Some(r) })
            .await
            .expect("sending");
    }
    // The request stream stays open: only the detach can end the call.
    ends_detached(resp).await;
    assert_eq!(state_of(&agent, "g1").await, pb::ContainerState::Running);
    let typed = common::eventually(30, async || {
        let o = agent.ctl(&["exec", "g1", "test", "-e", "/tmp/typed"]);
        cli::code(&o) == 0
    })
    .await;
    assert!(typed, "the stdin sent before the detach never arrived");
    drop(tx);

    // Without stdin or a terminal (through the log).
    let c2 = agent.run(common::sh("sleep 600")).await;
    let (tx2, resp2) = attach_call(
        &agent,
        pb::AttachOpen {
            id: c2.id.clone(),
            ..Default::default()
        },
    )
    .await;
    tx2.send(pb::AttachRequest {
        request: Some(In::Detach(true)),
    })
    .await
    .expect("sending");
    ends_detached(resp2).await;
    assert_eq!(
        agent.inspect(&c2.id).await.state,
        pb::ContainerState::Running as i32
    );
    drop(tx2);
    agent.force_remove("g1").await;
    agent.force_remove(&c2.id).await;
    agent.assert_clean().await;
}

/// (h) A plain attached `run` (no -i, no -t): the first Ctrl-C is sent on
/// to the container (which traps it) and said; with a container that
/// ignores it (a PID 1 without a handler), the second stops it.
#[tokio::test]
async fn ctrl_c_on_a_plain_run_is_sent_on_then_stops() {
    let agent = agent().await;
    let script = "trap 'echo got-INT; exit 4' INT; echo ready; while true; do sleep 0.1; done";
    let mut t = Pty::spawn(
        &agent,
        &["run", "--name", "h1", "busybox", "sh", "-c", script],
        24,
        80,
    );
    t.out.expect("ready");
    t.type_(&[0x03]);
    t.out.expect("berthctl: sent SIGINT to ");
    t.out.expect("(Ctrl-C again stops it)");
    t.out.expect("got-INT");
    assert_eq!(t.exit_code(), 4, "{}", t.out.text());
    agent.force_remove("h1").await;

    // `sleep` as PID 1 has no handler: SIGINT and SIGTERM do nothing.
    let mut t = Pty::spawn(
        &agent,
        &[
            "run",
            "--name",
            "h2",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 600",
        ],
        24,
        80,
    );
    t.out.expect("ready");
    t.type_(&[0x03]);
    t.out.expect("berthctl: sent SIGINT to ");
    assert_eq!(state_of(&agent, "h2").await, pb::ContainerState::Running);
    t.type_(&[0x03]);
    t.out.expect("berthctl: stopping ");
    assert_eq!(t.exit_code(), 137, "{}", t.out.text());
    assert_eq!(state_of(&agent, "h2").await, pb::ContainerState::Exited);
    agent.force_remove("h2").await;
    agent.assert_clean().await;
}

/// (i) `run -a stdout` shows only the container's stdout; `-a stdin`
/// without -i and `-a` with -d are refused before anything is made.
#[tokio::test]
async fn run_dash_a_shows_only_the_named_streams() {
    let agent = agent().await;
    let o = agent.ctl(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(cli::code(&o), 3, "{}", cli::stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert!(!cli::stderr(&o).contains("to-err"), "{}", cli::stderr(&o));

    let o = agent.ctl(&[
        "run",
        "--rm",
        "-a",
        "stderr",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert_eq!(cli::code(&o), 0, "{}", cli::stderr(&o));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(cli::stderr(&o).contains("to-err"), "{}", cli::stderr(&o));

    let o = agent.ctl(&["run", "--name", "i1", "-a", "stdin", "busybox", "true"]);
    assert_ne!(cli::code(&o), 0);
    assert!(
        cli::stderr(&o).contains("-a stdin needs -i"),
        "{}",
        cli::stderr(&o)
    );
    let o = agent.ctl(&[
        "run", "-d", "--name", "i2", "-a", "stdout", "busybox", "true",
    ]);
    assert_ne!(cli::code(&o), 0);
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    agent.assert_clean().await;
}
