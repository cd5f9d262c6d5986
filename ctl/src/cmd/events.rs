//! `events`: the agents' event streams, one line per event, followed
//! across agent restarts and network breaks.

use std::time::{Duration, SystemTime};

use berth::v1::{events_client::EventsClient, Event, EventAction, ObjectType, SubscribeRequest};
use prost_types::Timestamp;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::fan::prefix_width;
use crate::cli::EventsArgs;
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet, Member};
use crate::output::{self, print_json_line};
use crate::parse;

/// Every action an event filter can name (the snapshot markers are not
/// events of their own).
const ACTIONS: [EventAction; 18] = [
    EventAction::Created,
    EventAction::Started,
    EventAction::Stopping,
    EventAction::Killed,
    EventAction::Exited,
    EventAction::Removed,
    EventAction::Imported,
    EventAction::Pulled,
    EventAction::Paused,
    EventAction::Resumed,
    EventAction::Restarting,
    EventAction::Updated,
    EventAction::ExecStarted,
    EventAction::ExecExited,
    EventAction::Renamed,
    EventAction::Connected,
    EventAction::Disconnected,
    EventAction::Built,
];

/// Parses an action filter: the words the table prints (`restarting`), or
/// Docker's verbs (`start`, `die`, `destroy`, `unpause`), so muscle memory
/// works.
pub fn action(s: &str) -> Option<EventAction> {
    let word = match s {
        "create" => "created",
        "start" => "started",
        "stop" => "stopping",
        "kill" => "killed",
        "exit" | "die" => "exited",
        "remove" | "destroy" | "delete" => "removed",
        "import" | "load" => "imported",
        "pull" => "pulled",
        "pause" => "paused",
        "unpause" | "resume" => "resumed",
        "restart" => "restarting",
        "update" => "updated",
        "exec_start" => "exec-started",
        "exec_die" => "exec-exited",
        "rename" => "renamed",
        "connect" => "connected",
        "disconnect" => "disconnected",
        "build" => "built",
        other => other,
    };
    ACTIONS
        .into_iter()
        .find(|a| output::action_word(*a as i32) == word)
}

