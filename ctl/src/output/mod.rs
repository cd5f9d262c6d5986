//! Rendering for humans (aligned tables, "5 seconds ago", "4.1MB") and for
//! programs (the API's messages in the protobuf JSON mapping).

use std::io::Write;
use std::time::SystemTime;

use berth::v1::{Container, ContainerState, Event, EventAction, LogEntry, ObjectType};
use serde_json::Value;

pub mod format;
mod time;
pub use time::{ago, human_duration, rfc3339, rfc3339_fixed, since};

/// Spaces between table columns, as in Docker's tables.
const COLUMN_GAP: usize = 3;

/// Renders rows under an upper-case header, each column as wide as its
/// widest cell plus a gap. The last column is not padded, so lines carry no
/// trailing spaces. Returns one string with a newline after every line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(header);
    all.extend(rows.iter().cloned());
    align(&all)
}

/// Aligns lines of cells: each column as wide as its widest cell plus a
/// gap, the last cell of a line unpadded (as Go's tabwriter, which Docker's
/// `--format table` uses). A newline after every line.
pub fn align(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        // The last cell of a line sets no column width: it is not padded.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(old) => *old = (*old).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + COLUMN_GAP;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Writes one JSON value as a single line on stdout.
pub fn print_json_line(v: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (berthctl ... | head) is not worth reporting.
    let _ = writeln!(out, "{v}");
}

/// Prints what `inspect` found: one object per line with `-o json`, as
/// every other command prints JSON; otherwise, as `docker inspect` does, one
/// pretty-printed array.
pub fn print_inspected(objects: Vec<Value>, json_lines: bool) {
    if json_lines {
        objects.iter().for_each(print_json_line);
    } else {
        print_json_pretty(&Value::Array(objects));
    }
}

/// Writes a JSON value pretty-printed on stdout.
fn print_json_pretty(v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A size in decimal units with three significant digits, as `docker images`
/// shows it: "999B", "4.1MB", "1.23GB".
pub fn human_size(bytes: i64) -> String {
    scaled(
        bytes.max(0) as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB"],
    )
}

/// A size in binary units, as `docker info` shows memory: "7.6GiB".
pub fn binary_size(bytes: u64) -> String {
    scaled(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB"],
    )
}

fn scaled(mut v: f64, base: f64, units: &[&str]) -> String {
    let mut unit = 0;
    loop {
        let decimals = if v >= 100.0 {
            0
        } else if v >= 10.0 {
            1
        } else {
            2
        };
        let text = format!("{v:.decimals$}");
        // Rounding can carry into the next unit (999.7 → "1000"): go up one.
        if text.parse::<f64>().unwrap_or(v) >= base && unit + 1 < units.len() {
            v /= base;
            unit += 1;
            continue;
        }
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        };
        return format!("{text}{}", units[unit]);
    }
}

/// A container state as Docker's `ps` names it: "running", "exited", ...
pub fn state_word(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Exited => "exited",
        _ => "unknown",
    }
}

/// A container's published ports as Docker's `ps` shows them:
/// "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp".
pub fn ports_text(c: &Container) -> String {
    let Some(n) = &c.network_settings else {
        return String::new();
    };
    let ports: Vec<String> = n
        .ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                &p.protocol
            };
            format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect();
    ports.join(", ")
}

/// The first 12 characters of a container id, as Docker shows ids.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The first 12 hex digits of an image id after its "sha256:".
pub fn short_image_id(id: &str) -> &str {
    short_id(id.strip_prefix("sha256:").unwrap_or(id))
}

/// A string cut to `max` characters, the last being "…" when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An event's object type as a lower-case word ("container").
pub fn object_type_word(t: i32) -> &'static str {
    match ObjectType::try_from(t) {
        Ok(ObjectType::Container) => "container",
        Ok(ObjectType::Image) => "image",
        Ok(ObjectType::Network) => "network",
        Ok(ObjectType::Volume) => "volume",
        Ok(ObjectType::Pod) => "pod",
        _ => "unknown",
    }
}

