//! GetContainerEvents (kubelet's "evented PLEG"): berthd's event log
//! narrowed to pod containers and pod sandboxes, in CRI's terms, from each
//! subscriber's own cursor. A sandbox's events name it as their container,
//! as containerd's do: created and started at RunPodSandbox, stopped at
//! StopPodSandbox, deleted at RemovePodSandbox. A response carries the statuses of the moment it is sent, never
//! older than the event, as kubelet assumes of `created_at`. A subscriber
//! [`MAX_LAG`] events behind, or too far behind to tell an event's
//! container, or whose next event the log lacks, gets an error that ends
//! its stream: kubelet relists then, where a silent gap would mislead it.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1::{Event, EventAction, ObjectType};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;

use super::api_file::v1 as cri;
use super::containers::view;
use crate::container::Manager;
use crate::events::{EventBus, Gap, StoredEvent};

/// The stream GetContainerEvents answers with.
pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

/// How many events of the log a subscriber may be behind.
pub const MAX_LAG: u64 = 4096;
/// Responses queued per subscriber; each holds a whole pod's statuses.
const QUEUE: usize = 16;
/// Events read from the log at once.
const BATCH: usize = 256;

/// The CRI events of a berth event (`Event.type`, `Event.action`), if
/// any. RESTARTING follows an EXITED, and a paused container is RUNNING to
/// CRI. A pod is created ready (running), so its CREATED is two.
pub fn event_types(object: i32, action: i32) -> &'static [cri::ContainerEventType] {
    use cri::ContainerEventType as T;
    let Ok(action) = EventAction::try_from(action) else {
        return &[];
    };
    match ObjectType::try_from(object) {
        Ok(ObjectType::Container) => match action {
            EventAction::Created => &[T::ContainerCreatedEvent],
            EventAction::Started => &[T::ContainerStartedEvent],
            EventAction::Exited => &[T::ContainerStoppedEvent],
            EventAction::Removed => &[T::ContainerDeletedEvent],
            _ => &[],
        },
        Ok(ObjectType::Pod) => match action {
            EventAction::Created => &[T::ContainerCreatedEvent, T::ContainerStartedEvent],
            EventAction::Stopping => &[T::ContainerStoppedEvent],
            EventAction::Removed => &[T::ContainerDeletedEvent],
            _ => &[],
        },
        _ => &[],
    }
}

/// What is known of an event's container.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A pod's container (existing or recently removed): its pod's id and
    /// its status, the last known one when removed.
    Pod(String, Option<Box<cri::ContainerStatus>>),
    /// A container of berth's own API.
    NotPod,
    /// Neither existing nor remembered as removed.
    Unknown,
}

/// Where a subscriber looks containers up (berthd: the [`Manager`]).
pub trait PodContainers: Send + Sync {
    /// Container `id` (a full id).
    fn find(&self, id: &str) -> Found;
    /// The statuses of the existing containers of pod `pod_id`.
    fn statuses_of(&self, pod_id: &str) -> Vec<cri::ContainerStatus>;
}

impl PodContainers for Manager {
    fn find(&self, id: &str) -> Found {
        // A removed entry stays findable a while with its last record, so
        // a DELETED event still names its pod and last status.
        let entry = match self.get_or_removed(id) {
            Ok(e) if e.id == id => e,
            _ => return Found::Unknown,
        };
        let rec = entry.lock_record();
        match &rec.spec.pod {
            Some(p) => Found::Pod(p.id.clone(), view::to_cri_status(&rec).map(Box::new)),
            None => Found::NotPod,
        }
    }

    fn statuses_of(&self, pod_id: &str) -> Vec<cri::ContainerStatus> {
        let entries = self.entries();
        let of_pod = |rec: &crate::container::record::Record| {
            rec.spec.pod.as_ref().filter(|p| p.id == pod_id)?;
            view::to_cri_status(rec)
        };
        entries
            .iter()
            .filter_map(|e| of_pod(&e.lock_record()))
            .collect()
    }
}

/// A pod's status by its id (`None`: no such pod).
type PodStatus = dyn Fn(&str) -> Option<cri::PodSandboxStatus> + Send + Sync;

/// Serves GetContainerEvents from the event bus.
#[derive(Clone)]
pub struct ContainerEvents {
    bus: Arc<EventBus>,
    containers: Arc<dyn PodContainers>,
    pod_status: Arc<PodStatus>,
}

impl ContainerEvents {
    /// Events of `bus` about pod containers, looked up in `containers`,
    /// with their pod's status from `pod_status`.
    pub fn new(
        bus: Arc<EventBus>,
        containers: Arc<dyn PodContainers>,
        pod_status: impl Fn(&str) -> Option<cri::PodSandboxStatus> + Send + Sync + 'static,
    ) -> Self {
        let pod_status = Arc::new(pod_status);
        ContainerEvents {
            bus,
            containers,
            pod_status,
        }
    }

