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
    /// A CRI pod sandbox.
    Pod,
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
    /// A process was started in the container ([`Event::exec`]).
    ExecStarted,
    /// An exec process ended ([`Event::exec`], with its exit).
    ExecExited,
    /// A container got a new name ([`Event::old_name`] is the one it had).
    Renamed,
    /// A container joined a network ([`Event::container`]).
    Connected,
    /// A container left a network ([`Event::container`]).
    Disconnected,
    /// An image was built.
    Built,
}

/// Most command entries an exec event carries.
pub const EXEC_COMMAND_ENTRIES: usize = 16;
/// Most bytes of one command entry in an exec event.
pub const EXEC_COMMAND_ENTRY_BYTES: usize = 256;

/// An exec process, as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInfo {
    /// The exec's id.
    pub exec_id: String,
    /// Its command, cut to [`EXEC_COMMAND_ENTRIES`] entries of
    /// [`EXEC_COMMAND_ENTRY_BYTES`] (events are kept in memory and in the
    /// log: a 1 MiB argv must not be copied into each).
    pub command: Vec<String>,
    /// Whether the command was cut.
    pub truncated: bool,
    /// How it ended, for [`Action::ExecExited`].
    pub exit: Option<ExitRecord>,
}

impl ExecInfo {
    /// The exec `exec_id` of `argv`, its command cut to the event limits.
    pub fn new(exec_id: &str, argv: &[String]) -> Self {
        let mut truncated = argv.len() > EXEC_COMMAND_ENTRIES;
        let command = argv
            .iter()
            .take(EXEC_COMMAND_ENTRIES)
            .map(|a| {
                if a.len() <= EXEC_COMMAND_ENTRY_BYTES {
                    return a.clone();
                }
                truncated = true;
                let mut end = EXEC_COMMAND_ENTRY_BYTES;
                while !a.is_char_boundary(end) {
                    end -= 1;
                }
                a[..end].to_string()
            })
            .collect();
        ExecInfo {
            exec_id: exec_id.to_string(),
            command,
            truncated,
            exit: None,
        }
    }
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
    /// The exec process, for [`Action::ExecStarted`] and
    /// [`Action::ExecExited`].
    pub exec: Option<ExecInfo>,
    /// The name before, for [`Action::Renamed`].
    pub old_name: String,
    /// The container's id, for [`Action::Connected`] and
    /// [`Action::Disconnected`] (the event's own id is the network's).
    pub container: String,
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
            exec: None,
            old_name: String::new(),
            container: String::new(),
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

    /// Whether `action` (`ExecStarted` or `ExecExited`) of exec `exec_id`
    /// of container `id` was published, by this agent or the one before a
    /// restart (as far as the retained log goes). A sink that keeps no
    /// history says false.
    fn exec_announced(&self, _id: &str, _exec_id: &str, _action: Action) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_commands_are_cut_to_the_event_limits() {
        let short = ExecInfo::new("e", &["sh".into(), "-c".into()]);
        assert_eq!((short.command.len(), short.truncated), (2, false));
        let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let cut = ExecInfo::new("e", &many);
        assert_eq!(
            (cut.command.len(), cut.truncated),
            (EXEC_COMMAND_ENTRIES, true)
        );
        let long = ExecInfo::new("e", &["é".repeat(300)]);
        assert!(long.truncated);
        assert!(long.command[0].len() <= EXEC_COMMAND_ENTRY_BYTES);
    }
}
