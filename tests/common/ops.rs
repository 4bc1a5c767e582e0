//! The operation model shared by the differential tests and the fuzz target:
//! every public call of `BTree`, replayed against the tree and against
//! `std::collections::BTreeMap`, with each result compared.
//!
//! The tree's keys are [`panicky::Key`]s, so any call can be made to panic
//! in a key's `Clone` or `Ord` ([`Op::Panicking`]); the ops and the model
//! name keys by their `u16`, whose calls never panic. A tree over a store
//! lives over a [`FaultyStore`], so a range walk can meet failed reads, or
//! in a file ([`Subject::over_file`]), where the checkpoint thread runs
//! and a reopen after a drop is a crash.
//!
//! The fuzz target includes this file with `#[path]` (next to `panicky.rs`
//! and `faulty.rs`, which it reaches as `super::`), and derives `Arbitrary`
//! through `cfg(fuzzing)`.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use ghostbtree::{BTree, CompareAndSwapError, Config};

use super::faulty::{self, FaultyStore};
use super::panicky::{self, Trigger};

/// A key as the ops and the model name it; the tree holds it as
/// `panicky::Key(key)`.
pub type Key = u16;
pub type Value = u32;
/// The tree under test.
pub type Tree = BTree<panicky::Key, Value>;
/// The model.
pub type Model = BTreeMap<Key, Value>;

#[derive(Debug, Clone, Copy)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum End {
    Included(Key),
    Excluded(Key),
    Unbounded,
}

#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    Insert(Key, Value),
    TryInsert(Key, Value),
    Remove(Key),
    Get(Key),
    ContainsKey(Key),
    CompareAndSwap {
        key: Key,
        expected: Option<Value>,
        new: Option<Value>,
    },
    PopFirst,
    PopLast,
    First,
    Last,
    Len,
    Extend(Vec<(Key, Value)>),
    /// `remove` of each key from `start` on, `1 + n % 16` of them, one
    /// call each (not a call of its own: it empties whole leaves, which
    /// stay in the tree, for the walks to cross).
    RemoveRun(Key, u8),
    /// Removes every key the model holds in `start..start + len` (all of
    /// them with `all`, alternately from both ends), one `remove` each, then
    /// checks the whole tree: `verify` finds no empty leaf beside others
    /// and no more nodes than the keys left need (merges shrink the tree).
    Drain {
        start: Key,
        len: u16,
        all: bool,
    },
    /// Inserts the `1 + n` keys from `start` on (a refill after a drain),
    /// then checks the whole tree.
    Refill(Key, u8),
    /// A range walked from both ends: `true` takes from the back.
    ///
    /// `fail: Some(n)` (trees over a store): every `1 + n % 4`th store read
    /// of the walk fails. An `Err` consumes nothing: the walk goes on with
    /// its next step (from either end) and every `Ok` must be exactly the
    /// entry the model says comes next from that end.
    Range {
        start: End,
        end: End,
        backs: Vec<bool>,
        fail: Option<u8>,
    },
    /// Checkpoint (trees over a store; a no-op in memory).
    Flush,
    /// Drop the tree and open the store again: what was flushed survives,
    /// what was not is gone (trees over a store; a no-op in memory). A
    /// `Some` capacity reopens with another one, `2 + n % 7` entries per
    /// leaf, `3 + n % 6` children per branch, kept from then on. In a file
    /// (opened with `flush_on_drop(false)`) this is a crash.
    Reopen {
        leaf: Option<u8>,
        branch: Option<u8>,
    },
    /// `close()` the tree (a last checkpoint, its error reported) and open
    /// the store again, capacities as for `Reopen`: nothing is lost.
    CloseAndReopen {
        leaf: Option<u8>,
        branch: Option<u8>,
    },
    /// `op` with the `at`th (`at >= 1`; 0 counts as 1) call of `trigger` of
    /// a key on this thread armed to panic. Without a panic, the answers
    /// are compared as usual. With one, the panic must reach the caller and
    /// leave the tree as before `op` or as after it (for `Extend`, after
    /// any prefix of its inserts, `RemoveRun` of its removes), `len()`
    /// exact and `verify()` clean (an unposted separator allowed); a
    /// panicking flush keeps the previous checkpoint. Reopens and a nested
    /// `Panicking` run unarmed (by the inner trigger only).
    Panicking {
        trigger: Trigger,
        at: u8,
        op: Box<Op>,
    },
}

