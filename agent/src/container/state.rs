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
    /// Its process has ended.
    Exited,
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

impl State {
    /// Lower-case name, as users see it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
        }
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
            (Created | Exited, Op::Start) => Ok(To(Running)),
            (Running, Op::Start) => invalid("start it (it is already running)"),
            // A start that fails before exec goes straight to Exited.
            (Running | Created, Op::Exit) => Ok(To(Exited)),
            (Exited, Op::Exit) => invalid("record an exit twice"),
            (Running, Op::Signal) => Ok(Stay),
            (Created | Exited, Op::Signal) => invalid("signal it (it is not running)"),
            (Created | Exited, Op::Remove { .. }) => Ok(Gone),
            (Running, Op::Remove { force: true }) => Ok(KillThenRemove),
            (Running, Op::Remove { force: false }) => {
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
            State::Running.apply(Op::Exit),
            Ok(Outcome::To(State::Exited))
        );
        assert_eq!(
            State::Exited.apply(Op::Start),
            Ok(Outcome::To(State::Running))
        );
        assert_eq!(
            State::Exited.apply(Op::Remove { force: false }),
            Ok(Outcome::Gone)
        );
        assert_eq!(
            State::Running.apply(Op::Remove { force: true }),
            Ok(Outcome::KillThenRemove)
        );
    }

    #[test]
    fn refusals() {
        assert!(State::Running.apply(Op::Start).is_err());
        assert!(State::Running.apply(Op::Remove { force: false }).is_err());
        assert!(State::Created.apply(Op::Signal).is_err());
        let msg = State::Exited.apply(Op::Signal).unwrap_err().to_string();
        assert_eq!(
            msg,
            "container is exited: cannot signal it (it is not running)"
        );
    }
}
