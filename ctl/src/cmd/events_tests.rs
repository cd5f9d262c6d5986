//! Tests of `events` (ctl/src/cmd/events.rs).

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
    assert_eq!(
        req(&["events", "-f", "type=volume"]).map(|r| r.types),
        Ok(vec![ObjectType::Volume as i32])
    );
    assert_eq!(
        req(&["events", "-f", "type=network"]).map(|r| r.types),
        Ok(vec![ObjectType::Network as i32])
    );
    assert!(req(&["events", "-f", "type=plugin"]).is_err());
    assert!(req(&["events", "-f", "event=exploded"]).is_err());
    assert!(req(&["events", "-f", "colour=red"]).is_err());
    assert!(req(&["events", "-f", "container"]).is_err());
}

#[test]
fn out_of_range_reads_the_details_not_the_message() {
    use tonic_types::{ErrorDetails, StatusExt};
    let status = |reason: &str, key: &str, value: &str, msg: &str| {
        let mut d = ErrorDetails::new();
        d.set_error_info(
            reason,
            "berth.dev",
            [(key.to_string(), value.to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
        Status::with_error_details(Code::OutOfRange, msg, d)
    };
    assert_eq!(
        out_of_range(&status(
            "EVENTS_NOT_RETAINED",
            "oldest_seq",
            "42",
            "resubscribe with from_seq >= 42"
        )),
        Some(OutOfRange::Retired { oldest: 42 })
    );
    assert_eq!(
        out_of_range(&status(
            "EVENTS_NOT_YET_PUBLISHED",
            "next_seq",
            "7",
            "event 90 has not been published: the next is 7; resubscribe with from_seq <= 7"
        )),
        Some(OutOfRange::NotYetPublished { next: 7 })
    );
    assert_eq!(out_of_range(&Status::out_of_range("no details")), None);
}

#[test]
fn every_action_is_a_filter() {
    for a in ACTIONS {
        let word = output::action_word(a as i32);
        assert_eq!(
            req(&["events", "-f", &format!("event={word}")]).map(|r| r.actions),
            Ok(vec![a as i32])
        );
    }
    assert_eq!(action("restart"), Some(EventAction::Restarting));
    assert_eq!(action("unpause"), Some(EventAction::Resumed));
    assert_eq!(action("snapshot"), None);
}

#[test]
fn a_time_window_replays_from_the_start() {
    assert_eq!(
        req(&["events", "--since", "10m"]).map(|r| r.from_seq),
        Ok(1)
    );
    assert_eq!(
        req(&["events", "--until", "2024-05-01T10:00:00Z"]).map(|r| r.from_seq),
        Ok(1)
    );
    assert!(req(&["events", "--since", "10m", "--since-seq", "3"]).is_err());
}