impl Op {
    /// A reopen with the capacities unchanged.
    pub const REOPEN: Op = Op::Reopen { leaf: None, branch: None };
}

fn bound(end: End) -> Bound<panicky::Key> {
    match end {
        End::Included(key) => Bound::Included(panicky::Key(key)),
        End::Excluded(key) => Bound::Excluded(panicky::Key(key)),
        End::Unbounded => Bound::Unbounded,
    }
}

fn contains(start: End, end: End, key: Key) -> bool {
    let above = match start {
        End::Included(start) => key >= start,
        End::Excluded(start) => key > start,
        End::Unbounded => true,
    };
    let below = match end {
        End::Included(end) => key <= end,
        End::Excluded(end) => key < end,
        End::Unbounded => true,
    };
    above && below
}

/// The plain ops a [`Op::Drain`] or [`Op::Refill`] is made of, on `model`.
fn expand(op: &Op, model: &Model) -> Option<Vec<Op>> {
    match *op {
        Op::Drain { start, len, all } => {
            let keys: Vec<Key> = if all {
                let keys: Vec<Key> = model.keys().copied().collect();
                let (front, back) = keys.split_at(keys.len() / 2);
                // Alternately from both ends, meeting in the middle.
                let mut both = Vec::with_capacity(keys.len());
                for i in 0..back.len() {
                    both.push(back[back.len() - 1 - i]);
                    if let Some(key) = front.get(i) {
                        both.push(*key);
                    }
                }
                both
            } else {
                model.range(start..start.saturating_add(len)).map(|(k, _)| *k).collect()
            };
            Some(keys.into_iter().map(Op::Remove).collect())
        }
        Op::Refill(start, n) => {
            let keys = (0..=u16::from(n)).map_while(|i| start.checked_add(i));
            Some(keys.map(|k| Op::Insert(k, u32::from(k))).collect())
        }
        _ => None,
    }
}

/// The keys of [`Op::RemoveRun`].
fn run(start: Key, n: u8) -> impl Iterator<Item = Key> {
    (0..1 + u16::from(n % 16)).map_while(move |i| start.checked_add(i))
}

fn plain((key, value): (panicky::Key, Value)) -> (Key, Value) {
    (key.0, value)
}

/// The tree's entries (read with no trigger armed).
pub fn contents(tree: &Tree) -> Result<Vec<(Key, Value)>, ghostbtree::Error> {
    tree.iter().map(|entry| entry.map(plain)).collect()
}

fn entries(model: &Model) -> Vec<(Key, Value)> {
    model.iter().map(|(k, v)| (*k, *v)).collect()
}

/// Whether a caught panic is one `panicky` injected.
fn injected(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.downcast_ref::<String>().is_some_and(|m| m.starts_with("injected panic"))
}

/// The states `op` may leave a tree in that was `before` if it panics:
/// the state before it, then after each step of it.
fn states(before: &Model, op: &Op) -> Vec<Model> {
    let mut states = vec![before.clone()];
    let mut after = before.clone();
    if let Some(steps) = expand(op, before) {
        for step in steps {
            match step {
                Op::Insert(key, value) => drop(after.insert(key, value)),
                Op::Remove(key) => drop(after.remove(&key)),
                _ => unreachable!("drains remove, refills insert"),
            }
            states.push(after.clone());
        }
        return states;
    }
    match op {
        Op::Insert(key, value) => drop(after.insert(*key, *value)),
        Op::TryInsert(key, value) => drop(after.entry(*key).or_insert(*value)),
        Op::Remove(key) => drop(after.remove(key)),
        Op::CompareAndSwap { key, expected, new } => {
            if after.get(key) == expected.as_ref() {
                match new {
                    Some(value) => drop(after.insert(*key, *value)),
                    None => drop(after.remove(key)),
                }
            }
        }
        Op::PopFirst => drop(after.pop_first()),
        Op::PopLast => drop(after.pop_last()),
        Op::Extend(entries) => {
            for (key, value) in entries {
                after.insert(*key, *value);
                states.push(after.clone());
            }
            return states;
        }
        Op::RemoveRun(start, n) => {
            for key in run(*start, *n) {
                after.remove(&key);
                states.push(after.clone());
            }
            return states;
        }
        _ => return states,
    }
    states.push(after);
    states
}

/// How long one op (or the final check) may take before the watchdog
/// calls it a hang.
const HANG: Duration = Duration::from_secs(if cfg!(miri) { 3600 } else { 20 });