    /// The events published from now on, until the client leaves or falls
    /// behind (an error ends the stream then).
    pub fn subscribe(&self) -> EventStream {
        // Watched before the cursor is fixed: nothing published in between
        // goes unnoticed.
        let published = self.bus.watch();
        let cursor = self.bus.next_seq();
        let (tx, rx) = mpsc::channel(QUEUE);
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.follow(cursor, published, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    /// Sends the responses to the events from `cursor` on; Ok once the
    /// client has left.
    async fn follow(
        &self,
        mut cursor: u64,
        mut published: watch::Receiver<u64>,
        tx: &mpsc::Sender<Result<cri::ContainerEventResponse, Status>>,
    ) -> Result<(), Status> {
        loop {
            let batch = self.bus.read(cursor, BATCH).map_err(gap)?;
            if batch.is_empty() {
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return Ok(()) },
                    _ = tx.closed() => return Ok(()),
                }
                continue;
            }
            for ev in batch {
                cursor = ev.seq + 1;
                let kinds = event_types(ev.r#type, ev.action);
                if kinds.is_empty() {
                    continue;
                }
                let last = *published.borrow();
                check_lag(ev.seq, last)?;
                for &kind in kinds {
                    if let Some(resp) = self.response(kind, &ev)? {
                        if tx.send(Ok(resp)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// The response to `ev`; `None` when its container is not a pod's.
    fn response(
        &self,
        kind: cri::ContainerEventType,
        ev: &StoredEvent,
    ) -> Result<Option<cri::ContainerEventResponse>, Status> {
        // berthd encoded it itself; skipping it would lose it silently.
        let e = Event::decode(ev.encoded.bytes())
            .map_err(|e| Status::internal(format!("decoding event {}: {e}", ev.seq)))?;
        let created_at = e.time.map_or(0, |t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.nanos))
        });
        if e.r#type == ObjectType::Pod as i32 {
            // The sandbox itself: its status (none once removed) and its
            // containers'.
            return Ok(Some(cri::ContainerEventResponse {
                container_event_type: kind as i32,
                created_at,
                pod_sandbox_status: (self.pod_status)(&e.id),
                containers_statuses: self.containers.statuses_of(&e.id),
                container_id: e.id,
            }));
        }
        let (pod_id, last) = match self.containers.find(&e.id) {
            Found::Pod(pod_id, last) => (pod_id, last),
            Found::NotPod => return Ok(None),
            // Only one far behind meets a container no longer remembered,
            // which may have been a pod's.
            Found::Unknown => {
                return Err(Status::aborted(format!(
                    "GetContainerEvents fell too far behind to tell whether container {} \
                     (event {}) was a pod's: relist and subscribe again",
                    e.id, ev.seq
                )))
            }
        };
        let mut statuses = self.containers.statuses_of(&pod_id);
        // A removed container is no longer among them: it gets its last.
        if let Some(s) = last.filter(|s| statuses.iter().all(|c| c.id != s.id)) {
            statuses.push(*s);
        }
        Ok(Some(cri::ContainerEventResponse {
            container_event_type: kind as i32,
            created_at,
            pod_sandbox_status: (self.pod_status)(&pod_id),
            containers_statuses: statuses,
            container_id: e.id,
        }))
    }
}

/// An error when event `seq` is more than [`MAX_LAG`] behind the last one
/// published (`last`).
fn check_lag(seq: u64, last: u64) -> Result<(), Status> {
    let lag = last.saturating_sub(seq);
    if lag <= MAX_LAG {
        return Ok(());
    }
    Err(Status::resource_exhausted(format!(
        "GetContainerEvents is {lag} events behind berthd's event log (at most {MAX_LAG}): \
         relist and subscribe again"
    )))
}

/// Why the log cannot be read on, as the error that ends a stream.
fn gap(g: Gap) -> Status {
    match g {
        Gap::Retired { oldest } => Status::resource_exhausted(format!(
            "GetContainerEvents fell behind the event log's retention (oldest kept: {oldest}): \
             relist and subscribe again"
        )),
        Gap::Missing { seq } => Status::data_loss(format!(
            "event {seq} is not in berthd's event log (its write failed; berthd's log says \
             why): relist and subscribe again"
        )),
        Gap::Unreadable(e) => Status::internal(format!("reading berthd's event log: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri::ContainerEventType as T;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio_stream::StreamExt;
    use EventAction::*;

    #[test]
    fn only_container_and_pod_lifecycle_actions_are_cri_events() {
        let ty = |a: EventAction| event_types(ObjectType::Container as i32, a as i32);
        let want = [
            (Created, T::ContainerCreatedEvent),
            (Started, T::ContainerStartedEvent),
            (Exited, T::ContainerStoppedEvent),
            (Removed, T::ContainerDeletedEvent),
        ];
        for (a, t) in want {
            assert_eq!(ty(a), [t]);
        }
        for a in [Stopping, Killed, Restarting, Paused, ExecExited] {
            assert!(ty(a).is_empty(), "{a:?}");
        }
        let pod = |a: EventAction| event_types(ObjectType::Pod as i32, a as i32);
        assert_eq!(
            pod(Created),
            [T::ContainerCreatedEvent, T::ContainerStartedEvent]
        );
        assert_eq!(pod(Stopping), [T::ContainerStoppedEvent]);
        assert_eq!(pod(Removed), [T::ContainerDeletedEvent]);
        assert!(pod(Started).is_empty());
        assert!(event_types(ObjectType::Volume as i32, Created as i32).is_empty());
        assert!(check_lag(10, 10 + MAX_LAG).is_ok());
        let e = check_lag(10, 11 + MAX_LAG).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(gap(Gap::Missing { seq: 3 }).code(), tonic::Code::DataLoss);
    }

    fn status(id: &str) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.into(),
            ..Default::default()
        }
    }

    /// c1 of pod p1 (removed once the flag is set), b1 of berth's own API.
    #[derive(Default)]
    struct Fake(AtomicBool);

    impl PodContainers for Fake {
        fn find(&self, id: &str) -> Found {
            match id {
                "c1" => Found::Pod("p1".into(), Some(Box::new(status("c1")))),
                "b1" => Found::NotPod,
                _ => Found::Unknown,
            }
        }
        fn statuses_of(&self, pod_id: &str) -> Vec<cri::ContainerStatus> {
            let live = pod_id == "p1" && !self.0.load(Ordering::SeqCst);
            live.then(|| status("c1")).into_iter().collect()
        }
    }

    fn setup() -> (tempfile::TempDir, Arc<EventBus>, Arc<Fake>, ContainerEvents) {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(EventBus::open(dir.path(), 100_000, "t".into()).unwrap());
        let fake = Arc::new(Fake::default());
        let pod = |id: &str| cri::PodSandboxStatus {
            id: id.into(),
            ..Default::default()
        };
        let events = ContainerEvents::new(bus.clone(), fake.clone(), move |id: &str| {
            (id == "p1").then(|| pod(id))
        });
        (dir, bus, fake, events)
    }

    fn publish(bus: &EventBus, action: EventAction, id: &str) {
        bus.publish(Event {
            r#type: ObjectType::Container as i32,
            action: action as i32,
            id: id.into(),
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn pod_container_events_stream_from_the_subscription_on() {
        let (_dir, bus, fake, events) = setup();
        publish(&bus, Started, "c1");
        let mut stream = events.subscribe();
        publish(&bus, Created, "b1");
        for a in [Created, Started, Stopping, Exited] {
            publish(&bus, a, "c1");
        }
        fake.0.store(true, Ordering::SeqCst);
        publish(&bus, Removed, "c1");
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let r = stream.next().await.unwrap().unwrap();
            assert_eq!(r.container_id, "c1");
            assert!(r.created_at > 1_000_000_000_000_000_000, "in ns");
            assert_eq!(r.pod_sandbox_status.unwrap().id, "p1");
            // Once removed, by its last known status.
            assert_eq!(r.containers_statuses, vec![status("c1")]);
            kinds.push(r.container_event_type);
        }
        let want = [0, 1, 2, 3].map(|i| T::try_from(i).unwrap() as i32);
        assert_eq!(kinds, want, "created, started, stopped, deleted");
    }

    #[tokio::test]
    async fn a_sandbox_is_its_own_events_container() {
        let (_dir, bus, _fake, events) = setup();
        let mut stream = events.subscribe();
        for a in [Created, Stopping, Removed] {
            bus.publish(Event {
                r#type: ObjectType::Pod as i32,
                action: a as i32,
                id: "p1".into(),
                ..Default::default()
            });
        }
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let r = stream.next().await.unwrap().unwrap();
            assert_eq!(r.container_id, "p1");
            assert_eq!(r.pod_sandbox_status.unwrap().id, "p1");
            assert_eq!(r.containers_statuses, vec![status("c1")]);
            kinds.push(r.container_event_type);
        }
        let want = [0, 1, 2, 3].map(|i| T::try_from(i).unwrap() as i32);
        assert_eq!(kinds, want, "created, started, stopped, deleted");
    }

    #[tokio::test]
    async fn a_subscriber_held_up_loses_nothing_and_one_too_far_behind_gets_an_error() {
        let (_dir, bus, _fake, events) = setup();
        let mut stream = events.subscribe();
        for _ in 0..10 * QUEUE {
            publish(&bus, Started, "c1");
        }
        for _ in 0..10 * QUEUE {
            assert!(stream.next().await.unwrap().is_ok());
        }
        for _ in 0..MAX_LAG + 2 {
            publish(&bus, Started, "c1");
        }
        let rest: Vec<_> = stream.collect().await;
        let code = rest.last().unwrap().as_ref().map_err(|e| e.code());
        assert_eq!(code.err(), Some(tonic::Code::ResourceExhausted));

        // A container neither there nor remembered may have been a pod's.
        let mut stream = events.subscribe();
        publish(&bus, Exited, "gone");
        let e = stream.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        assert!(stream.next().await.is_none());
    }
}
