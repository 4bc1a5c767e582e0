//! When a tree's checkpoint thread (`background.rs`) runs next: the
//! schedule writers nudge and the owner stops. A primitive: it knows no
//! tree, so `Stored` can hold it.

use std::time::Duration;

use super::sync::{Condvar, Mutex, lock, wait_timeout};

/// When the thread runs next: what writers and the owner tell it.
#[derive(Default)]
pub(crate) struct Schedule {
    state: Mutex<Wake>,
    changed: Condvar,
}

/// Why [`Schedule::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    Nudged,
    Timeout,
    /// Told to stop.
    Stop,
}

#[derive(Default)]
struct Wake {
    /// A thread is running (writers nudge it instead of checkpointing).
    running: bool,
    nudged: bool,
    stop: bool,
}

impl Schedule {
    /// Dirty bytes are piling up: checkpoint now, if a thread runs.
    /// Returns false if none does.
    pub(crate) fn nudge(&self) -> bool {
        let mut wake = lock(&self.state);
        if wake.running && !wake.nudged {
            wake.nudged = true;
            self.changed.notify_one();
        }
        wake.running
    }

    /// Waits up to `timeout` for a nudge.
    pub(crate) fn wait(&self, timeout: Duration) -> Woke {
        let mut wake = lock(&self.state);
        if !wake.nudged && !wake.stop {
            wake = wait_timeout(&self.changed, wake, timeout);
        }
        let nudged = std::mem::take(&mut wake.nudged);
        match (wake.stop, nudged) {
            (true, _) => Woke::Stop,
            (false, true) => Woke::Nudged,
            (false, false) => Woke::Timeout,
        }
    }

    pub(crate) fn set_running(&self, running: bool) {
        let mut wake = lock(&self.state);
        wake.running = running;
        wake.stop = !running;
        self.changed.notify_one();
    }
}