/// What a [`Subject`] is doing, for the watchdog: since when it runs the
/// current op, and every op so far.
#[derive(Default)]
struct Progress {
    setup: String,
    busy_since: Option<Instant>,
    /// Busy with a check, not an op.
    checking: bool,
    ops: Vec<Op>,
}

/// Subjects being watched.
static WATCHED: Mutex<Vec<Weak<Mutex<Progress>>>> = Mutex::new(Vec::new());

/// Registers a subject with the watchdog, started on first use: a tree
/// that deadlocks (a load or a lock left behind by a panic) would hang the
/// test without a word, so an op that runs for [`HANG`] aborts the process
/// with the op sequence.
fn watch(setup: String) -> Arc<Mutex<Progress>> {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut watched = WATCHED.lock().unwrap_or_else(PoisonError::into_inner);
                watched.retain(|progress| progress.strong_count() > 0);
                for progress in watched.iter().filter_map(Weak::upgrade) {
                    let progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
                    if progress.busy_since.is_some_and(|since| since.elapsed() > HANG) {
                        // Straight to stderr: the test harness's capture
                        // would swallow an `eprintln!`, and we abort.
                        let _ = writeln!(
                            std::io::stderr(),
                            "HANG: {} {} ({:?}) has not returned in {HANG:?} (a deadlock?); {}, ops {:?}",
                            if progress.checking { "the check after op" } else { "op" },
                            progress.ops.len(),
                            progress.ops.last(),
                            progress.setup,
                            progress.ops,
                        );
                        std::process::abort();
                    }
                }
            }
        });
    });
    let progress = Arc::new(Mutex::new(Progress { setup, ..Progress::default() }));
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&progress));
    progress
}

/// Where a tree over storage keeps its records.
enum Backing {
    /// A [`FaultyStore`], opened with `BTree::open` (no checkpoint thread).
    Faulty(FaultyStore),
    /// A file, opened with `BTree::open_file` and `flush_on_drop(false)`:
    /// the checkpoint thread runs, and dropping the tree is a crash.
    /// `quiet`: no checkpoint but `flush` and `close` (see
    /// [`Subject::over_file`]).
    File { path: PathBuf, quiet: bool },
}

/// A tree under test, in memory or over a store, with its model: the map it
/// must equal, and the maps a checkpoint may hold. A checkpoint may also
/// start on its own (dirty bytes filling the budget, the checkpoint thread
/// of a file) after any operation, so a reopen must show the state after
/// the last flush or after some later operation.
pub struct Subject {
    pub tree: Tree,
    pub model: Model,
    /// The model after the last flush, then after each operation since
    /// (unless the backing is quiet): the states a reopen may show.
    durable: Vec<Model>,
    /// Over a busy file: `(stats().checkpoints, i)` after each operation,
    /// `durable[i]` the model then (see [`Subject::raise_floor`]).
    seen: Vec<(u64, usize)>,
    store: Option<(Backing, Config)>,
    /// Ops applied so far (for failure messages).
    step: usize,
    /// An injected panic has fired: a split's separator may be left
    /// unposted (legal, found by moving right).
    panicked: bool,
    progress: Arc<Mutex<Progress>>,
}

impl Subject {
    pub fn in_memory(tree: Tree, model: Model) -> Subject {
        panicky::quiet_injected_panics();
        let progress = watch(format!("in memory, {:?}, initial {model:?}", tree.config()));
        Subject {
            tree,
            durable: Vec::new(),
            seen: Vec::new(),
            model,
            store: None,
            step: 0,
            panicked: false,
            progress,
        }
    }

    /// A tree over a fresh store holding `initial`, flushed.
    pub fn over_store(config: Config, initial: Model) -> Subject {
        panicky::quiet_injected_panics();
        let progress = watch(format!("over a store, {config:?}, initial {initial:?}"));
        let store = FaultyStore::new(0x5eed);
        let tree = BTree::open(store.clone(), config.clone()).unwrap();
        tree.extend(initial.iter().map(|(k, v)| (panicky::Key(*k), *v))).unwrap();
        tree.flush().unwrap();
        Subject {
            tree,
            durable: vec![initial.clone()],
            seen: Vec::new(),
            model: initial,
            store: Some((Backing::Faulty(store), config)),
            step: 0,
            panicked: false,
            progress,
        }
    }

