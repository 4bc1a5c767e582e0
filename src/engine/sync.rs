//! Every synchronization primitive the engine uses, in one place: the
//! atomic cell under every slot, the atomics, mutexes and condvars, and the
//! thread index. This is the model-checking seam (crossbeam's
//! `mod primitive`, redb's `sync.rs`): the `cfg(loom)` build swaps each for
//! the one loom sees, so the loom models explore every interleaving of all
//! of them. Nothing else in the crate names `std::sync::atomic`, a std lock
//! or arc-swap.
//!
//! The cell is an [`arc_swap::ArcSwap`] in a normal build: an `Arc<T>`
//! that can be loaded and compare-and-swapped as one atomic step. Loom
//! cannot see arc-swap's atomics, so the model build swaps in a cell it
//! does see (a `loom::sync::Mutex<Arc<T>>`) with the same observable
//! semantics: `load` returns the value of one linearization point,
//! `compare_exchange` replaces the value only if it still is `current` (by
//! pointer). The tree never learns which cell it runs on.
//!
//! # Orderings
//!
//! arc-swap performs the pointer swap of `store` and `compare_and_swap` with
//! `SeqCst` (which includes `Release`) and the load with `SeqCst`/`Acquire`.
//! That pair is what the tree relies on: every write into a node happens before
//! the node is published by a successful `compare_exchange`, so a thread whose
//! `load` returns the new pointer sees the node fully built. No node is ever
//! written after it is published (nodes are immutable), so no other ordering is
//! needed anywhere in the tree.
//!
//! # ABA
//!
//! `compare_exchange` compares pointers. The caller holds `current` alive (a
//! guard or an `Arc`) for the whole call, so its address cannot be reused by a
//! new node in between: a pointer match means the very same version.

use std::sync::Arc;

#[cfg(not(loom))]
mod imp {
    use super::Arc;
    use arc_swap::ArcSwap;

    /// What `load` returns: a cheap guard that keeps the value alive.
    ///
    /// arc-swap gives each thread a few fast guard slots; code that descends
    /// the tree holds at most two at a time (hand over hand).
    pub(crate) type Snapshot<T> = arc_swap::Guard<Arc<T>>;

    pub(crate) struct AtomicArc<T>(ArcSwap<T>);

    impl<T> AtomicArc<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            AtomicArc(ArcSwap::new(value))
        }

        #[inline]
        pub(crate) fn load(&self) -> Snapshot<T> {
            self.0.load()
        }

        #[inline]
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }

        /// Stores `new` if the cell still holds `current`; says whether it did.
        #[inline]
        pub(crate) fn compare_exchange(&self, current: &Arc<T>, new: Arc<T>) -> bool {
            let previous = self.0.compare_and_swap(current, new);
            Arc::ptr_eq(&previous, current)
        }

        /// True if the cell holds `value` (by pointer).
        pub(crate) fn holds(&self, value: &Arc<T>) -> bool {
            Arc::ptr_eq(&self.0.load(), value)
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            self.0.store(value);
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::Arc;

    /// Under loom a snapshot is a plain `Arc` clone.
    pub(crate) type Snapshot<T> = Arc<T>;

    pub(crate) struct AtomicArc<T>(loom::sync::Mutex<Arc<T>>);

    impl<T> AtomicArc<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            AtomicArc(loom::sync::Mutex::new(value))
        }

        pub(crate) fn load(&self) -> Snapshot<T> {
            self.load_full()
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            Arc::clone(&self.0.lock().unwrap())
        }

        pub(crate) fn holds(&self, value: &Arc<T>) -> bool {
            Arc::ptr_eq(&self.0.lock().unwrap(), value)
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            *self.0.lock().unwrap() = value;
        }

        pub(crate) fn compare_exchange(&self, current: &Arc<T>, new: Arc<T>) -> bool {
            let mut value = self.0.lock().unwrap();
            if Arc::ptr_eq(&value, current) {
                *value = new;
                true
            } else {
                false
            }
        }
    }
}

pub(crate) use imp::{AtomicArc, Snapshot};

/// Turns a snapshot into an owned `Arc` (an atomic increment under
/// arc-swap, nothing under loom).
#[cfg(not(loom))]
pub(crate) fn snapshot_into_arc<T>(snapshot: Snapshot<T>) -> Arc<T> {
    arc_swap::Guard::into_inner(snapshot)
}

#[cfg(loom)]
pub(crate) fn snapshot_into_arc<T>(snapshot: Snapshot<T>) -> Arc<T> {
    snapshot
}

