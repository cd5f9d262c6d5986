//! The agent's event bus: one ordered sequence of lifecycle events.
//!
//! Publishing assigns the sequence number and hands the event to live
//! subscribers under one lock, so sequence order is publication order and a
//! subscriber that replays recent events and then goes live sees no gap and
//! no duplicate at the seam. Recent events are kept in memory for replay
//! (`from_seq`); a durable log is the next step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use berth::v1::Event;
use tokio::sync::broadcast;

/// How many recent events are kept for replay.
pub const RETAINED: usize = 10_000;
/// How far a live subscriber may fall behind before it is cut off (it can
/// resubscribe with `from_seq` and lose nothing still retained).
const LIVE_BUFFER: usize = 4096;

/// Ordered publication of events.
pub struct EventBus {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<Event>>,
    instance_id: String,
}

struct Inner {
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
}

/// A new subscription: stored events to replay, then the live feed.
pub struct Subscription {
    /// Events with seq >= the requested one, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Everything published after the replay.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The requested `from_seq` is older than what is retained.
#[derive(Debug)]
pub struct Gap {
    /// Oldest sequence number still available.
    pub oldest: u64,
}

impl EventBus {
    /// A bus whose events carry `instance_id`.
    pub fn new(instance_id: String) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        EventBus {
            inner: Mutex::new(Inner {
                next_seq: 1,
                recent: VecDeque::new(),
            }),
            live,
            instance_id,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner inconsistent
        // (every update is a single push), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps `ev` with the next sequence number, the time and the instance
    /// id, and publishes it. Returns the sequence number.
    pub fn publish(&self, mut ev: Event) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        ev.seq = seq;
        ev.time = Some(prost_types::Timestamp::from(SystemTime::now()));
        ev.instance_id = self.instance_id.clone();
        let ev = Arc::new(ev);
        inner.recent.push_back(ev.clone());
        if inner.recent.len() > RETAINED {
            inner.recent.pop_front();
        }
        // No receivers is fine: nobody is listening.
        let _ = self.live.send(ev);
        seq
    }

    /// Subscribes; with `from_seq > 0` also returns the retained events from
    /// there on.
    pub fn subscribe(&self, from_seq: u64) -> Result<Subscription, Gap> {
        let inner = self.lock();
        let live = self.live.subscribe();
        if from_seq == 0 {
            return Ok(Subscription {
                replay: Vec::new(),
                live,
            });
        }
        let oldest = inner
            .recent
            .front()
            .map(|e| e.seq)
            .unwrap_or(inner.next_seq);
        if from_seq < oldest {
            return Err(Gap { oldest });
        }
        let replay = inner
            .recent
            .iter()
            .filter(|e| e.seq >= from_seq)
            .cloned()
            .collect();
        Ok(Subscription { replay, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> Event {
        Event {
            name: name.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_duplicate() {
        let bus = EventBus::new("i".into());
        for n in ["a", "b", "c"] {
            bus.publish(ev(n));
        }
        let mut sub = bus.subscribe(2).unwrap();
        bus.publish(ev("d"));
        let replayed: Vec<u64> = sub.replay.iter().map(|e| e.seq).collect();
        assert_eq!(replayed, vec![2, 3]);
        assert_eq!(sub.live.recv().await.unwrap().seq, 4);
    }

    #[test]
    fn too_old_is_a_gap() {
        let bus = EventBus::new("i".into());
        for _ in 0..RETAINED + 5 {
            bus.publish(ev("x"));
        }
        let gap = bus.subscribe(1).err().unwrap();
        assert_eq!(gap.oldest, 6);
    }
}