    /// A tree in a new file at `path` (any file there is removed first)
    /// holding `initial`, flushed. The tree is opened with
    /// `flush_on_drop(false)`, so `Op::Reopen` is a crash.
    ///
    /// `quiet`: the caller's `config` lets no checkpoint start on its own
    /// (a long `checkpoint_interval` and a memory budget the ops never
    /// fill), so a crash must roll back to the last flush exactly. Else
    /// checkpoints may come between any two operations, and a reopen must
    /// show a state since the last one known to be durable.
    pub fn over_file(path: &Path, config: Config, quiet: bool, initial: Model) -> Subject {
        panicky::quiet_injected_panics();
        let config = config.flush_on_drop(false);
        let progress = watch(format!("in a file (quiet: {quiet}), {config:?}, initial {initial:?}"));
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("removing {}: {e}", path.display()),
            _ => {}
        }
        let tree = BTree::open_file(path, config.clone()).unwrap();
        tree.extend(initial.iter().map(|(k, v)| (panicky::Key(*k), *v))).unwrap();
        tree.flush().unwrap();
        let mut subject = Subject {
            tree,
            durable: Vec::new(),
            seen: Vec::new(),
            model: initial,
            store: Some((Backing::File { path: path.to_owned(), quiet }, config)),
            step: 0,
            panicked: false,
            progress,
        };
        subject.flushed();
        subject
    }

    /// The store's fault counters, if over a [`FaultyStore`].
    pub fn store(&self) -> Option<&FaultyStore> {
        match &self.store {
            Some((Backing::Faulty(store), _)) => Some(store),
            _ => None,
        }
    }

    /// Whether a checkpoint may start without a flush (see `durable`).
    fn busy_store(&self) -> bool {
        matches!(self.store, Some((Backing::Faulty(_), _)) | Some((Backing::File { quiet: false, .. }, _)))
    }

    /// The model is durable (a flush or a reopen): the only state a reopen
    /// may show until the next operation.
    fn flushed(&mut self) {
        self.durable = vec![self.model.clone()];
        self.seen = vec![(self.tree.stats().checkpoints, 0)];
    }

    /// Over a busy file, drops the states older than one a checkpoint is
    /// known to hold. At any moment between operations at most one
    /// checkpoint has started and not been counted yet (the checkpoint
    /// thread's: the others run inside this thread's calls, counted before
    /// they return). So if `stats().checkpoints` grew by two or more since
    /// the moment after some operation, a checkpoint started after that
    /// moment has completed: it holds that operation's state or a later
    /// one, and a crash may not lose it.
    fn raise_floor(&mut self) {
        if !matches!(self.store, Some((Backing::File { quiet: false, .. }, _))) {
            return;
        }
        let now = self.tree.stats().checkpoints;
        self.seen.push((now, self.durable.len() - 1));
        if let Some(i) = self.seen.iter().rposition(|&(count, _)| count + 2 <= now) {
            let floor = self.seen[i].1;
            self.durable.drain(..floor);
            self.seen.drain(..i);
            self.seen.iter_mut().for_each(|(_, at)| *at -= floor);
        }
    }

    fn busy(&self, op: Option<&Op>) {
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        progress.ops.extend(op.cloned());
        progress.checking = op.is_none();
        progress.busy_since = Some(Instant::now());
    }

    fn idle(&self) {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner).busy_since = None;
    }

    pub fn apply(&mut self, op: &Op) {
        self.step += 1;
        self.busy(Some(op));
        self.dispatch(op);
        if let Some((Backing::File { .. }, _)) = &self.store {
            // Nothing fails in a file on a healthy disk, in the background
            // either.
            let step = self.step;
            self.tree.health().unwrap_or_else(|e| panic!("op {step} {op:?}: then health(): {e}"));
            self.raise_floor();
        }
        self.idle();
    }

    fn dispatch(&mut self, op: &Op) {
        match op {
            // Unarmed: a tree cannot be dropped and opened halfway.
            Op::Panicking { op: inner, .. }
                if matches!(**inner, Op::Reopen { .. } | Op::CloseAndReopen { .. }) =>
            {
                self.run(inner)
            }
            // By the inner trigger only.
            Op::Panicking { op: inner, .. } if matches!(**inner, Op::Panicking { .. }) => {
                self.dispatch(inner)
            }
            Op::Panicking { trigger, at, op: inner } => self.run_panicking(*trigger, *at, inner),
            _ => self.run(op),
        }
    }

    fn run_panicking(&mut self, trigger: Trigger, at: u8, op: &Op) {
        let at = u32::from(at.max(1));
        let before = self.model.clone();
        panicky::arm(trigger, at);
        let result = catch_unwind(AssertUnwindSafe(|| self.run(op)));
        panicky::disarm();
        let payload = match result {
            Ok(()) => return,
            Err(payload) if injected(&*payload) => payload,
            Err(payload) => resume_unwind(payload),
        };
        drop(payload);
        self.panicked = true;
        if matches!(op, Op::Flush) && self.store.is_some() {
            // It may have committed before the panic (a quiet file has
            // only the last flush's state as a candidate otherwise).
            self.durable.push(self.model.clone());
        }
        let what = format!("op {} {op:?}, the {trigger:?} call {at} panicked", self.step);
        let now = contents(&self.tree).unwrap_or_else(|e| panic!("{what}: then a scan failed: {e}"));
        let states = states(&before, op);
        let Some(i) =
            states.iter().rposition(|state| state.iter().map(|(k, v)| (*k, *v)).eq(now.iter().copied()))
        else {
            panic!(
                "{what}: the tree holds neither the state before the op nor {}:\n  tree   {now:?}\n  before {:?}\n  after  {:?}",
                if states.len() > 2 { "one after some of its steps" } else { "the one after it" },
                entries(&before),
                entries(states.last().unwrap()),
            );
        };
        self.model = states[i].clone();
        if self.busy_store() {
            // A checkpoint may have started during the op, before any of
            // its steps (a panicking flush leaves the last one intact).
            self.durable.extend(states.into_iter().take(i + 1).skip(1));
        }
        let report = self.tree.verify().unwrap_or_else(|e| panic!("{what}: then verify failed: {e}"));
        assert!(report.is_ok(), "{what}: then verify: {report}: {:?}", report.violations);
        assert_eq!(self.tree.len(), now.len(), "{what}: then len() against the entries {now:?}");
    }

    /// Applies a plain op (any op but `Panicking`).
    fn run(&mut self, op: &Op) {
        let step = self.step;
        if let Some(steps) = expand(op, &self.model) {
            for step in &steps {
                self.run(step);
            }
            check(&self.tree, &self.model, self.panicked, &format!("op {step} {op:?}"));
            return;
        }
        match (op, &self.store) {
            (Op::Flush, Some(_)) => {
                self.tree.flush().unwrap();
                self.flushed();
            }
            (&Op::Reopen { leaf, branch }, Some(_)) => self.reopen(op, leaf, branch, false),
            (&Op::CloseAndReopen { leaf, branch }, Some(_)) => self.reopen(op, leaf, branch, true),
            (Op::Flush | Op::Reopen { .. } | Op::CloseAndReopen { .. }, None) => {}
            (Op::Extend(entries), Some(_)) => {
                self.tree.extend(entries.iter().map(|(k, v)| (panicky::Key(*k), *v))).unwrap();
                // Each insert of an `extend` is an operation: a checkpoint
                // may fall between any two.
                for (key, value) in entries {
                    self.model.insert(*key, *value);
                    if self.busy_store() {
                        self.durable.push(self.model.clone());
                    }
                }
            }
            (Op::RemoveRun(start, n), Some(_)) => {
                for key in run(*start, *n) {
                    apply(&self.tree, &mut self.model, &Op::Remove(key));
                    if self.busy_store() {
                        self.durable.push(self.model.clone());
                    }
                }
            }
            (Op::Range { start, end, backs, fail }, Some((Backing::Faulty(store), _))) => {
                let faults = fail.map(|n| (store, 1 + u64::from(n % 4)));
                walk(&self.tree, &self.model, op, (*start, *end), backs, faults);
            }
            _ => {
                apply(&self.tree, &mut self.model, op);
                if self.busy_store() {
                    self.durable.push(self.model.clone());
                }
            }
        }
    }

    /// Drops the tree (`clean`: closes it) and opens its store again,
    /// which must hold a state a reopen may show, and pass the checks.
    fn reopen(&mut self, op: &Op, leaf: Option<u8>, branch: Option<u8>, clean: bool) {
        let step = self.step;
        let (backing, config) = self.store.as_mut().expect("over a store");
        if let Some(leaf) = leaf {
            *config = config.clone().leaf_capacity(2 + usize::from(leaf % 7));
        }
        if let Some(branch) = branch {
            *config = config.clone().branch_capacity(3 + usize::from(branch % 6));
        }
        // The old tree goes first: a file is locked while a tree has it open.
        let old = std::mem::replace(&mut self.tree, BTree::new());
        if clean {
            old.close().unwrap_or_else(|e| panic!("op {step} {op:?}: close(): {e}"));
        } else {
            drop(old);
        }
        self.tree = match backing {
            Backing::Faulty(store) => BTree::open(store.clone(), config.clone()).unwrap(),
            Backing::File { path, .. } => BTree::open_file(&*path, config.clone())
                .unwrap_or_else(|e| panic!("op {step} {op:?}: open_file: {e}")),
        };
        if clean {
            self.durable = vec![self.model.clone()];
        }
        let len = self.tree.len();
        let entries: Vec<(Key, Value)> = contents(&self.tree).unwrap();
        assert_eq!(entries.len(), len, "op {step} {op:?}: reopened length against the entries");
        let Some(state) =
            self.durable.iter().rev().find(|m| m.iter().map(|(k, v)| (*k, *v)).eq(entries.iter().copied()))
        else {
            panic!(
                "op {step} {op:?}: reopened tree matches no state since the last flush:\n  reopened {entries:?}\n  flushed {:?}\n  now {:?}",
                self.durable.first(),
                self.model
            );
        };
        self.model = state.clone();
        self.flushed();
        // A checkpoint after a broken-off write may hold its leftovers (an
        // empty leaf, say), so `panicked` carries over.
        check(&self.tree, &self.model, self.panicked, &format!("op {step} {op:?}: reopened"));
    }

    pub fn check(&self) {
        self.busy(None);
        check(&self.tree, &self.model, self.panicked, &format!("check after op {}", self.step));
        self.idle();
    }
}