/// The engine's atomics, mutexes and condvars: loom's in the model build,
/// so every access is visible to the model checker. Each use states its
/// ordering where it is made.
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicIsize, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

/// A flag that only says whether something is worth a look, where every
/// value is right (the end hints' `appending`, `ends.rs`): std's in both
/// builds, so loom does not branch on it. Modeled, it nearly doubled the
/// loom models' time (544 s to 958 s) for no behaviour they could miss.
pub(crate) type HintFlag = std::sync::atomic::AtomicBool;

/// A count of the same kind: evictions since the allocator last gave
/// memory back (`evict.rs`), which only decides when it is asked again.
/// Any value is safe; std's in both builds.
pub(crate) type HintCount = std::sync::atomic::AtomicUsize;

/// A small number that differs between threads that run at the same time,
/// for striping counters (`striped.rs`).
#[cfg(not(loom))]
pub(crate) fn thread_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        // Relaxed: only uniqueness matters, which the RMW gives.
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}

/// Under loom every counter has one stripe (see [`stripes`]): the index
/// is not a synchronization, and a static atomic cannot be a loom one.
#[cfg(loom)]
pub(crate) fn thread_index() -> usize {
    0
}

/// Counts a call on this thread and returns the count, this call included
/// (a per-thread counter: writers look at the dirty bytes only every few
/// writes). Under loom the counter is loom's thread-local, fresh in every
/// execution the model explores, so the model stays deterministic.
pub(crate) fn count_call() -> u32 {
    #[cfg(not(loom))]
    use std::thread_local;

    #[cfg(loom)]
    use loom::thread_local;

    thread_local! {
        // Not `const { .. }`: loom's `thread_local!` does not take one.
        #[allow(clippy::missing_const_for_thread_local)]
        static CALLS: std::cell::Cell<u32> = std::cell::Cell::new(0);
    }
    CALLS.with(|calls| {
        calls.set(calls.get().wrapping_add(1));
        calls.get()
    })
}

/// `f` of this thread's buffer for store reads (`Stored::read_with`).
/// Taken out for the call, so a nested call gets an empty one rather than
/// a borrow error; kept afterwards only up to 64 KiB, the most a thread
/// holds beyond the budget for it.
pub(crate) fn with_read_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    #[cfg(not(loom))]
    use std::thread_local;

    #[cfg(loom)]
    use loom::thread_local;

    const KEPT: usize = 64 << 10;
    thread_local! {
        #[allow(clippy::missing_const_for_thread_local)]
        static BUFFER: std::cell::Cell<Vec<u8>> = std::cell::Cell::new(Vec::new());
    }
    let mut buffer = BUFFER.with(std::cell::Cell::take);
    let result = f(&mut buffer);
    if buffer.capacity() <= KEPT {
        BUFFER.with(|kept| kept.set(buffer));
    }
    result
}

/// How many stripes a striped counter has: two per core, a power of two.
#[cfg(not(loom))]
pub(crate) fn stripes() -> usize {
    static STRIPES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *STRIPES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cores * 2).next_power_of_two().min(64)
    })
}

/// One stripe in the model: it keeps the state space small, and striping
/// is about cache lines, which loom does not model.
#[cfg(loom)]
pub(crate) fn stripes() -> usize {
    1
}

/// Waits a moment in a spin loop that waits for other threads (the
/// checkpoint's drain): backs off, then sleeps; under loom, yields, so
/// the model runs the threads waited for.
#[cfg(not(loom))]
pub(crate) fn pause(backoff: &crossbeam_utils::Backoff) {
    if backoff.is_completed() {
        std::thread::sleep(std::time::Duration::from_micros(50));
    } else {
        backoff.snooze();
    }
}

#[cfg(loom)]
pub(crate) fn pause(_: &crossbeam_utils::Backoff) {
    loom::thread::yield_now();
}

use std::sync::{PoisonError, TryLockError};

/// Locks `mutex`, poisoned or not. A panic (in a key's `Clone` or `Ord`,
/// or a codec) can unwind out of a critical section; each one in the
/// engine leaves what it guards consistent at every point that can panic,
/// so the data is used as it is, and a panic in one thread never stops
/// the tree for the others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] if the mutex is free; `None` if another thread holds it.
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Waits on `condvar` for at most `timeout`, poisoned or not (see [`lock`]).
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// Waits on `condvar`, poisoned or not (see [`lock`]).
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
