//! `events` across many hosts: one merged live stream, every event tagged with
//! its host. Each host has its own resume cursor (the next sequence number
//! it owes us); when a stream breaks (agent restarted, network dropped),
//! berthctl reconnects with exponential backoff and resubscribes from that
//! cursor, so with the agent's durable event log nothing is lost or
//! repeated. Events of one host stay in their order; hosts interleave as
//! their events arrive.

use std::rc::Rc;
use std::time::Duration;

use berth::v1::{events_client::EventsClient, SubscribeRequest};
use tonic::Code;

use super::events::subscribe_request;
use crate::cli::EventsArgs;
use crate::error::Error;
use crate::fleet::{with_host, Fleet, Member};
use crate::output::{self, print_json_line};

/// First wait before reconnecting; doubled after each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `events` on many hosts, until interrupted.
pub async fn events(f: &Fleet, args: EventsArgs) -> crate::error::Result<()> {
    let req = subscribe_request(&args)?;
    let width = f
        .members
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0);
    let follows = f
        .members
        .iter()
        .map(|m| follow_host(f, m.clone(), req.clone(), width));
    futures_util::future::join_all(follows).await;
    Ok(())
}

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

/// Follows one host forever, reconnecting with backoff.
async fn follow_host(f: &Fleet, m: Rc<Member>, req: SubscribeRequest, width: usize) {
    // The next sequence number wanted from this host; 0 means "live only"
    // (no event seen yet and no --since-seq).
    let mut cursor = req.from_seq;
    let mut backoff = MIN_BACKOFF;
    let mut down = false;
    loop {
        let err = stream_once(f, &m, &req, &mut cursor, width, &mut down, &mut backoff).await;
        match &err {
            // Dropped for falling behind: the cursor already says where to
            // pick up.
            Error::Status(s) if s.code() == Code::ResourceExhausted => continue,
            Error::Status(s) if s.code() == Code::OutOfRange => {
                let oldest = oldest_retained(s.message()).unwrap_or(0);
                eprintln!(
                    "berthctl: {}: events {cursor}..{} are no longer retained by the agent and were lost",
                    m.name,
                    oldest.saturating_sub(1)
                );
                cursor = oldest;
                continue;
            }
            _ => {}
        }
        if !down {
            eprintln!(
                "berthctl: {}: event stream lost ({err}); reconnecting",
                m.name
            );
            down = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription, until it breaks; returns why it broke.
async fn stream_once(
    f: &Fleet,
    m: &Member,
    req: &SubscribeRequest,
    cursor: &mut u64,
    width: usize,
    down: &mut bool,
    backoff: &mut Duration,
) -> Error {
    let ch = match m.channel().await {
        Ok(ch) => ch,
        Err(e) => return e,
    };
    let mut r = req.clone();
    r.from_seq = *cursor;
    let mut stream = match EventsClient::new(ch).subscribe(r).await {
        Ok(s) => s.into_inner(),
        Err(s) => return s.into(),
    };
    if *down {
        if *cursor > 0 {
            eprintln!(
                "berthctl: {}: reconnected; resuming at seq {cursor}",
                m.name
            );
        } else {
            eprintln!("berthctl: {}: reconnected", m.name);
        }
        *down = false;
    }
    *backoff = MIN_BACKOFF;
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                if *cursor > 0 && e.seq < *cursor {
                    // Only an agent whose event log was reset (not durable)
                    // numbers events again from 1.
                    eprintln!(
                        "berthctl: {}: the agent's event sequence went back from {} to {} (its event log was reset); events in between may be missing",
                        m.name,
                        *cursor - 1,
                        e.seq
                    );
                }
                *cursor = e.seq + 1;
                if f.json() {
                    match output::message_json(&e) {
                        Ok(v) => print_json_line(&with_host(&m.name, v)),
                        Err(e) => return e,
                    }
                } else {
                    println!("{:<width$}  {}", m.name, output::event_line(&e));
                }
            }
            Ok(None) => return Error::Message("the agent ended the stream".into()),
            Err(s) => return s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