/// Walks `range` as `backs` says, then drains the front, comparing each
/// item with the model. With `faults`, every `n`th store read fails: an
/// `Err` must come from an injected failure, consumes nothing, and the
/// walk goes on (the failure re-armed only after an `Ok`, so the call
/// after an `Err` reads without failing).
fn walk(
    tree: &Tree,
    model: &Model,
    op: &Op,
    (start, end): (End, End),
    backs: &[bool],
    faults: Option<(&FaultyStore, u64)>,
) {
    let mut want: VecDeque<(Key, Value)> =
        model.iter().filter(|(k, _)| contains(start, end, **k)).map(|(k, v)| (*k, *v)).collect();
    let arm = || {
        if let Some((store, n)) = faults {
            store.fail_nth(faulty::Op::Read, n);
        }
    };
    let injected = || faults.map_or(0, |(store, _)| store.injected(faulty::Op::Read));
    // The failures stop with the walk, even one a panic cuts short.
    let _disarm = faults.map(|(store, _)| Disarm(store));
    let mut iter = tree.range((bound(start), bound(end)));
    let mut log = Vec::new();
    let mut steps = backs.iter().copied();
    // Every `backs` step, then as many from the front as the range holds,
    // and one more (past the end); an `Err` does not count as a step.
    let mut drain = want.len() + 1;
    let limit = backs.len() + 4 * (want.len() + 4);
    arm();
    for call in 0.. {
        assert!(call < limit, "{op:?}: the walk does not end: {log:?}");
        let (back, draining) = match steps.next() {
            Some(back) => (back, false),
            None if drain > 0 => (false, true),
            None => break,
        };
        let failures = injected();
        let got = if back { iter.next_back() } else { iter.next() };
        let side = if back { "back" } else { "front" };
        let got = match got.map(|item| item.map(plain)) {
            Some(Err(error)) => {
                assert!(
                    injected() > failures,
                    "{op:?}: {side}: Err with no failure injected: {error} (after {log:?})"
                );
                log.push(format!("{side}: Err"));
                continue;
            }
            Some(Ok(entry)) => Some(entry),
            None => None,
        };
        let expected = if back { want.pop_back() } else { want.pop_front() };
        log.push(format!("{side}: {got:?}"));
        assert!(
            got == expected,
            "{op:?}: {side} yielded {got:?} where the model says {expected:?} (the walk so far {log:?})"
        );
        drain -= usize::from(draining);
        arm();
    }
}

