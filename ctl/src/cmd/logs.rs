//! `logs`: a container's output; and how container output is written,
//! for `logs` and attached `run`.

use std::io::Write;
use std::time::SystemTime;

use berth::v1::{containers_client::ContainersClient, LogEntry, LogStream, LogsRequest};
use tonic::transport::Channel;
use tonic::Code;

use super::fan::prefix_width;
use crate::cli::LogsArgs;
use crate::error::{Error, Result};
use crate::fleet::{with_host, Failures, Fleet};
use crate::output::{self, print_json_line};
use crate::parse;

/// Builds the Logs request from `logs` flags; `now` anchors `--since 10m`.
pub fn logs_request(args: &LogsArgs, now: SystemTime) -> Result<LogsRequest> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            Error::Message(format!(
                "invalid --tail {n:?} (expected a number or \"all\")"
            ))
        })?),
    };
    let since = args
        .since
        .as_deref()
        .map(|s| parse::since(s, now))
        .transpose()?;
    Ok(LogsRequest {
        id: args.id.clone(),
        follow: args.follow,
        tail,
        since,
        streams: vec![],
    })
}

/// Where container output goes: as the container wrote it for one agent,
/// each line prefixed with its host for many, or JSON lines.
#[derive(Debug, Clone)]
pub struct Sink {
    json: bool,
    /// `web1 | ` on many hosts; None for one agent.
    prefix: Option<String>,
    /// The host, for the JSON of many hosts.
    host: Option<String>,
    timestamps: bool,
}

impl Sink {
    /// The sink of `host`'s output in `f`.
    pub fn new(f: &Fleet, host: &str, timestamps: bool) -> Sink {
        let many = !f.is_single();
        let width = prefix_width(f);
        Sink {
            json: f.json(),
            prefix: many.then(|| format!("{host:<width$} | ")),
            host: many.then(|| host.to_string()),
            timestamps,
        }
    }

    /// Writes one entry: its bytes to stdout or stderr (flushed, so
    /// interleaving with the other stream is kept), or a JSON line.
    pub fn write(&self, entry: &LogEntry) -> Result<()> {
        if self.json {
            let v = output::log_entry_json(entry)?;
            print_json_line(&match &self.host {
                Some(h) => with_host(h, v),
                None => v,
            });
            return Ok(());
        }
        match &self.prefix {
            Some(p) => write_prefixed(p, entry, self.timestamps),
            None => write_raw(entry, self.timestamps),
        }
        Ok(())
    }
}

/// Writes an entry as the container wrote it, after its time with `-t`.
fn write_raw(entry: &LogEntry, timestamps: bool) {
    let prefix = match (&entry.time, timestamps) {
        (Some(t), true) => format!("{} ", output::rfc3339_fixed(t)),
        _ => String::new(),
    };
    // A closed stdout or stderr (piped into head) is not an error to report.
    if entry.stream == LogStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prefix.as_bytes());
        let _ = err.write_all(&entry.data);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(&entry.data);
        let _ = out.flush();
    }
}

/// Writes log data with every line prefixed by its host, so output from
/// many hosts never runs together.
fn write_prefixed(prefix: &str, entry: &LogEntry, timestamps: bool) {
    let ts = match (&entry.time, timestamps) {
        (Some(t), true) => format!("{} ", output::rfc3339_fixed(t)),
        _ => String::new(),
    };
    let mut text = Vec::new();
    for line in entry.data.split_inclusive(|b| *b == b'\n') {
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(ts.as_bytes());
        text.extend_from_slice(line);
        if line.last() != Some(&b'\n') {
            text.push(b'\n');
        }
    }
    // A closed stdout or stderr (piped into head) is not an error to report.
    if entry.stream == LogStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&text);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&text);
        let _ = out.flush();
    }
}

/// `logs`: on one agent, its stdout to stdout and stderr to stderr; on
/// many, every host that has the container, lines prefixed with the host:
/// without -f each host's output whole, in host order; with -f lines as
/// they come.
pub async fn logs(f: &Fleet, args: LogsArgs) -> Result<()> {
    let req = logs_request(&args, SystemTime::now())?;
    // One agent's output, and anyone's with -f, is printed as it comes.
    let live = f.is_single() || args.follow;
    let timestamps = args.timestamps;
    let call = |m: std::rc::Rc<crate::fleet::Member>, ch: Channel| {
        let req = req.clone();
        async move {
            let sink = Sink::new(f, &m.name, timestamps);
            let mut stream = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .logs(req)
                .await?
                .into_inner();
            let mut kept = Vec::new();
            while let Some(entry) = stream.message().await? {
                if live {
                    sink.write(&entry)?;
                } else {
                    kept.push(entry);
                }
            }
            Ok((sink, kept))
        }
    };
    let results = if live {
        f.each_untimed(call).await
    } else {
        f.each(call).await
    };
    if f.is_single() {
        return results.into_iter().try_for_each(|(_, r)| r.map(drop));
    }
    let mut fails = Failures {
        total: results.len(),
        ..Default::default()
    };
    let mut found = false;
    for (m, r) in results {
        match r {
            Ok((sink, entries)) => {
                found = true;
                for e in &entries {
                    sink.write(e)?;
                }
            }
            Err(Error::Status(s)) if s.code() == Code::NotFound => {}
            Err(e) => {
                found = true;
                fails.push(&m.name, e)
            }
        }
    }
    if !found {
        fails.push_general(Error::Message(format!(
            "no such container on any targeted host: {}",
            args.id
        )));
    }
    fails.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn logs_requests() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let req = |args: &[&str]| {
            let Command::Logs(l) = cli(args) else {
                panic!()
            };
            logs_request(&l, now).map_err(|e| e.to_string())
        };
        assert_eq!(
            req(&["logs", "web"]),
            Ok(LogsRequest {
                id: "web".into(),
                ..Default::default()
            })
        );
        let Ok(r) = req(&["logs", "-f", "--tail", "5", "--since", "10m", "web"]) else {
            panic!()
        };
        assert!(r.follow);
        assert_eq!(r.tail, Some(5));
        assert_eq!(
            r.since,
            Some(prost_types::Timestamp {
                seconds: 9_400,
                nanos: 0
            })
        );
        assert_eq!(
            req(&["logs", "--tail", "all", "web"]).map(|r| r.tail),
            Ok(None)
        );
        assert!(req(&["logs", "--tail", "x3", "web"]).is_err());
        assert!(req(&["logs", "--since", "soon", "web"]).is_err());
    }
}
