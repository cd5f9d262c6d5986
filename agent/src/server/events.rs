//! The Events service.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::events_server::Events;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::container::Manager;
use crate::events::EventBus;

/// Serves `berth.v1.Events`.
pub struct EventsService {
    bus: Arc<EventBus>,
    mgr: Arc<Manager>,
}

impl EventsService {
    /// Serves events from `bus`; `mgr` resolves container names and prefixes.
    pub fn new(bus: Arc<EventBus>, mgr: Arc<Manager>) -> Self {
        EventsService { bus, mgr }
    }
}

/// A subscriber's filters, resolved.
struct Filter {
    types: Vec<i32>,
    actions: Vec<i32>,
    /// Full ids and literal names to match.
    containers: Vec<String>,
    labels: HashMap<String, String>,
}

impl Filter {
    fn matches(&self, ev: &pb::Event) -> bool {
        (self.types.is_empty() || self.types.contains(&ev.r#type))
            && (self.actions.is_empty() || self.actions.contains(&ev.action))
            && (self.containers.is_empty()
                || (ev.r#type == pb::ObjectType::Container as i32
                    && self.containers.iter().any(|c| *c == ev.id || *c == ev.name)))
            && self.labels.iter().all(|(k, v)| {
                ev.labels
                    .get(k)
                    .is_some_and(|have| v.is_empty() || have == v)
            })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// How many events a subscriber reads per batch.
const BATCH: usize = 256;

#[tonic::async_trait]
impl Events for EventsService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        if req.snapshot && req.from_seq > 0 {
            return Err(Status::invalid_argument(
                "snapshot and from_seq cannot be combined",
            ));
        }
        let mut containers = Vec::new();
        for c in req.containers {
            // A prefix names the container it resolves to now; a name (or a
            // container not yet created) is matched literally, so filters can
            // be set up before the container exists.
            if let Ok(e) = self.mgr.get(&c) {
                containers.push(e.id.clone());
            }
            containers.push(c);
        }
        let filter = Filter {
            types: req.types,
            actions: req.actions,
            containers,
            labels: req.labels,
        };
        // The cursor is fixed before the response goes out, so "live" means
        // everything after the moment the subscription was accepted.
        let mut snapshot = Vec::new();
        let mut cursor = if req.snapshot {
            let parent = self.mgr.cgroups().parent().to_string();
            self.bus.at_position(|last| {
                for rec in self.mgr.list() {
                    let c = super::convert::container_to_proto(&rec, &parent);
                    snapshot.push(pb::Event {
                        seq: last,
                        r#type: pb::ObjectType::Container as i32,
                        action: pb::EventAction::Snapshot as i32,
                        id: c.id.clone(),
                        name: c.name.clone(),
                        labels: c.labels.clone(),
                        image: c.image.clone(),
                        container: Some(Box::new(c)),
                        ..Default::default()
                    });
                }
                snapshot.push(pb::Event {
                    seq: last,
                    action: pb::EventAction::SnapshotDone as i32,
                    ..Default::default()
                });
                last + 1
            })
        } else if req.from_seq > 0 {
            req.from_seq
        } else {
            self.bus.next_seq()
        };
        // Fail at once, with a proper status, when the start is gone.
        if let Err(gap) = self.bus.read(cursor, 1) {
            return Err(gap_status(gap.oldest));
        }
        let bus = self.bus.clone();
        let (tx, rx) = mpsc::channel(BATCH);
        tokio::spawn(async move {
            for ev in snapshot {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            let mut published = bus.watch();
            loop {
                let batch = match bus.read(cursor, BATCH) {
                    Ok(b) => b,
                    Err(gap) => {
                        // Only possible for a subscriber so slow that
                        // retention overtook it.
                        let _ = tx.send(Err(gap_status(gap.oldest))).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        changed = published.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                for ev in batch {
                    cursor = ev.seq + 1;
                    if filter.matches(&ev) && tx.send(Ok((*ev).clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn gap_status(oldest: u64) -> Status {
    Status::out_of_range(format!(
        "events before seq {oldest} are no longer retained; resubscribe with from_seq >= {oldest}"
    ))
}
