//! `Wait`: where threads that miss on a ghost already being loaded park
//! until the one loader finishes.
//!
//! No guard of any kind is held while parked: callers drop their arc-swap
//! guards first (a parked thread holding one would pin a version, and with
//! an epoch guard would stall all reclamation).

use crate::Error;

use super::sync::{Condvar, Mutex, lock, wait};

/// The outcome of one load, handed to every thread that waited for it.
pub(crate) struct Wait {
    outcome: Mutex<Option<Result<(), Error>>>,
    done: Condvar,
}

impl Wait {
    pub(crate) fn new() -> Wait {
        Wait { outcome: Mutex::new(None), done: Condvar::new() }
    }

    /// Records the outcome and wakes every waiter. Called once, by the loader.
    pub(crate) fn finish(&self, outcome: Result<(), Error>) {
        let mut slot = lock(&self.outcome);
        *slot = Some(outcome);
        self.done.notify_all();
    }

    /// Parks until `finish`, then returns its outcome.
    pub(crate) fn wait(&self) -> Result<(), Error> {
        let mut slot = lock(&self.outcome);
        loop {
            if let Some(outcome) = &*slot {
                return outcome.clone();
            }
            slot = wait(&self.done, slot);
        }
    }
}
