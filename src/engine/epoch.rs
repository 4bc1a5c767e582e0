//! Commit epochs: which writes a checkpoint holds.
//!
//! # Protocol
//!
//! - A global commit epoch. Every write operation (insert, remove, pop, with
//!   the splits it makes) registers in the current epoch for its duration
//!   ([`Epochs::enter`]) and tags the versions it builds with that epoch.
//! - A checkpoint of epoch `E` ([`Epochs::close`]) announces itself
//!   (`running = E`), advances the epoch to `E + 1` and waits until no
//!   writer of `E` is left. It waits; the writers never do.
//! - Writers count the entries they add or remove under their epoch
//!   ([`Epochs::count`]); closing `E` adds what `E`'s writers counted to the
//!   entry count of the last checkpoint, which is what the image of `E`
//!   holds.
//!
//! So a checkpoint of `E` holds exactly the operations of epochs `<= E`:
//! every operation that completed before the checkpoint began (it
//! registered in an epoch `<= E`), and none that started after it ended
//! (those register in `E + 1` or later). Readers never register.
//!
//! Only two epochs are ever live at once (`E` draining, `E + 1` open: `E + 2`
//! starts only after `E` is closed), so registrations and counts are kept
//! by epoch parity.
//!
//! # Orderings
//!
//! Registering and closing are Dekker's pattern: a writer increments its
//! epoch's count and then reads the epoch again; a checkpoint advances the
//! epoch and then reads the count. A `fence(SeqCst)` between the write and
//! the read on each side puts the two fences in one total order, so at
//! least one side sees the other's write: either the writer's recheck sees
//! `E + 1` (it retries in `E + 1`), or the drain sees its count (and waits
//! for it). Written with fences rather than `SeqCst` accesses because loom
//! models `SeqCst` fences but treats `SeqCst` accesses as `AcqRel`, which
//! here is a false alarm (loom#180): the model checks the code that ships.
//!
//! - The advance is a `Release` store after `running`: a writer whose
//!   `Acquire` read of the epoch sees `E + 1` then sees `running == E`.
//! - A writer's deregistration is a `Release` decrement and the drain reads
//!   the count with `Acquire`: everything the writer did (its versions, its
//!   entry counts, which are `Relaxed`) happens before the checkpoint
//!   reads it.
//! - `running` is reset with `Release` at the end; a writer that reads a
//!   stale `E` only keeps a version a little longer.

use crossbeam_utils::Backoff;

use super::striped::Striped;
use super::sync::{AtomicU64, Mutex, MutexGuard, Ordering, fence, lock, pause, try_lock};

/// Counter indices in `Epochs::counts`, each plus the epoch's parity.
const ACTIVE: usize = 0;
const DELTA: usize = 2;

pub(crate) struct Epochs {
    /// The epoch writers register in. Starts above every stored epoch; 0 is
    /// the epoch of loaded and bulk-built versions.
    current: AtomicU64,
    /// The epoch a checkpoint is writing, or 0.
    running: AtomicU64,
    /// Writers in flight and entries they counted, by epoch parity.
    counts: Striped<4>,
    /// One checkpoint at a time; holds the entry count of the last epoch
    /// closed (written or not: a failed checkpoint's operations are in the
    /// next one).
    serial: Mutex<u64>,
}

/// A writer's registration in an epoch, for one operation.
pub(crate) struct Registered<'a> {
    epochs: &'a Epochs,
    pub(crate) epoch: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.epochs.counts.add_release(ACTIVE + parity(self.epoch), -1);
    }
}

/// A closed epoch, being checkpointed: no writer of it is left. The
/// checkpoint runs while this lives; dropping it (a return, or a panic in
/// a codec) ends it, and lets the next one start.
pub(crate) struct Closed<'a> {
    epochs: &'a Epochs,
    _serial: MutexGuard<'a, u64>,
    /// The epoch being written.
    pub(crate) epoch: u64,
    /// The entries its image holds.
    pub(crate) len: u64,
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.epochs.running.store(0, Ordering::Release);
    }
}

fn parity(epoch: u64) -> usize {
    (epoch & 1) as usize
}

impl Epochs {
    /// Epochs after a checkpoint of epoch `stored` that held `len` entries.
    pub(crate) fn new(stored: u64, len: u64) -> Epochs {
        Epochs {
            current: AtomicU64::new(stored + 1),
            running: AtomicU64::new(0),
            counts: Striped::new(),
            serial: Mutex::new(len),
        }
    }

