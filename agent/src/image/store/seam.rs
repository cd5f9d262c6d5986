//! A test seam in the store's critical sections, so races with them are
//! deterministic tests: a commit can be stopped (and failed) once it has
//! moved layers in, and a test can see that a thread waits for the lock.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Condvar, Mutex};

/// Where a test meets the store.
#[derive(Default)]
pub(crate) struct Seam {
    /// Armed by a test: `commit` reports "layers moved in" on the sender
    /// and fails if the receiver then says so.
    pub(crate) after_move: Mutex<Option<(Sender<()>, Receiver<bool>)>>,
    /// How many times a thread was about to take the state lock.
    pub(crate) lockers: Mutex<u64>,
    /// Signalled when `lockers` grows.
    pub(crate) locking: Condvar,
}

impl Seam {
    /// Called before taking the state lock.
    pub(super) fn about_to_lock(&self) {
        *self.lockers.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.locking.notify_all();
    }

    /// Called by `commit` with the layers moved in: true if it must fail.
    pub(super) fn moved_in(&self) -> bool {
        let armed = self
            .after_move
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match armed {
            Some((tx, rx)) => tx.send(()).is_ok() && rx.recv().unwrap_or(false),
            None => false,
        }
    }
}