/// Builds the Subscribe request from `events` flags.
pub fn subscribe_request(args: &EventsArgs) -> Result<SubscribeRequest> {
    // A time window replays the log from its start (the oldest retained
    // event when 1 is gone): the Events API selects by seq, not by time.
    let windowed = args.since.is_some() || args.until.is_some();
    let mut req = SubscribeRequest {
        from_seq: args.since_seq.unwrap_or(if windowed { 1 } else { 0 }),
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
                    "volume" => ObjectType::Volume,
                    "network" => ObjectType::Network,
                    "pod" => ObjectType::Pod,
                    _ => {
                        return Err(Error::Message(format!(
                        "invalid type filter {:?} (expected container, image, network, pod or volume)",
                        value.chars().take(64).collect::<String>()
                    )))
                    }
                };
                req.types.push(t as i32);
            }
            "event" | "action" => {
                let a = action(value).ok_or_else(|| {
                    let words: Vec<_> = ACTIONS
                        .iter()
                        .map(|a| output::action_word(*a as i32))
                        .collect();
                    Error::Message(format!(
                        "invalid event filter {:?} (expected one of {})",
                        value.chars().take(64).collect::<String>(),
                        words.join(", ")
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
    let window = Window::parse(&args, SystemTime::now())?;
    let follows = f.members.iter().map(|m| follow(f, m, req.clone(), window));
    for r in futures_util::future::join_all(follows).await {
        r?;
    }
    Ok(())
}

/// First wait before reconnecting; doubled after each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What an OUT_OF_RANGE answer to Subscribe means, from its
/// `google.rpc.ErrorInfo` (reason and metadata, never the message).
#[derive(Debug, PartialEq)]
pub enum OutOfRange {
    /// Events before `oldest` are no longer retained (EVENTS_NOT_RETAINED).
    Retired {
        /// The oldest seq the agent still has.
        oldest: u64,
    },
    /// The seq asked for has not been published: the agent's log is not the
    /// one the cursor came from (EVENTS_NOT_YET_PUBLISHED).
    NotYetPublished {
        /// The next seq the agent will publish.
        next: u64,
    },
}

/// Reads an OUT_OF_RANGE status of Subscribe; None for anything else.
pub fn out_of_range(st: &Status) -> Option<OutOfRange> {
    if st.code() != Code::OutOfRange {
        return None;
    }
    let info = st.get_details_error_info()?;
    let seq = |key: &str| info.metadata.get(key)?.parse::<u64>().ok();
    match info.reason.as_str() {
        "EVENTS_NOT_RETAINED" => Some(OutOfRange::Retired {
            oldest: seq("oldest_seq")?,
        }),
        "EVENTS_NOT_YET_PUBLISHED" => Some(OutOfRange::NotYetPublished {
            next: seq("next_seq")?,
        }),
        _ => None,
    }
}

/// The time window of `--since` and `--until`, as (seconds, nanos).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    since: Option<(i64, i32)>,
    until: Option<(i64, i32)>,
}

fn key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

impl Window {
    /// The window of `args`, relative times counted back from `now`.
    pub fn parse(args: &EventsArgs, now: SystemTime) -> Result<Window> {
        let at = |s: &Option<String>| -> Result<Option<(i64, i32)>> {
            s.as_deref()
                .map(|s| {
                    parse::since(s, now)
                        .map(|t| key(&t))
                        .map_err(Error::Message)
                })
                .transpose()
        };
        let w = Window {
            since: at(&args.since)?,
            until: at(&args.until)?,
        };
        if let (Some(s), Some(u)) = (w.since, w.until) {
            if u < s {
                return Err(Error::Message("--until is before --since".into()));
            }
        }
        Ok(w)
    }

    fn is_set(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    fn before_since(&self, e: &Event) -> bool {
        match (self.since, &e.time) {
            (Some(s), Some(t)) => key(t) < s,
            _ => false,
        }
    }

    fn after_until(&self, e: &Event) -> bool {
        match (self.until, &e.time) {
            (Some(u), Some(t)) => key(t) > u,
            _ => false,
        }
    }

    /// When `--until` comes, on the tokio clock; None without it.
    fn until_instant(&self) -> Option<tokio::time::Instant> {
        let (secs, nanos) = self.until?;
        let at = std::time::UNIX_EPOCH
            + Duration::from_secs(secs.max(0) as u64)
            + Duration::from_nanos(nanos.max(0) as u64);
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }
}

/// Whether `e` passes the filters of `req`, checked here rather than by
/// the agent with `--until` (see `follow`). Containers match by full id,
/// id prefix or name.
fn matches(req: &SubscribeRequest, e: &Event) -> bool {
    (req.types.is_empty() || req.types.contains(&e.r#type))
        && (req.actions.is_empty() || req.actions.contains(&e.action))
        && (req.containers.is_empty()
            || (e.r#type == ObjectType::Container as i32
                && req
                    .containers
                    .iter()
                    .any(|c| e.id.starts_with(c.as_str()) || e.name == *c)))
        && req
            .labels
            .iter()
            .all(|(k, v)| e.labels.get(k).is_some_and(|l| v.is_empty() || l == v))
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
    window: Window,
    /// With `--until`: the filters, applied here, so that every event
    /// comes through and `last` reaches `head`.
    local_filter: Option<SubscribeRequest>,
    /// With `--until`: the last event published when the command started.
    head: Option<u64>,
    /// `--until` has passed on the clock.
    past_until: bool,
    /// Nothing more to print: `--until` is reached.
    done: bool,
}

/// Follows one host until an error ends it (only on one agent).
async fn follow(f: &Fleet, m: &Member, mut req: SubscribeRequest, window: Window) -> Result<()> {
    // With --until the command ends once the clock has passed it and every
    // event published before is printed. The agent filters and so never
    // says when its replay is over: take the filters here, and learn the
    // last published seq (`head`) to know when the stream has caught up.
    let (local_filter, head) = if window.until.is_some() {
        let filter = SubscribeRequest {
            from_seq: 0,
            snapshot: false,
            ..req.clone()
        };
        req = SubscribeRequest {
            from_seq: req.from_seq,
            ..Default::default()
        };
        (Some(filter), last_published(m).await)
    } else {
        (None, None)
    };
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
        window,
        local_filter,
        head,
        past_until: false,
        done: false,
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
        if s.done {
            return Ok(());
        }
        match &err {
            // Dropped for falling behind: the cursor says where to pick up.
            Error::Status(st) if st.code() == Code::ResourceExhausted => continue,
            Error::Status(st) => match out_of_range(st) {
                // A time window starts at the oldest event retained.
                Some(OutOfRange::Retired { oldest }) if s.window.is_set() && s.last == Some(0) => {
                    s.last = Some(oldest.saturating_sub(1));
                    continue;
                }
                Some(OutOfRange::Retired { oldest }) if !f.is_single() => {
                    eprintln!(
                        "berthctl: {}events {}..{} are no longer retained by the agent and were lost",
                        s.who,
                        s.last.map_or(1, |l| l + 1),
                        oldest.saturating_sub(1)
                    );
                    s.last = Some(oldest.saturating_sub(1));
                    continue;
                }
                Some(OutOfRange::NotYetPublished { next }) if !f.is_single() => {
                    eprintln!(
                        "berthctl: {}the agent's event sequence went back from {} to {next} (its event log was reset); events in between may be missing",
                        s.who,
                        s.last.unwrap_or(0),
                    );
                    s.last = Some(next.saturating_sub(1));
                    continue;
                }
                _ => {}
            },
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

/// The seq of the last event `m` has published, None if it cannot be
/// learnt. Subscribe answers a seq beyond the next one with OUT_OF_RANGE
/// and that next seq (EVENTS_NOT_YET_PUBLISHED): the cheapest way to ask.
async fn last_published(m: &Member) -> Option<u64> {
    let ch = m.channel().await.ok()?;
    let probe = SubscribeRequest {
        from_seq: u64::MAX,
        ..Default::default()
    };
    match EventsClient::new(ch).subscribe(probe).await {
        Err(st) => match out_of_range(&st)? {
            OutOfRange::NotYetPublished { next } => Some(next.saturating_sub(1)),
            OutOfRange::Retired { .. } => None,
        },
        Ok(_) => None,
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
        let deadline = self.window.until_instant();
        loop {
            if self.past_until && self.caught_up() {
                self.done = true;
                return Error::Exit(0);
            }
            let next = match deadline {
                Some(d) if !self.past_until => tokio::select! {
                    m = stream.message() => Some(m),
                    () = tokio::time::sleep_until(d) => None,
                },
                _ => Some(stream.message().await),
            };
            let Some(next) = next else {
                self.past_until = true;
                continue;
            };
            let e = match next {
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
            if self.window.after_until(&e) {
                self.done = true;
                return Error::Exit(0);
            }
            let wanted = self.local_filter.as_ref().is_none_or(|f| matches(f, &e));
            if wanted && !self.window.before_since(&e) {
                if let Err(err) = self.print(&e) {
                    return err;
                }
            }
        }
    }

    /// Every event published before the command started has been seen
    /// (always, when that could not be learnt).
    fn caught_up(&self) -> bool {
        self.head.is_none_or(|h| self.last.unwrap_or(0) >= h)
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
#[path = "events_tests.rs"]
mod tests;