    /// Registers a write operation in the current epoch.
    pub(crate) fn enter(&self) -> Registered<'_> {
        loop {
            let epoch = self.current.load(Ordering::Acquire);
            self.counts.add(ACTIVE + parity(epoch), 1);
            fence(Ordering::SeqCst); // Dekker with `close_with` (module docs)
            if self.current.load(Ordering::Acquire) == epoch {
                return Registered { epochs: self, epoch };
            }
            self.counts.add(ACTIVE + parity(epoch), -1); // a checkpoint moved on: retry
        }
    }

    /// The epoch a checkpoint is writing, or 0. Read after registering.
    pub(crate) fn running(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }

    /// The epoch writers register in now. At least the epoch of any
    /// registration this thread made or has seen the work of (one atomic's
    /// values are read in order); the checkpoint of an earlier epoch may
    /// be running. Acquire: pairs with the advance in `close_with`.
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Counts `delta` entries under `epoch`, by a writer registered in an
    /// epoch `<= epoch` (its change was tagged `epoch`).
    pub(crate) fn count(&self, epoch: u64, delta: isize) {
        self.counts.add(DELTA + parity(epoch), delta);
    }

    /// Closes the current epoch for a checkpoint, once any checkpoint
    /// running has ended.
    pub(crate) fn close(&self) -> Closed<'_> {
        self.close_with(lock(&self.serial))
    }

    /// Returns once no checkpoint is running (one may start right after).
    pub(crate) fn wait_idle(&self) {
        drop(lock(&self.serial));
    }

    /// [`close`](Epochs::close), unless a checkpoint is running.
    pub(crate) fn try_close(&self) -> Option<Closed<'_>> {
        try_lock(&self.serial).map(|serial| self.close_with(serial))
    }

    fn close_with<'a>(&'a self, mut serial: MutexGuard<'a, u64>) -> Closed<'a> {
        // Relaxed: only checkpoints write `current`, one at a time (under
        // `serial`, which orders them).
        let epoch = self.current.load(Ordering::Relaxed);
        self.running.store(epoch, Ordering::Relaxed);
        self.current.store(epoch + 1, Ordering::Release);
        fence(Ordering::SeqCst); // Dekker with `enter` (module docs)
        let backoff = Backoff::new();
        while self.counts.sum_acquire(ACTIVE + parity(epoch)) != 0 {
            pause(&backoff);
        }
        // Every writer of `epoch` is done: its counts are final. Writers of
        // `epoch + 1` count under the other parity.
        let delta = self.counts.take(DELTA + parity(epoch));
        *serial = serial.saturating_add_signed(delta as i64);
        let len = *serial;
        Closed { epochs: self, _serial: serial, epoch, len }
    }
}

#[cfg(all(test, loom))]
mod tests {
    //! The epoch protocol under loom: a writer registering while a
    //! checkpoint closes the epoch. A writer that registered in the closed
    //! epoch is waited for (its write is done when `close` returns); one
    //! that registered after is in the next epoch, and sees the checkpoint
    //! running (it keeps the versions the checkpoint needs).

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    #[test]
    fn a_writer_of_the_closed_epoch_is_waited_for_and_a_later_one_is_not_in_it() {
        loom::model(|| {
            let epochs = Arc::new(Epochs::new(0, 10));
            let done = Arc::new(AtomicBool::new(false));
            let writer = loom::thread::spawn({
                let (epochs, done) = (Arc::clone(&epochs), Arc::clone(&done));
                move || {
                    let registered = epochs.enter();
                    let (epoch, running) = (registered.epoch, epochs.running());
                    epochs.count(epoch, 1);
                    done.store(true, Ordering::Relaxed);
                    drop(registered);
                    (epoch, running)
                }
            });
            let closed = epochs.close();
            let (epoch, len, done_at_close) = (closed.epoch, closed.len, done.load(Ordering::Relaxed));
            drop(closed);
            let (writer_epoch, running_seen) = writer.join().unwrap();
            assert_eq!(epoch, 1);
            if writer_epoch == epoch {
                assert!(done_at_close, "a writer of the closed epoch was not waited for");
                assert_eq!(len, 11, "its count is in the image");
            } else {
                assert_eq!(writer_epoch, epoch + 1);
                assert_eq!(len, 10, "a writer of the next epoch is not in the image");
                // It saw the checkpoint running, or registered after it ended.
                assert!(running_seen == epoch || running_seen == 0, "running {running_seen}");
            }
            // The next checkpoint holds it either way.
            assert_eq!(epochs.close().len, 11);
        });
    }
}
