//! `FaultyStore`: a [`MemoryStore`] that fails (or corrupts, or slows down)
//! on command, for the fault-injection tests.
//!
//! Every knob is an atomic, so a test may flip it from any thread while the
//! tree is in use, and clones share the knobs and the records (a clone is a
//! handle, like `MemoryStore`'s). Per kind of call ([`Op`]) a call fails if
//! any of these holds:
//!
//! - the kind is failing wholesale ([`FaultyStore::fail`]);
//! - a countdown reaches it ([`FaultyStore::fail_nth`]: the `n`th next call);
//! - a seeded coin comes up ([`FaultyStore::fail_randomly`], probability `p`).
//!
//! Injected errors are `io::Error::other("injected ...")`; a failed call has
//! no effect on the records. Besides failures: a read delay (slow store),
//! one address whose reads come back with a flipped byte (corruption), and
//! a gate that holds the next read until the test releases it (a pause at
//! an exact point: [`FaultyStore::hold_next_read`]).

#![allow(dead_code)] // each test binary uses a different part

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use ghostbtree::{Address, MemoryStore, Store};

/// A kind of store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Append,
    Sync,
    ReadCommit,
    WriteCommit,
    Settle,
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Read, Op::Append, Op::Sync, Op::ReadCommit, Op::WriteCommit, Op::Settle];
}

/// The knobs and counters of one kind of call.
#[derive(Default)]
struct Knobs {
    fail_all: AtomicBool,
    /// 0: off; `n`: the `n`th next call fails.
    countdown: AtomicU64,
    /// A call fails if a random `u64` is below this (0: never).
    threshold: AtomicU64,
    calls: AtomicU64,
    injected: AtomicU64,
}

#[derive(Default)]
struct Faults {
    knobs: [Knobs; 6],
    /// splitmix64 state.
    rng: AtomicU64,
    read_delay_micros: AtomicU64,
    /// Reads of this address return a flipped byte (0: none).
    corrupt: AtomicU64,
    gate: Mutex<Gate>,
    gate_changed: Condvar,
}

/// Where the read gate stands.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Gate {
    #[default]
    Open,
    /// The next read stops here.
    Armed,
    /// A read is stopped, waiting for the release.
    Holding,
    /// Released: the stopped read goes on.
    Released,
}

/// A [`Store`] over a [`MemoryStore`] that fails on command.
#[derive(Clone, Default)]
pub struct FaultyStore {
    inner: MemoryStore,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// An empty store with no faults, its coin seeded with `seed`.
    pub fn new(seed: u64) -> FaultyStore {
        let store = FaultyStore::default();
        store.faults.rng.store(seed, Relaxed);
        store
    }

    /// The records underneath, unaffected by the knobs.
    pub fn memory(&self) -> &MemoryStore {
        &self.inner
    }

    fn knobs(&self, op: Op) -> &Knobs {
        &self.faults.knobs[op as usize]
    }

    /// Fails every call of kind `op` while `on`.
    pub fn fail(&self, op: Op, on: bool) {
        self.knobs(op).fail_all.store(on, Relaxed);
    }

    /// Fails the `n`th next call of kind `op` (1: the next one); 0 disarms.
    pub fn fail_nth(&self, op: Op, n: u64) {
        self.knobs(op).countdown.store(n, Relaxed);
    }

    /// Fails each call of kind `op` with probability `p` (0 turns it off).
    pub fn fail_randomly(&self, op: Op, p: f64) {
        let threshold = (p.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        self.knobs(op).threshold.store(threshold, Relaxed);
    }

    /// Sleeps this long in every read (before deciding whether it fails).
    pub fn read_delay(&self, delay: Duration) {
        self.faults.read_delay_micros.store(delay.as_micros() as u64, Relaxed);
    }

    /// Reads of `address` return the record with one byte flipped (`None`:
    /// no corruption).
    pub fn corrupt(&self, address: Option<Address>) {
        self.faults.corrupt.store(address.map_or(0, |a| a.0), Relaxed);
    }

    /// The next read (from any thread) stops before it reads, until the
    /// returned handle releases it (or drops).
    pub fn hold_next_read(&self) -> Held<'_> {
        self.set_gate(Gate::Armed);
        Held(self)
    }

