//! End to end: the CRI streaming server behind Exec, Attach and
//! PortForward, driven by the real `crictl` (cri-tools v1.37.0, client-go
//! v0.37's WebSocket executor: v5.channel.k8s.io) and by a minimal
//! WebSocket client of this file's own (the v4 protocol, port-forward's
//! channels: crictl's `port-forward --transport websocket` tunnels SPDY,
//! which berth does not serve).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cri::Cri;
use serde_json::{json, Value};

/// A scratch directory for configs and kubelet's log directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(
            tempfile::Builder::new()
                .prefix("berth-cri-streaming-")
                .tempdir()
                .expect("tempdir")
                .keep(),
        )
    }

    fn write(&self, name: &str, v: &Value) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, v.to_string()).expect("writing a config");
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// kubelet's usual namespace options: network and IPC of the pod, PID of
/// the container's own.
fn pod_namespaces() -> Value {
    json!({"network": 0, "pid": 1, "ipc": 0})
}

fn pod_config(name: &str, log_dir: &Path) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "attempt": 0},
        "hostname": format!("{name}-host"),
        "log_directory": log_dir.display().to_string(),
        "linux": {"security_context": {"namespace_options": pod_namespaces()}}
    })
}

fn container_config(name: &str, script: &str) -> Value {
    json!({
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": "busybox"},
        "command": ["sh", "-c", script],
        "log_path": format!("{name}/0.log"),
        "linux": {"security_context": {"namespace_options": pod_namespaces()}}
    })
}