/// An event action as a lower-case word ("started").
pub fn action_word(a: i32) -> &'static str {
    match EventAction::try_from(a) {
        Ok(EventAction::Created) => "created",
        Ok(EventAction::Started) => "started",
        Ok(EventAction::Stopping) => "stopping",
        Ok(EventAction::Killed) => "killed",
        Ok(EventAction::Exited) => "exited",
        Ok(EventAction::Removed) => "removed",
        Ok(EventAction::Imported) => "imported",
        Ok(EventAction::Pulled) => "pulled",
        Ok(EventAction::Paused) => "paused",
        Ok(EventAction::Resumed) => "resumed",
        Ok(EventAction::Restarting) => "restarting",
        Ok(EventAction::Updated) => "updated",
        Ok(EventAction::ExecStarted) => "exec-started",
        Ok(EventAction::ExecExited) => "exec-exited",
        Ok(EventAction::Renamed) => "renamed",
        Ok(EventAction::Connected) => "connected",
        Ok(EventAction::Disconnected) => "disconnected",
        Ok(EventAction::Built) => "built",
        Ok(EventAction::Snapshot) => "snapshot",
        Ok(EventAction::SnapshotDone) => "snapshot-done",
        _ => "unknown",
    }
}

/// The STATUS column of `ps`: "Created", "Up 3 seconds",
/// "Exited (137) 2 minutes ago", "Exited (137, OOM killed) 2 minutes ago".
pub fn status_text(c: &Container, now: SystemTime) -> String {
    match ContainerState::try_from(c.state) {
        Ok(ContainerState::Created) => "Created".into(),
        Ok(ContainerState::Running) => match &c.started_at {
            Some(t) => format!("Up {}", human_duration(since(t, now))),
            None => "Up".into(),
        },
        Ok(ContainerState::Exited) => {
            let exit = c.exit.unwrap_or_default();
            let oom = if exit.oom_killed { ", OOM killed" } else { "" };
            let mut s = format!("Exited ({}{oom})", exit.exit_code);
            if exit.finished_at.is_some() {
                s.push(' ');
                s.push_str(&ago(&exit.finished_at, now));
            }
            s
        }
        Ok(ContainerState::Paused) => match &c.started_at {
            Some(t) => format!("Up {} (Paused)", human_duration(since(t, now))),
            None => "Up (Paused)".into(),
        },
        Ok(ContainerState::Restarting) => {
            let code = c.exit.unwrap_or_default().exit_code;
            format!("Restarting ({code})")
        }
        _ => "Unknown".into(),
    }
}

/// The command line a container runs, as one string: the effective args,
/// or, if the agent did not report them, the spec's entrypoint and command.
pub fn command_line(c: &Container) -> String {
    if !c.args.is_empty() {
        return c.args.join(" ");
    }
    let spec = c.spec.clone().unwrap_or_default();
    let mut parts: Vec<String> = spec.entrypoint.map(|e| e.values).unwrap_or_default();
    parts.extend(spec.command);
    parts.join(" ")
}

/// The COMMAND column of `ps`: truncated to 20 characters, then quoted.
pub fn command_column(c: &Container, no_trunc: bool) -> String {
    let cmd = command_line(c);
    let cmd = if no_trunc { cmd } else { ellipsis(&cmd, 20) };
    Value::String(cmd).to_string()
}

/// Splits a reference into repository and tag for `image ls`, shortening
/// Docker Hub names as Docker does ("docker.io/library/busybox:latest" →
/// ("busybox", "latest")). Digest references have tag "<none>".
pub fn repo_tag(reference: &str) -> (String, String) {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    if let Some((repo, _digest)) = short.split_once('@') {
        return (repo.to_string(), "<none>".into());
    }
    let last_slash = short.rfind('/').map_or(0, |i| i + 1);
    match short[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (short[..at].to_string(), short[at + 1..].to_string())
        }
        None => (short.to_string(), "<none>".into()),
    }
}

