//! The container state machine: every lifecycle transition is decided here.

use serde::{Deserialize, Serialize};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its processes are frozen.
    Paused,
    /// Its process has ended.
    Exited,
    /// Exited, and the restart policy will start it after a delay.
    Restarting,
}

/// Something that changes or needs a container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start its process.
    Start,
    /// Its process ended (or could not be started).
    Exit,
    /// Send it a signal.
    Signal,
    /// Freeze it.
    Pause,
    /// Thaw it.
    Resume,
    /// The restart policy schedules a start.
    ScheduleRestart,
    /// A client stops it: ends a pending restart, or stops the process.
    Stop,
    /// Its limits or restart policy change.
    Update,
    /// It gets a new name.
    Rename,
    /// The container's process could not be set up or executed: a start
    /// that ends as an exit before it ran.
    ExecFailed,
    /// A scheduled restart could not start it: it stays exited.
    AbandonRestart,
    /// Delete it (force kills a running one first).
    Remove {
        /// Whether the caller allows killing.
        force: bool,
    },
}

/// What a transition does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Go to this state.
    To(State),
    /// The container ceases to exist.
    Gone,
    /// Kill it first, then remove it.
    KillThenRemove,
    /// Nothing changes (the operation applies without a transition).
    Stay,
}

/// An operation the state does not allow, with a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container is {state}: cannot {op}")]
pub struct InvalidTransition {
    /// Current state.
    pub state: &'static str,
    /// What was attempted.
    pub op: &'static str,
}

impl Op {
    /// Its name, for crash points (`commit:<name>:<stage>`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Exit => "exit",
            Op::Signal => "signal",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::ScheduleRestart => "schedulerestart",
            Op::Stop => "stop",
            Op::Update => "update",
            Op::Rename => "rename",
            Op::ExecFailed => "execfailed",
            Op::AbandonRestart => "abandonrestart",
            Op::Remove { .. } => "remove",
        }
    }
}

impl State {
    /// Lower-case name, as users see it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
            State::Restarting => "restarting",
        }
    }

    /// Whether the container has live processes.
    pub fn is_live(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }

    /// The transition table.
    pub fn apply(self, op: Op) -> Result<Outcome, InvalidTransition> {
        use Outcome::*;
        use State::*;
        let invalid = |op| {
            Err(InvalidTransition {
                state: self.as_str(),
                op,
            })
        };
        match (self, op) {
            (Created | Exited | Restarting, Op::Start) => Ok(To(Running)),
            (Running | Paused, Op::Start) => invalid("start it (it is already running)"),
            // A start that fails before exec goes straight to Exited.
            (Running | Paused | Created | Restarting, Op::Exit) => Ok(To(Exited)),
            (Exited, Op::Exit) => invalid("record an exit twice"),
            (Running | Paused, Op::Signal) => Ok(Stay),
            (Created | Exited | Restarting, Op::Signal) => invalid("signal it (it is not running)"),
            (Running, Op::Pause) => Ok(To(Paused)),
            (Paused, Op::Pause) => invalid("pause it (it is already paused)"),
            (Created | Exited | Restarting, Op::Pause) => invalid("pause it (it is not running)"),
            (Paused, Op::Resume) => Ok(To(Running)),
            (_, Op::Resume) => invalid("resume it (it is not paused)"),
            (Exited, Op::ScheduleRestart) => Ok(To(Restarting)),
            (_, Op::ScheduleRestart) => invalid("schedule a restart (it has not exited)"),
            (_, Op::Update | Op::Rename) => Ok(Stay),
            (Created | Exited | Restarting, Op::ExecFailed) => Ok(To(Exited)),
            (Running | Paused, Op::ExecFailed) => invalid("fail to start it (it runs)"),
            (Restarting, Op::AbandonRestart) => Ok(To(Exited)),
            (_, Op::AbandonRestart) => invalid("abandon a restart (none is pending)"),
            (Restarting, Op::Stop) => Ok(To(Exited)),
            (Running | Paused, Op::Stop) => Ok(Stay),
            (Created | Exited, Op::Stop) => Ok(Stay),
            (Created | Exited | Restarting, Op::Remove { .. }) => Ok(Gone),
            (Running | Paused, Op::Remove { force: true }) => Ok(KillThenRemove),
            (Running | Paused, Op::Remove { force: false }) => {
                invalid("remove it (stop it first or force the removal)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        assert_eq!(
            State::Created.apply(Op::Start),
            Ok(Outcome::To(State::Running))
        );
        assert_eq!(
            State::Running.apply(Op::Pause),
            Ok(Outcome::To(State::Paused))
        );
        assert_eq!(
            State::Paused.apply(Op::Resume),
            Ok(Outcome::To(State::Running))
        );
        assert_eq!(
            State::Paused.apply(Op::Exit),
            Ok(Outcome::To(State::Exited))
        );
        assert_eq!(
            State::Exited.apply(Op::ScheduleRestart),
            Ok(Outcome::To(State::Restarting))
        );
        assert_eq!(
            State::Restarting.apply(Op::Start),
            Ok(Outcome::To(State::Running))
        );
        assert_eq!(
            State::Restarting.apply(Op::Stop),
            Ok(Outcome::To(State::Exited))
        );
        assert_eq!(
            State::Exited.apply(Op::Remove { force: false }),
            Ok(Outcome::Gone)
        );
        assert_eq!(
            State::Paused.apply(Op::Remove { force: true }),
            Ok(Outcome::KillThenRemove)
        );
    }

    #[test]
    fn refusals() {
        assert!(State::Running.apply(Op::Start).is_err());
        assert!(State::Running.apply(Op::Remove { force: false }).is_err());
        assert!(State::Created.apply(Op::Signal).is_err());
        assert!(State::Exited.apply(Op::Pause).is_err());
        assert!(State::Running.apply(Op::Resume).is_err());
        assert!(State::Running.apply(Op::ScheduleRestart).is_err());
        let msg = State::Exited.apply(Op::Signal).unwrap_err().to_string();
        assert_eq!(
            msg,
            "container is exited: cannot signal it (it is not running)"
        );
    }
}
