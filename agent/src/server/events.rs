//! The Events service.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::events_server::Events;
use tokio::sync::{broadcast, mpsc};
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

#[tonic::async_trait]
impl Events for EventsService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
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
        let sub = self.bus.subscribe(req.from_seq).map_err(|gap| {
            Status::out_of_range(format!(
                "events before seq {} are no longer retained; resubscribe with from_seq >= {}",
                gap.oldest, gap.oldest
            ))
        })?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut last = 0;
            for ev in sub.replay {
                last = ev.seq;
                if filter.matches(&ev) && tx.send(Ok((*ev).clone())).await.is_err() {
                    return;
                }
            }
            let mut live = sub.live;
            loop {
                tokio::select! {
                    got = live.recv() => match got {
                        Ok(ev) => {
                            if ev.seq <= last {
                                continue;
                            }
                            last = ev.seq;
                            if filter.matches(&ev) && tx.send(Ok((*ev).clone())).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx
                                .send(Err(Status::resource_exhausted(format!(
                                    "subscriber fell behind after seq {last}; resubscribe with from_seq={}",
                                    last + 1
                                ))))
                                .await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