/// One table line for an event:
/// `<time> <seq> container started <id12> (name=web, image=busybox, exitCode=0)`.
pub fn event_line(e: &Event) -> String {
    let time = e.time.as_ref().map_or_else(|| "-".to_string(), rfc3339);
    let is_image = e.r#type == ObjectType::Image as i32;
    let id = if is_image {
        short_image_id(&e.id)
    } else if e.r#type == ObjectType::Volume as i32 {
        // A volume's id is its name.
        &e.id
    } else {
        short_id(&e.id)
    };
    let mut attrs = Vec::new();
    if !e.name.is_empty() {
        attrs.push(format!("name={}", e.name));
    }
    if !e.image.is_empty() {
        attrs.push(format!("image={}", e.image));
    }
    if let Some(x) = &e.exit {
        attrs.push(format!("exitCode={}", x.exit_code));
        if x.signal != 0 {
            attrs.push(format!("signal={}", x.signal));
        }
        if x.oom_killed {
            attrs.push("oom=true".into());
        }
    } else if e.signal != 0 {
        attrs.push(format!("signal={}", e.signal));
    }
    if e.action == EventAction::Restarting as i32 {
        attrs.push(format!("attempt={}", e.restart_attempt));
        attrs.push(format!("delay={}", delay_text(e.restart_delay_ms)));
    }
    let mut labels: Vec<_> = e.labels.iter().collect();
    labels.sort();
    attrs.extend(labels.into_iter().map(|(k, v)| format!("{k}={v}")));
    let mut line = format!(
        "{time} {} {} {} {id}",
        e.seq,
        object_type_word(e.r#type),
        action_word(e.action)
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// A restart delay as people read it: "100ms", "1.6s", "60s".
fn delay_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// A berth.v1 message as JSON, in the protobuf's JSON mapping (see
/// [`berth::json`]): every field of the message, lowerCamelCase keys, enums
/// by name, 64-bit integers as strings, times in RFC 3339.
pub fn message_json<M: prost::Message + prost::Name>(m: &M) -> crate::error::Result<Value> {
    Ok(berth::json::to_value(m)?)
}

/// A log entry as JSON: the message (its `data` base64, as the mapping has
/// bytes), plus `text`, the same bytes as UTF-8 (invalid sequences
/// replaced), which is what a script usually wants.
pub fn log_entry_json(l: &LogEntry) -> crate::error::Result<Value> {
    let mut v = message_json(l)?;
    v["text"] = Value::String(String::from_utf8_lossy(&l.data).into_owned());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::v1::{ContainerSpec, ExitStatus, LogStream};
    use prost_types::Timestamp;
    use serde_json::json;
    use std::collections::HashMap;
    use std::time::{Duration, UNIX_EPOCH};

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn tables_align_with_three_spaces() {
        let out = table(
            &["container id", "name"],
            &[
                vec!["abc".into(), "web".into()],
                vec!["abcdefghijklmnop".into(), "x".into()],
            ],
        );
        assert_eq!(
            out,
            "CONTAINER ID       NAME\n\
             abc                web\n\
             abcdefghijklmnop   x\n"
        );
        // No rows: just the header; empty last cells leave no trailing space.
        assert_eq!(table(&["a", "b"], &[]), "A   B\n");
        assert_eq!(
            table(&["a", "b"], &[vec!["xyz".into(), "".into()]]),
            "A     B\nxyz\n"
        );
        // Width counts characters, not bytes.
        assert_eq!(
            table(&["a", "b"], &[vec!["é…".into(), "1".into()]]),
            "A    B\né…   1\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_100_000), "4.1MB");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_234_567_890), "1.23GB");
        assert_eq!(human_size(999_999), "1MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(binary_size(8 * 1024 * 1024 * 1024), "8GiB");
        assert_eq!(binary_size(8_160_000_000), "7.6GiB");
    }

    #[test]
    fn ids_and_names() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(short_id(id), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_image_id(&format!("sha256:{id}")), "0123456789ab");
        assert_eq!(
            repo_tag("docker.io/library/busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            repo_tag("docker.io/me/app:1.0"),
            ("me/app".into(), "1.0".into())
        );
        assert_eq!(
            repo_tag("localhost:5000/app"),
            ("localhost:5000/app".into(), "<none>".into())
        );
        assert_eq!(
            repo_tag("localhost:5000/app:v2"),
            ("localhost:5000/app".into(), "v2".into())
        );
        assert_eq!(
            repo_tag("docker.io/library/busybox@sha256:ab"),
            ("busybox".into(), "<none>".into())
        );
    }

    fn container(state: ContainerState) -> Container {
        Container {
            id: "f".repeat(64),
            state: state as i32,
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo \"hello world\"; sleep 100".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn ps_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            status_text(&container(ContainerState::Created), now),
            "Created"
        );
        let mut c = container(ContainerState::Running);
        c.started_at = ts(997);
        assert_eq!(status_text(&c, now), "Up 3 seconds");
        let mut c = container(ContainerState::Exited);
        c.exit = Some(ExitStatus {
            exit_code: 137,
            signal: 9,
            oom_killed: false,
            finished_at: ts(880),
        });
        assert_eq!(status_text(&c, now), "Exited (137) 2 minutes ago");
        c.exit = Some(ExitStatus {
            exit_code: 137,
            signal: 9,
            oom_killed: true,
            finished_at: ts(880),
        });
        assert_eq!(
            status_text(&c, now),
            "Exited (137, OOM killed) 2 minutes ago"
        );
        assert_eq!(command_column(&c, false), r#""sh -c echo \"hello w…""#);
        assert_eq!(
            command_column(&c, true),
            r#""sh -c echo \"hello world\"; sleep 100""#
        );
        let c = Container {
            spec: Some(ContainerSpec {
                entrypoint: Some(berth::v1::StringList {
                    values: vec!["/init".into()],
                }),
                command: vec!["run".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(command_line(&c), "/init run");
    }

    #[test]
    fn events() {
        let mut labels = HashMap::new();
        labels.insert("app".to_string(), "web".to_string());
        let e = Event {
            seq: 42,
            time: Some(Timestamp {
                seconds: 1_714_557_600,
                nanos: 0,
            }),
            r#type: ObjectType::Container as i32,
            action: EventAction::Exited as i32,
            id: "a".repeat(64),
            name: "web".into(),
            labels,
            exit: Some(ExitStatus {
                exit_code: 137,
                signal: 9,
                oom_killed: true,
                finished_at: None,
            }),
            signal: 0,
            image: "busybox".into(),
            instance_id: "i1".into(),
            ..Default::default()
        };
        assert_eq!(
            event_line(&e),
            "2024-05-01T10:00:00Z 42 container exited aaaaaaaaaaaa \
             (name=web, image=busybox, exitCode=137, signal=9, oom=true, app=web)"
        );
        let v = message_json(&e).expect("renders");
        assert_eq!(v["type"], "OBJECT_TYPE_CONTAINER");
        assert_eq!(v["action"], "EVENT_ACTION_EXITED");
        assert_eq!(v["time"], "2024-05-01T10:00:00Z");
        assert_eq!(v["seq"], "42");
        assert_eq!(v["exit"]["oomKilled"], true);
        assert_eq!(v["labels"]["app"], "web");
        let img = Event {
            seq: 1,
            r#type: ObjectType::Image as i32,
            action: EventAction::Imported as i32,
            id: format!("sha256:{}", "b".repeat(64)),
            name: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        };
        assert_eq!(
            event_line(&img),
            "- 1 image imported bbbbbbbbbbbb (name=docker.io/library/busybox:latest)"
        );
    }

    #[test]
    fn container_as_json() {
        let mut c = container(ContainerState::Running);
        c.created_at = ts(0);
        c.spec = Some(ContainerSpec {
            image: "busybox".into(),
            entrypoint: Some(berth::v1::StringList { values: vec![] }),
            ..Default::default()
        });
        let v = message_json(&c).expect("renders");
        assert_eq!(v["state"], "CONTAINER_STATE_RUNNING");
        assert_eq!(v["createdAt"], "1970-01-01T00:00:00Z");
        // Unset messages are left out; every other field is there.
        assert_eq!(v.get("startedAt"), None);
        assert_eq!(v.get("exit"), None);
        assert_eq!(v["restartCount"], 0);
        assert_eq!(v["stoppedByUser"], false);
        assert_eq!(v["spec"]["image"], "busybox");
        // An entrypoint cleared on purpose stays distinct from an unset one.
        assert_eq!(v["spec"]["entrypoint"], json!({"values": []}));
        assert_eq!(v["spec"].get("stopTimeoutSeconds"), None);
        let log = LogEntry {
            time: ts(0),
            stream: LogStream::Stderr as i32,
            data: b"hi\n".to_vec(),
        };
        assert_eq!(
            log_entry_json(&log).expect("renders"),
            json!({"time": "1970-01-01T00:00:00Z", "stream": "LOG_STREAM_STDERR", "data": "aGkK", "text": "hi\n"})
        );
    }
}
