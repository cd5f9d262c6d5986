//! The runtime's own events, independent of any wire format.
//!
//! The runtime announces what happens through an [`EventSink`]; berthd's
//! sink is the [`EventBus`](super::EventBus), which turns them into
//! `berth.v1.Event`s (in [`super::wire`], the one place that does) and logs
//! and serves them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::monitor::ExitRecord;

/// What kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A user-defined network.
    Network,
    /// A volume.
    Volume,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Created.
    Created,
    /// Its process runs.
    Started,
    /// A stop began: the stop signal was sent.
    Stopping,
    /// A signal was sent ([`Event::signal`]).
    Killed,
    /// Its process ended ([`Event::exit`]).
    Exited,
    /// Removed.
    Removed,
    /// An image was imported.
    Imported,
    /// An image was pulled.
    Pulled,
    /// Frozen.
    Paused,
    /// Thawed.
    Resumed,
    /// The restart policy will start it again ([`Event::restart_attempt`],
    /// [`Event::restart_delay`]).
    Restarting,
    /// Its limits or restart policy changed.
    Updated,
}

/// One event, as the runtime announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it is about.
    pub object: Object,
    /// What happened.
    pub action: Action,
    /// The object's id.
    pub id: String,
    /// Its name (a container's name, an image's reference).
    pub name: String,
    /// A container's labels.
    pub labels: BTreeMap<String, String>,
    /// The image (as the container's spec names it, or an image's digest).
    pub image: String,
    /// How the process ended, for [`Action::Exited`].
    pub exit: Option<ExitRecord>,
    /// The signal sent, for [`Action::Killed`] and [`Action::Stopping`].
    pub signal: i32,
    /// Which restart this is, for [`Action::Restarting`].
    pub restart_attempt: u32,
    /// How long until it, for [`Action::Restarting`].
    pub restart_delay: Duration,
}

impl Event {
    /// An event with only its object, action and id set.
    pub fn new(object: Object, action: Action, id: impl Into<String>) -> Self {
        Event {
            object,
            action,
            id: id.into(),
            name: String::new(),
            labels: BTreeMap::new(),
            image: String::new(),
            exit: None,
            signal: 0,
            restart_attempt: 0,
            restart_delay: Duration::ZERO,
        }
    }
}

/// Where the runtime announces events. Publishing is ordered and durable
/// (the sink decides how): when `publish` returns, subscribers can see it.
pub trait EventSink: Send + Sync {
    /// Announces `ev`; returns the sequence number it was given.
    fn publish(&self, ev: Event) -> u64;

    /// Whether an event `action` (`Started` or `Exited`) of container `id`
    /// was published at or after `since` (unix nanos), by this agent or,
    /// before a restart of berthd, by the one before it. Given the start of
    /// a run, it says whether that run's start or exit was announced: the
    /// key is the run, not a finish time a lost exit would make up anew.
    fn announced_since(&self, id: &str, action: Action, since: i64) -> bool;
}