/// Waits until `check` holds (polling; never a fixed sleep).
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state(cri: &Cri, id: &str) -> String {
    cri.json(&["inspect", "-o", "json", id])["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A ready pod named `name` and a running container in it; (pod, container).
fn pod_with(cri: &Cri, scratch: &Scratch, name: &str, container: Value) -> (String, String) {
    let logs = scratch.0.join("logs");
    let pod_json = scratch.write(&format!("{name}-pod.json"), &pod_config(name, &logs));
    let ctr_json = scratch.write(&format!("{name}-ctr.json"), &container);
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let ctr = cri
        .ok(&["create", &pod, &ctr_json, &pod_json])
        .trim()
        .to_string();
    cri.ok(&["start", &ctr]);
    wait_for("the container running", || {
        state(cri, &ctr) == "CONTAINER_RUNNING"
    });
    (pod, ctr)
}

/// The crictl command line `Cri::crictl` runs.
fn crictl_command(cri: &Cri, args: &[&str]) -> Command {
    let endpoint = format!("unix://{}", cri.socket.display());
    let mut cmd = Command::new(common::cri::crictl_path());
    cmd.args(["--config", "/dev/null"])
        .args(["--runtime-endpoint", &endpoint])
        .args(["--image-endpoint", &endpoint])
        .args(["--timeout", "60s"])
        .args(args);
    cmd
}

/// crictl with `input` on its stdin.
fn crictl_with_stdin(cri: &Cri, args: &[&str], input: &[u8]) -> Output {
    let mut child = crictl_command(cri, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running crictl");
    child
        .stdin
        .take()
        .expect("crictl's stdin")
        .write_all(input)
        .expect("writing crictl's stdin");
    child.wait_with_output().expect("crictl's output")
}

/// The streaming URL crictl's `--debug` log shows ("Exec URL: ...",
/// "PortForward URL: ..."), from a run that failed after the call.
fn logged_url(stderr: &str, what: &str) -> String {
    let marker = format!("{what} URL: ");
    let start = stderr
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {stderr}"))
        + marker.len();
    stderr[start..]
        .split(|c: char| c == '"' || c.is_whitespace())
        .next()
        .expect("a URL")
        .to_string()
}

/// A streaming URL from a SPDY attempt of crictl (refused before its token
/// is used): `args` after `crictl --debug`.
fn url_via_refused_spdy(cri: &Cri, args: &[&str], what: &str) -> String {
    let mut all = vec!["--debug"];
    all.extend_from_slice(args);
    let err = cri.fails(&all);
    assert!(err.contains("not supported yet: SPDY"), "{err}");
    logged_url(&err, what)
}

/// A WebSocket client just big enough for the streaming protocols (binary
/// and text messages, close; no fragments, no extensions).
mod ws {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub struct Client {
        stream: TcpStream,
        /// The subprotocol the server chose.
        pub protocol: Option<String>,
    }

    /// A server message.
    #[derive(Debug, PartialEq)]
    pub enum Frame {
        Binary(Vec<u8>),
        Text(String),
        Close(Option<u16>),
    }

    /// Upgrades `url` (http://host:port/path?query) asking for
    /// `protocols`; the status line and body when the server refuses.
    pub fn connect(url: &str, protocols: &[&str]) -> Result<Client, String> {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = TcpStream::connect(host).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a read timeout");
        let mut req = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !protocols.is_empty() {
            req += &format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "));
        }
        req += "\r\n";
        stream
            .write_all(req.as_bytes())
            .expect("sending the request");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut b).expect("the response head");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !head.starts_with("http/1.1 101") {
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            return Err(format!("{head}{body}"));
        }
        // RFC 6455's example key and its answer.
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        let protocol = head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-protocol:"))
            .map(|p| p.trim().to_string());
        Ok(Client { stream, protocol })
    }

    impl Client {
        fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
            let mut f = vec![0x80 | opcode];
            match payload.len() {
                n if n < 126 => f.push(0x80 | n as u8),
                n if n < 65536 => {
                    f.push(0x80 | 126);
                    f.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    f.push(0x80 | 127);
                    f.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            let mask = [0x12, 0x34, 0x56, 0x78];
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            self.stream.write_all(&f).expect("sending a frame");
        }

        /// Sends `data` on `channel` (binary framing).
        pub fn send(&mut self, channel: u8, data: &[u8]) {
            let mut p = vec![channel];
            p.extend_from_slice(data);
            self.send_frame(2, &p);
        }

        /// Sends a text message (the base64 framing).
        pub fn send_text(&mut self, text: &str) {
            self.send_frame(1, text.as_bytes());
        }

        /// The next message (pings and pongs skipped); a close is answered.
        pub fn recv(&mut self) -> Frame {
            loop {
                let mut h = [0u8; 2];
                self.stream.read_exact(&mut h).expect("a frame header");
                let len = match h[1] & 0x7f {
                    126 => {
                        let mut l = [0u8; 2];
                        self.stream.read_exact(&mut l).expect("a length");
                        u16::from_be_bytes(l) as usize
                    }
                    127 => {
                        let mut l = [0u8; 8];
                        self.stream.read_exact(&mut l).expect("a length");
                        u64::from_be_bytes(l) as usize
                    }
                    n => n as usize,
                };
                assert_eq!(h[1] & 0x80, 0, "a masked frame from the server");
                let mut payload = vec![0u8; len];
                self.stream.read_exact(&mut payload).expect("a payload");
                match h[0] & 0x0f {
                    1 => return Frame::Text(String::from_utf8(payload).expect("utf-8")),
                    2 => return Frame::Binary(payload),
                    8 => {
                        self.send_frame(8, &payload);
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return Frame::Close(code);
                    }
                    _ => continue,
                }
            }
        }

        /// Every binary message until the close, as (channel, bytes); the
        /// close code.
        pub fn collect(&mut self) -> (Vec<(u8, Vec<u8>)>, Option<u16>) {
            let mut got = Vec::new();
            loop {
                match self.recv() {
                    Frame::Binary(b) if !b.is_empty() => got.push((b[0], b[1..].to_vec())),
                    Frame::Close(code) => return (got, code),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    /// What `got` carried on `channel`, joined.
    pub fn channel(got: &[(u8, Vec<u8>)], channel: u8) -> Vec<u8> {
        got.iter()
            .filter(|(c, _)| *c == channel)
            .flat_map(|(_, d)| d.clone())
            .collect()
    }
}

#[tokio::test]
async fn exec_through_crictl_over_websocket() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let (_pod, ctr) = pod_with(
        &cri,
        &scratch,
        "shell",
        container_config("sh", "exec sleep 1000"),
    );
    let ws = ["exec", "--transport", "websocket"];

    // stdin reaches the command, and its output comes back.
    let args = [&ws[..], &["-i", &ctr, "sh", "-c", "read x; echo got $x"]].concat();
    let out = crictl_with_stdin(&cri, &args, b"hello\n");
    assert!(
        out.status.success(),
        "{out:?}\nberthd log:\n{}",
        cri.agent.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");

    // stdout and stderr apart.
    let out = cri.crictl(&[&ws[..], &[&ctr, "sh", "-c", "echo out; echo err >&2"]].concat());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{out:?}"
    );

    // The exit code comes back.
    let err = cri.fails(&[&ws[..], &[&ctr, "sh", "-c", "exit 3"]].concat());
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    // A command that is not there: the reason and the shell's code.
    let out = cri.crictl(&[&ws[..], &[&ctr, "no-such-command"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("exit code 127"),
        "{out:?}"
    );

    // A terminal: crictl wants one on its own stdin, which script gives it
    // (sized here, so crictl sends that size: the process sees it once the
    // resize has come, which it polls for).
    let endpoint = format!("unix://{}", cri.socket.display());
    let line = format!(
        "stty rows 30 cols 100; {} --config /dev/null --runtime-endpoint {endpoint} \
         --image-endpoint {endpoint} exec -it --transport websocket {ctr} sh -c \
         'tty; for i in $(seq 100); do [ \"$(stty size)\" = \"30 100\" ] && break; sleep 0.05; done; stty size'",
        common::cri::crictl_path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{out:?}\nberthd log:\n{}",
        cri.agent.log()
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("30 100"), "{text}");

    // Output in bulk arrives whole, and so does input.
    let out = cri.crictl(&[&ws[..], &[&ctr, "head", "-c", "20000000", "/dev/zero"]].concat());
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 20_000_000);
    let input = vec![b'x'; 5_000_000];
    let out = crictl_with_stdin(&cri, &[&ws[..], &["-i", &ctr, "wc", "-c"]].concat(), &input);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "5000000",
        "{out:?}"
    );

    // A client that goes away takes its process with it.
    let mut client = crictl_command(&cri, &[&ws[..], &[&ctr, "sleep", "777"]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running crictl");
    let running = || {
        cri.ok(&["exec", "-s", &ctr, "busybox", "ps"])
            .contains("sleep 777")
    };
    wait_for("the exec to run", running);
    client.kill().expect("killing crictl");
    client.wait().expect("crictl's end");
    wait_for("the exec to be killed", || !running());

    // SPDY, crictl's default transport, is refused clearly.
    let err = cri.fails(&["exec", &ctr, "true"]);
    assert!(
        err.contains("berth CRI: not supported yet: SPDY streaming; use a WebSocket client"),
        "{err}"
    );

    // A container that is not running is refused at the call.
    cri.ok(&["stop", "--timeout", "0", &ctr]);
    let err = cri.fails(&[&ws[..], &[&ctr, "true"]].concat());
    assert!(err.contains("not running"), "{err}");
}

#[tokio::test]
async fn v4_and_base64_protocols_and_single_use_tokens() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let (_pod, ctr) = pod_with(
        &cri,
        &scratch,
        "raw",
        container_config("raw", "exec sleep 1000"),
    );
    let script = "echo hi; echo oops >&2; exit 7";

    // v4: output on 1 and 2, then the status as JSON on 3, then a normal close.
    let url = url_via_refused_spdy(&cri, &["exec", &ctr, "sh", "-c", script], "Exec");
    let mut c = ws::connect(&url, &["v4.channel.k8s.io"]).expect("an upgrade");
    assert_eq!(c.protocol.as_deref(), Some("v4.channel.k8s.io"));
    let (got, code) = c.collect();
    assert_eq!(code, Some(1000), "{got:?}");
    assert_eq!(ws::channel(&got, 1), b"hi\n");
    assert_eq!(ws::channel(&got, 2), b"oops\n");
    let status: Value = serde_json::from_slice(&ws::channel(&got, 3)).expect("a JSON status");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // The token was used: the same URL is refused.
    let err = ws::connect(&url, &["v4.channel.k8s.io"])
        .err()
        .expect("a refusal");
    assert!(err.starts_with("http/1.1 404"), "{err}");

    // Unknown subprotocols are refused without using the token.
    let url = url_via_refused_spdy(&cri, &["exec", "-i", &ctr, "cat"], "Exec");
    let err = ws::connect(&url, &["v9.channel.k8s.io"])
        .err()
        .expect("a refusal");
    assert!(err.contains("v5.channel.k8s.io"), "{err}");
    // base64: text messages, the channel as a digit; stdin to cat and back.
    let mut c = ws::connect(&url, &["v4.base64.channel.k8s.io"]).expect("an upgrade");
    c.send_text("0aGVsbG8K"); // "hello\n" on stdin
    let mut echoed = String::new();
    while !echoed.contains("aGVsbG8K") {
        match c.recv() {
            ws::Frame::Text(t) if t.starts_with('1') => echoed += &t[1..],
            ws::Frame::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn port_forward_reaches_a_server_in_the_pod() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let httpd = "mkdir -p /www && echo hello-from-the-pod > /www/index.html \
                 && exec busybox httpd -f -p 8080 -h /www";
    let (pod, ctr) = pod_with(&cri, &scratch, "web", container_config("httpd", httpd));
    wait_for("httpd answering in the pod", || {
        cri.crictl(&[
            "exec",
            "-s",
            &ctr,
            "busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ])
        .status
        .success()
    });

    // crictl's port-forward over WebSocket is SPDY tunnelled: refused,
    // saying so; its URL is still good for the channel protocol.
    let mut args = vec![
        "--debug",
        "port-forward",
        "--transport",
        "websocket",
        &pod,
        "18080:8080",
    ];
    let err = cri.fails(&args);
    assert!(err.contains("not supported yet: SPDY"), "{err}");
    let url = logged_url(&err, "PortForward");
    let mut c =
        ws::connect(&format!("{url}?port=8080"), &["v4.channel.k8s.io"]).expect("an upgrade");
    // Both channels of the port start with it, little endian.
    assert_eq!(c.recv(), ws::Frame::Binary(vec![0, 0x90, 0x1f]));
    assert_eq!(c.recv(), ws::Frame::Binary(vec![1, 0x90, 0x1f]));
    c.send(0, b"GET / HTTP/1.0\r\n\r\n");
    let (got, code) = c.collect();
    let body = String::from_utf8_lossy(&ws::channel(&got, 0)).into_owned();
    assert!(body.contains("hello-from-the-pod"), "{body}");
    assert!(ws::channel(&got, 1).is_empty(), "{got:?}");
    assert_eq!(code, Some(1000));

    // A port nothing listens on: the reason on its error channel.
    args.pop();
    args.push("18081:8081");
    let url = logged_url(&cri.fails(&args), "PortForward");
    let mut c =
        ws::connect(&format!("{url}?port=8081"), &["v4.channel.k8s.io"]).expect("an upgrade");
    let (got, _) = c.collect();
    let err = String::from_utf8_lossy(&ws::channel(&got, 1)).into_owned();
    assert!(err.contains("error forwarding port 8081"), "{err}");
    // A query without a port is refused (and the token kept for a good one).
    let url = logged_url(&cri.fails(&args), "PortForward");
    let err = ws::connect(&url, &["v4.channel.k8s.io"])
        .err()
        .expect("a refusal");
    assert!(err.contains("\"port\" is required"), "{err}");
    assert!(ws::connect(&format!("{url}?port=8080"), &[]).is_ok());
}

#[tokio::test]
async fn attach_to_a_container_with_stdin() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    let mut config = container_config("echo", "read l; echo \"echo:$l\"");
    config["stdin"] = json!(true);
    let (_pod, ctr) = pod_with(&cri, &scratch, "att", config);
    let out = crictl_with_stdin(
        &cri,
        &["attach", "-i", "--transport", "websocket", &ctr],
        b"hi\n",
    );
    assert!(
        out.status.success(),
        "{out:?}\nberthd log:\n{}",
        cri.agent.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo:hi\n");

    // A container without stdin or tty has nothing to attach to.
    let (_pod, quiet) = pod_with(
        &cri,
        &scratch,
        "quiet",
        container_config("q", "exec sleep 1000"),
    );
    let err = cri.fails(&["attach", "--transport", "websocket", &quiet]);
    assert!(err.contains("not supported yet: Attach"), "{err}");
}
