//! Named crash points: where a test can make berthd die as `kill -9` would,
//! at one exact instant (after a record is saved but before its event is
//! published, between two writes of an import...), to prove that a restart
//! recovers from every one of them.
//!
//! A point is inert unless berthd was started with `BERTHD_CRASH_AT=NAME`
//! (or `NAME#N`: the N-th time that point is reached, counting from 1) in
//! its environment; then reaching it SIGKILLs berthd. The variable is read
//! once; an unset variable costs one load of a `OnceLock` per point. Only
//! root can set the environment of berthd, and root can kill it anyway, so
//! the hook gives nobody a power they lacked. Every point is listed in
//! [`POINTS`], which a test walks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every crash point, in the order a container's life reaches them.
/// `<op>` and `<action>` stand for a transition's and an event's name in
/// lower case, e.g. `commit:start:saved`, `event:exited:appended` (see
/// [`transition_point`] and [`event_point`]).
pub const POINTS: &[&str] = &[
    "create:saved",
    "commit:<op>:before-save",
    "commit:<op>:saved",
    "commit:<op>:announced",
    "event:<action>:appended",
    "image:import:layers-stored",
    "image:import:tagged",
    "image:pull:layer-installed",
];

/// The point of one stage of a transition: `commit:<op>:<stage>`.
pub fn transition_point(op: &str, stage: &str) -> String {
    format!("commit:{}:{stage}", op.to_ascii_lowercase())
}

/// The point of an event once it is in the log, before anyone is told:
/// `event:<action>:appended`.
pub fn event_point(action: &str) -> String {
    format!("event:{}:appended", action.to_ascii_lowercase())
}

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("BERTHD_CRASH_AT").ok()?;
            let (name, nth) = match v.rsplit_once('#') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// True when berthd was started with a crash point set.
pub fn enabled() -> bool {
    armed().is_some()
}

/// The crash point `name` (built lazily: nothing is formatted when no
/// point is armed): dies here if it is the armed one.
pub fn point(name: impl FnOnce() -> String) {
    let Some(a) = armed() else {
        return;
    };
    if name() == a.name && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
        tracing::warn!(point = %a.name, "crash point reached: dying as kill -9 would");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
