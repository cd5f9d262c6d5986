//! Restart policies, as Docker's `--restart`: when to start a container
//! again and how long to wait first.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entry::{Announce, Entry};
use super::state::{Op, State};
use super::Manager;

/// A restart policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Policy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        /// Most restarts since the last start through the API.
        max_retries: u32,
    },
    /// Always restart, also when berthd starts, unless stopped through the API.
    Always,
    /// As `Always`, but a container stopped through the API also stays
    /// stopped when berthd starts.
    UnlessStopped,
}

/// First back-off delay.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest back-off delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// What the policy says after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Wait this long, then start.
    pub delay: Duration,
    /// The back-off step to remember for the next exit.
    pub backoff: u32,
}

/// Decides whether to restart after an exit with `exit_code`, after a run
/// of `uptime`. `restarts` counts restarts since the last start through the
/// API; `backoff` is the current back-off step.
pub fn after_exit(
    policy: Policy,
    exit_code: i32,
    stopped_by_user: bool,
    restarts: u32,
    backoff: u32,
    uptime: Duration,
) -> Option<Restart> {
    if stopped_by_user {
        return None;
    }
    let wanted = match policy {
        Policy::No => false,
        Policy::OnFailure { max_retries } => {
            exit_code != 0 && (max_retries == 0 || restarts < max_retries)
        }
        Policy::Always | Policy::UnlessStopped => true,
    };
    if !wanted {
        return None;
    }
    let step = if uptime >= RESET_AFTER { 0 } else { backoff };
    let delay = FIRST_DELAY
        .checked_mul(1u32.checked_shl(step.min(20)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    Some(Restart {
        delay,
        backoff: step + 1,
    })
}

/// Whether berthd, when it starts, should start this stopped container.
pub fn at_agent_start(policy: Policy, stopped_by_user: bool) -> bool {
    match policy {
        Policy::Always => true,
        Policy::UnlessStopped => !stopped_by_user,
        Policy::No | Policy::OnFailure { .. } => false,
    }
}

impl Manager {
    /// Starts a RESTARTING container after `delay`, unless a client has
    /// started, stopped or removed it meanwhile.
    pub(super) fn schedule_restart(self: &Arc<Self>, entry: Arc<Entry>, delay: Duration) {
        let mgr = self.clone();
        let gen = entry.call_off_restart();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ops = entry.ops.lock().await;
            let state = entry.snapshot().state;
            let gone = !mgr.exists(&entry);
            let called_off = entry.restart_gen.load(Ordering::SeqCst) != gen;
            if gone || called_off || !matches!(state, State::Restarting | State::Exited) {
                return;
            }
            if let Err(e) = mgr.start_locked(&entry, false, None).await {
                tracing::warn!(id = %entry.id, "restart failed: {e}");
                // Nothing else would start it: it is exited, not restarting
                // (a client's Start tries again). Not restarting (a start
                // that failed to exec recorded its exit) is fine as it is.
                let _ = mgr.commit(&entry, Op::AbandonRestart, |_| {}, Announce::Nothing);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut backoff = 0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let r = after_exit(Policy::Always, 0, false, 0, backoff, QUICK).unwrap();
            delays.push(r.delay.as_millis());
            backoff = r.backoff;
        }
        assert_eq!(
            delays,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]
        );
        let r = after_exit(Policy::Always, 0, false, 0, backoff, RESET_AFTER).unwrap();
        assert_eq!(r.delay, FIRST_DELAY);
    }

    #[test]
    fn policies() {
        assert!(after_exit(Policy::No, 1, false, 0, 0, QUICK).is_none());
        let on_failure = Policy::OnFailure { max_retries: 2 };
        assert!(after_exit(on_failure, 0, false, 0, 0, QUICK).is_none());
        assert!(after_exit(on_failure, 3, false, 1, 0, QUICK).is_some());
        assert!(after_exit(on_failure, 3, false, 2, 0, QUICK).is_none());
        assert!(after_exit(Policy::OnFailure { max_retries: 0 }, 3, false, 99, 0, QUICK).is_some());
        assert!(after_exit(Policy::Always, 0, true, 0, 0, QUICK).is_none());
        assert!(at_agent_start(Policy::Always, true));
        assert!(!at_agent_start(Policy::UnlessStopped, true));
        assert!(at_agent_start(Policy::UnlessStopped, false));
        assert!(!at_agent_start(Policy::OnFailure { max_retries: 1 }, false));
    }
}
