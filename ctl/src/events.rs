//! `events`: the agent's event stream, one line per event.

use berth::v1::{EventAction, ObjectType, SubscribeRequest};
use tonic::Code;

use crate::cli::EventsArgs;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
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

/// `events`: prints events until interrupted or the agent ends the stream.
///
/// When the agent drops berthctl for falling behind (RESOURCE_EXHAUSTED),
/// berthctl resubscribes after the last event it printed, so no event is
/// skipped or printed twice.
pub async fn events(ctx: &Ctx, args: EventsArgs) -> Result<()> {
    let mut req = subscribe_request(&args)?;
    let mut client = ctx.events().await?;
    let mut last_seq: Option<u64> = None;
    loop {
        let mut stream = client.subscribe(req.clone()).await?.into_inner();
        let status = loop {
            match stream.message().await {
                Ok(Some(e)) => {
                    last_seq = Some(e.seq);
                    if ctx.json() {
                        print_json_line(&output::event_json(&e));
                    } else {
                        println!("{}", output::event_line(&e));
                    }
                }
                Ok(None) => return Ok(()),
                Err(s) => break s,
            }
        };
        match (status.code(), last_seq) {
            (Code::ResourceExhausted, Some(seq)) => req.from_seq = seq + 1,
            _ => return Err(status.into()),
        }
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
        let Command::Events(e) = cli.command else {
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
