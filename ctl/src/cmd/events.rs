//! `events`: the agent's event stream, one line per event.

use std::time::Duration;

use berth::v1::{EventAction, ObjectType, SubscribeRequest};
use tonic::{Code, Status};

use berth::v1::events_client::EventsClient;

use crate::cli::EventsArgs;
use crate::error::{Error, Result};
use crate::fleet::{Fleet, Member};
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

/// `events`: prints events until interrupted.
///
/// berthctl keeps a cursor (the last sequence number it saw) and, when the
/// connection breaks or the agent restarts, reconnects with back-off and
/// resubscribes right after it, so nothing is skipped or printed twice.
/// Without `--since-seq` it learns the agent's current position from a
/// snapshot it does not print, so even a reconnect before the first event
/// misses nothing.
///
/// On many hosts, see [`super::events_merged`].
pub async fn events(f: &Fleet, args: EventsArgs) -> Result<()> {
    if !f.is_single() {
        return super::events_merged::events(f, args).await;
    }
    let (m, json) = (f.first()?, f.json());
    let mut req = subscribe_request(&args)?;
    let mut cursor: Option<u64> = (req.from_seq > 0).then(|| req.from_seq - 1);
    let mut delay = RECONNECT_FIRST;
    let mut warned = false;
    loop {
        match cursor {
            Some(seq) => {
                req.from_seq = seq + 1;
                req.snapshot = false;
            }
            None => {
                req.from_seq = 0;
                req.snapshot = true;
            }
        }
        let status = match subscribe_once(m, json, &req, &mut cursor).await {
            Ok(()) => Status::unavailable("the agent closed the stream"),
            Err(Error::Status(s)) => s,
            // Down for a restart: keep trying, once we have been connected.
            Err(e @ Error::Connect { .. }) if cursor.is_some() => {
                Status::unavailable(e.to_string())
            }
            Err(e) => return Err(e),
        };
        match status.code() {
            // The agent went away or is restarting: come back where we were.
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::ResourceExhausted => {}
            _ => return Err(status.into()),
        }
        if !warned {
            eprintln!(
                "berthctl: lost the event stream ({}); reconnecting",
                status.message()
            );
            warned = true;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// First wait before reconnecting.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between reconnects.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// One subscription: prints events and advances `cursor` until it breaks.
async fn subscribe_once(
    m: &Member,
    json: bool,
    req: &SubscribeRequest,
    cursor: &mut Option<u64>,
) -> Result<()> {
    let mut client = EventsClient::new(m.channel().await?);
    let mut stream = client.subscribe(req.clone()).await?.into_inner();
    while let Some(e) = stream.message().await? {
        if e.action == EventAction::Snapshot as i32 {
            continue;
        }
        *cursor = Some(e.seq);
        if e.action == EventAction::SnapshotDone as i32 {
            continue;
        }
        if json {
            print_json_line(&output::message_json(&e)?);
        } else {
            println!("{}", output::event_line(&e));
        }
    }
    Ok(())
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
}
