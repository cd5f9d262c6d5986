//! `events`: the agents' event streams, one line per event, followed
//! across agent restarts and network breaks.

use std::time::Duration;

use berth::v1::{events_client::EventsClient, Event, EventAction, ObjectType, SubscribeRequest};
use tonic::{Code, Status};

use super::fan::prefix_width;
use crate::cli::EventsArgs;
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet, Member};
use crate::output::{self, print_json_line};
use crate::parse;

/// Parses an action filter; Docker's verbs (`start`, `die`, `destroy`) are
/// accepted too, so muscle memory works.
pub fn action(s: &str) -> Option<EventAction> {
    Some(match s {
        "created" | "create" => EventAction::Created,
        "started" | "start" => EventAction::Started,
        "stopping" | "stop" => EventAction::Stopping,
        "killed" | "kill" => EventAction::Killed,
        "exited" | "exit" | "die" => EventAction::Exited,
        "removed" | "remove" | "destroy" | "delete" => EventAction::Removed,
        "imported" | "import" | "load" => EventAction::Imported,
        _ => return None,
    })
}

/// Builds the Subscribe request from `events` flags.
pub fn subscribe_request(args: &EventsArgs) -> Result<SubscribeRequest> {
    let mut req = SubscribeRequest {
        from_seq: args.since_seq.unwrap_or(0),
        ..Default::default()
    };
    for f in &args.filters {
        let (key, value) = f
            .split_once('=')
            .ok_or_else(|| Error::Message(format!("invalid filter {f:?} (expected key=value)")))?;
        match key {
            "type" => {
                let t = match value {
                    "container" => ObjectType::Container,
                    "image" => ObjectType::Image,
                    _ => {
                        return Err(Error::Message(format!(
                            "invalid type filter {value:?} (expected container or image)"
                        )))
                    }
                };
                req.types.push(t as i32);
            }
            "event" | "action" => {
                let a = action(value).ok_or_else(|| {
                    Error::Message(format!(
                        "invalid event filter {value:?} (expected created, started, stopping, killed, exited, removed or imported)"
                    ))
                })?;
                req.actions.push(a as i32);
            }
            "container" => req.containers.push(value.to_string()),
            "label" => {
                let (k, v) = parse::label(value)?;
                req.labels.insert(k, v);
            }
            _ => {
                return Err(Error::Message(format!(
                    "invalid filter {key:?} (expected type, event, container or label)"
                )))
            }
        }
    }
    Ok(req)
}

/// `events`: prints events until interrupted, from every targeted host
/// (merged as they arrive, each line starting with its host, when there
/// are many; one host's events always in their order).
///
/// Each host has a cursor, the last sequence number seen from it. When a
/// stream breaks (the agent restarted, the network dropped), berthctl says
/// so on stderr, reconnects with back-off (0.1 s doubling to 5 s) and
/// resubscribes right after the cursor, so with the agent's durable event
/// log nothing is skipped or printed twice. Without `--since-seq` the first
/// subscription starts with a snapshot, not printed, that tells the agent's
/// current position, so even a break before the first event misses nothing.
///
/// One agent: an error other than a lost connection (a bad filter, events
/// no longer retained) ends the command, as does an agent that cannot be
/// reached at all. Many hosts: nothing ends the stream; events no longer
/// retained are named on stderr and the host resumes from its oldest.
pub async fn events(f: &Fleet, args: EventsArgs) -> Result<()> {
    let req = subscribe_request(&args)?;
    let follows = f.members.iter().map(|m| follow(f, m, req.clone()));
    for r in futures_util::future::join_all(follows).await {
        r?;
    }
    Ok(())
}

/// First wait before reconnecting; doubled after each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The sequence number an OUT_OF_RANGE status says to resume from
/// ("... resubscribe with from_seq >= N").
pub fn oldest_retained(message: &str) -> Option<u64> {
    let tail = message.rsplit(">=").next()?;
    let digits: String = tail
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One host's stream and where it stands.
struct Follower<'a> {
    f: &'a Fleet,
    m: &'a Member,
    /// The last sequence number seen (or learnt from the snapshot).
    last: Option<u64>,
    /// `HOST: ` on many hosts, for stderr notices.
    who: String,
    /// Connected at least once: an unreachable agent is then a restart to
    /// wait for, not a mistake to report.
    connected: bool,
    /// The stream is broken and that was said.
    down: bool,
    backoff: Duration,
}