    fn set_gate(&self, gate: Gate) {
        *self.faults.gate.lock().unwrap_or_else(PoisonError::into_inner) = gate;
        self.faults.gate_changed.notify_all();
    }

    /// Waits until the gate is in a state `done` accepts.
    fn wait_gate(&self, done: impl Fn(Gate) -> bool) {
        let mut gate = self.faults.gate.lock().unwrap_or_else(PoisonError::into_inner);
        while !done(*gate) {
            gate = self.faults.gate_changed.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Turns every fault off: failures, delay and corruption.
    pub fn clear(&self) {
        for op in Op::ALL {
            self.fail(op, false);
            self.fail_nth(op, 0);
            self.fail_randomly(op, 0.0);
        }
        self.read_delay(Duration::ZERO);
        self.corrupt(None);
    }

    /// Calls of kind `op` so far (failed ones included).
    pub fn calls(&self, op: Op) -> u64 {
        self.knobs(op).calls.load(Relaxed)
    }

    /// Calls of kind `op` that were made to fail.
    pub fn injected(&self, op: Op) -> u64 {
        self.knobs(op).injected.load(Relaxed)
    }

    /// A splitmix64 draw: lock-free, and reproducible for a given seed when
    /// one thread makes the calls.
    fn random(&self) -> u64 {
        let mut z =
            self.faults.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Counts a call of kind `op` and fails it if a knob says so.
    fn check(&self, op: Op) -> io::Result<()> {
        let knobs = self.knobs(op);
        knobs.calls.fetch_add(1, Relaxed);
        let counted_down = knobs.countdown.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)) == Ok(1);
        let threshold = knobs.threshold.load(Relaxed);
        let coin = threshold != 0 && self.random() < threshold;
        if knobs.fail_all.load(Relaxed) || counted_down || coin {
            knobs.injected.fetch_add(1, Relaxed);
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        Ok(())
    }
}

impl Store for FaultyStore {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        self.check(Op::Append)?;
        self.inner.append(record)
    }

    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        let mut gate = self.faults.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if *gate == Gate::Armed {
            *gate = Gate::Holding;
            self.faults.gate_changed.notify_all();
            while *gate == Gate::Holding {
                gate = self.faults.gate_changed.wait(gate).unwrap_or_else(PoisonError::into_inner);
            }
        }
        drop(gate);
        let delay = self.faults.read_delay_micros.load(Relaxed);
        if delay != 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        self.check(Op::Read)?;
        let mut record = self.inner.read(address)?;
        let middle = record.len() / 2;
        if self.faults.corrupt.load(Relaxed) == address.0
            && let Some(byte) = record.get_mut(middle)
        {
            *byte ^= 0x5a;
        }
        Ok(record)
    }

    fn free(&self, address: Address) -> io::Result<()> {
        self.inner.free(address)
    }

    fn abandon(&self) {
        self.inner.abandon()
    }

    fn rollback(&self) {
        self.inner.rollback()
    }
    fn settle(&self) -> io::Result<()> {
        self.check(Op::Settle)?;
        self.inner.settle()
    }

    /// A seal is a settle that ends the commit: failed as one.
    fn seal(&self) -> io::Result<()> {
        self.check(Op::Settle)?;
        self.inner.seal()
    }

    fn sync(&self) -> io::Result<()> {
        self.check(Op::Sync)?;
        self.inner.sync()
    }

    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        self.check(Op::ReadCommit)?;
        self.inner.read_commit()
    }

    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        self.check(Op::WriteCommit)?;
        self.inner.write_commit(record)
    }
}

/// A read held by [`FaultyStore::hold_next_read`].
pub struct Held<'a>(&'a FaultyStore);

impl Held<'_> {
    /// Waits until a read has reached the gate and stopped there.
    pub fn wait_until_holding(&self) {
        self.0.wait_gate(|gate| gate == Gate::Holding);
    }

    /// Lets the held read go on (or disarms the gate if none came).
    pub fn release(self) {}
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.set_gate(Gate::Released);
    }
}