/// Stops the store's read failures when dropped.
struct Disarm<'a>(&'a FaultyStore);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0.fail_nth(faulty::Op::Read, 0);
    }
}

/// Applies `op` to both, panicking with the op if their answers differ.
/// Flush, the reopens and Panicking only flush here; [`Subject::apply`]
/// runs them.
pub fn apply(tree: &Tree, model: &mut Model, op: &Op) {
    use panicky::Key as K;
    match op.clone() {
        Op::Flush | Op::Reopen { .. } | Op::CloseAndReopen { .. } | Op::Panicking { .. } => {
            tree.flush().unwrap()
        }
        Op::Insert(key, value) => {
            assert_eq!(tree.insert(K(key), value).unwrap(), model.insert(key, value), "{op:?}")
        }
        Op::TryInsert(key, value) => {
            let expected = match model.get(&key) {
                Some(current) => Some(*current),
                None => {
                    model.insert(key, value);
                    None
                }
            };
            assert_eq!(tree.try_insert(K(key), value).unwrap(), expected, "{op:?}");
        }
        Op::Remove(key) => assert_eq!(tree.remove(&K(key)).unwrap(), model.remove(&key), "{op:?}"),
        Op::Get(key) => assert_eq!(tree.get(&K(key)).unwrap(), model.get(&key).copied(), "{op:?}"),
        Op::ContainsKey(key) => {
            assert_eq!(tree.contains_key(&K(key)).unwrap(), model.contains_key(&key), "{op:?}")
        }
        Op::CompareAndSwap { key, expected, new } => {
            let current = model.get(&key).copied();
            let want = if current == expected {
                match new {
                    Some(value) => model.insert(key, value),
                    None => model.remove(&key),
                };
                Ok(())
            } else {
                Err(CompareAndSwapError { current, proposed: new })
            };
            assert_eq!(tree.compare_and_swap(K(key), expected.as_ref(), new).unwrap(), want, "{op:?}");
        }
        Op::PopFirst => assert_eq!(tree.pop_first().unwrap().map(plain), model.pop_first(), "{op:?}"),
        Op::PopLast => assert_eq!(tree.pop_last().unwrap().map(plain), model.pop_last(), "{op:?}"),
        Op::First => {
            let want = model.first_key_value().map(|(k, v)| (*k, *v));
            assert_eq!(tree.first_key_value().unwrap().map(plain), want, "{op:?}");
        }
        Op::Last => {
            let want = model.last_key_value().map(|(k, v)| (*k, *v));
            assert_eq!(tree.last_key_value().unwrap().map(plain), want, "{op:?}");
        }
        Op::Len => assert_eq!(tree.len(), model.len(), "{op:?}"),
        Op::Extend(entries) => {
            tree.extend(entries.iter().map(|(k, v)| (K(*k), *v))).unwrap();
            model.extend(entries);
        }
        Op::RemoveRun(start, n) => {
            for key in run(start, n) {
                assert_eq!(tree.remove(&K(key)).unwrap(), model.remove(&key), "{op:?}: remove({key})");
            }
        }
        Op::Drain { .. } | Op::Refill(..) => {
            for step in expand(op, model).expect("a drain or a refill") {
                apply(tree, model, &step);
            }
            check(tree, model, false, &format!("{op:?}"));
        }
        Op::Range { start, end, ref backs, .. } => walk(tree, model, op, (start, end), backs, None),
    }
}

/// Checks the whole tree against the model and its own invariants
/// (`what`: when, for the messages). After an injected panic (`panicked`)
/// a separator may be left unposted.
pub fn check(tree: &Tree, model: &Model, panicked: bool, what: &str) {
    let report = tree.verify().unwrap_or_else(|e| panic!("{what}: verify failed: {e}"));
    assert!(report.is_ok(), "{what}: verify: {report}: {:?}", report.violations);
    if !panicked {
        assert!(report.is_settled(), "{what}: verify: {report}");
    }
    assert_eq!(tree.len(), model.len(), "{what}: len() against the model");
    let all = contents(tree).unwrap_or_else(|e| panic!("{what}: a scan failed: {e}"));
    assert!(
        all.iter().copied().eq(model.iter().map(|(k, v)| (*k, *v))),
        "{what}: tree {all:?}\n  model {model:?}"
    );
    let reversed: Vec<(Key, Value)> =
        tree.iter().rev().map(|e| e.map(plain)).collect::<Result<_, _>>().unwrap();
    assert!(
        reversed.iter().copied().eq(model.iter().rev().map(|(k, v)| (*k, *v))),
        "{what}: reversed scan {reversed:?}\n  model {model:?}"
    );
}