/// Follows one host until an error ends it (only on one agent).
async fn follow(f: &Fleet, m: &Member, mut req: SubscribeRequest) -> Result<()> {
    let mut s = Follower {
        f,
        m,
        last: (req.from_seq > 0).then(|| req.from_seq - 1),
        who: if f.is_single() {
            String::new()
        } else {
            format!("{}: ", m.name)
        },
        connected: false,
        down: false,
        backoff: MIN_BACKOFF,
    };
    loop {
        match s.last {
            Some(seq) => {
                req.from_seq = seq + 1;
                req.snapshot = false;
            }
            None => {
                req.from_seq = 0;
                req.snapshot = true;
            }
        }
        let err = s.once(&req).await;
        match &err {
            // Dropped for falling behind: the cursor says where to pick up.
            Error::Status(st) if st.code() == Code::ResourceExhausted => continue,
            Error::Status(st) if st.code() == Code::OutOfRange && !f.is_single() => {
                let oldest = oldest_retained(st.message()).unwrap_or(1).max(1);
                eprintln!(
                    "berthctl: {}events {}..{} are no longer retained by the agent and were lost",
                    s.who,
                    s.last.map_or(1, |l| l + 1),
                    oldest - 1
                );
                s.last = Some(oldest - 1);
                continue;
            }
            _ => {}
        }
        if f.is_single() && !s.is_break(&err) {
            return Err(err);
        }
        if !s.down {
            eprintln!("berthctl: {}event stream lost ({err}); reconnecting", s.who);
            s.down = true;
        }
        tokio::time::sleep(s.backoff).await;
        s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
    }
}

impl Follower<'_> {
    /// Whether `err` is a broken stream to resume rather than an answer.
    fn is_break(&self, err: &Error) -> bool {
        match err {
            Error::Status(s) => matches!(
                s.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::ResourceExhausted
            ),
            Error::Connect { .. } => self.connected,
            _ => false,
        }
    }

    /// One subscription: prints events and advances the cursor until it
    /// breaks; returns why.
    async fn once(&mut self, req: &SubscribeRequest) -> Error {
        let ch = match self.m.channel().await {
            Ok(ch) => ch,
            Err(e) => return e,
        };
        let mut stream = match EventsClient::new(ch)
            .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
            .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
            .subscribe(req.clone())
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => return s.into(),
        };
        self.connected = true;
        if self.down {
            match self.last {
                Some(l) => eprintln!(
                    "berthctl: {}reconnected; resuming at seq {}",
                    self.who,
                    l + 1
                ),
                None => eprintln!("berthctl: {}reconnected", self.who),
            }
            self.down = false;
        }
        self.backoff = MIN_BACKOFF;
        loop {
            let e = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => return Status::unavailable("the agent ended the stream").into(),
                Err(s) => return s.into(),
            };
            if e.action == EventAction::Snapshot as i32 {
                continue;
            }
            if e.action == EventAction::SnapshotDone as i32 {
                self.last = Some(e.seq);
                continue;
            }
            if let Some(l) = self.last.filter(|l| e.seq <= *l) {
                // Only an agent whose event log was reset (not durable)
                // numbers events again from 1.
                eprintln!(
                    "berthctl: {}the agent's event sequence went back from {l} to {} (its event log was reset); events in between may be missing",
                    self.who, e.seq
                );
            }
            self.last = Some(e.seq);
            if let Err(err) = self.print(&e) {
                return err;
            }
        }
    }

    fn print(&self, e: &Event) -> Result<()> {
        let many = !self.f.is_single();
        if self.f.json() {
            let v = output::message_json(e)?;
            print_json_line(&if many { with_host(&self.m.name, v) } else { v });
        } else if many {
            let width = prefix_width(self.f);
            println!("{:<width$}  {}", self.m.name, output::event_line(e));
        } else {
            println!("{}", output::event_line(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn req(args: &[&str]) -> std::result::Result<SubscribeRequest, String> {
        let cli = Cli::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let Command::Events(e) = cli.command.0 else {
            panic!("not events")
        };
        subscribe_request(&e).map_err(|e| e.to_string())
    }

    #[test]
    fn subscribe_requests() {
        assert_eq!(req(&["events"]), Ok(SubscribeRequest::default()));
        let Ok(r) = req(&[
            "events",
            "--filter",
            "type=container",
            "-f",
            "event=started",
            "-f",
            "event=die",
            "-f",
            "container=web",
            "-f",
            "label=app=web",
            "--since-seq",
            "7",
        ]) else {
            panic!()
        };
        assert_eq!(r.types, [ObjectType::Container as i32]);
        assert_eq!(
            r.actions,
            [EventAction::Started as i32, EventAction::Exited as i32]
        );
        assert_eq!(r.containers, ["web"]);
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(r.from_seq, 7);
        assert_eq!(
            req(&["events", "-f", "type=image"]).map(|r| r.types),
            Ok(vec![ObjectType::Image as i32])
        );
        assert!(req(&["events", "-f", "type=volume"]).is_err());
        assert!(req(&["events", "-f", "event=exploded"]).is_err());
        assert!(req(&["events", "-f", "colour=red"]).is_err());
        assert!(req(&["events", "-f", "container"]).is_err());
    }

    #[test]
    fn parses_the_oldest_retained_seq() {
        assert_eq!(
            oldest_retained(
                "events before seq 42 are no longer retained; resubscribe with from_seq >= 42"
            ),
            Some(42)
        );
        assert_eq!(oldest_retained("nothing here"), None);
    }
}
