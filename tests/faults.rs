//! Fault injection: trees over a store whose reads and writes fail (or come
//! back corrupt, or slowly) at chosen or random points.
//!
//! Guards the promises of `Error` and `flush`: a store failure comes back to
//! the caller as an `Err` (a failed load never as a key reported absent),
//! nothing panics or hangs (waiters of a failed load get the error too), a
//! failed operation takes no effect, the tree stays usable and consistent,
//! and once the fault clears every operation that completed is still there:
//! in memory at once, and on reopen after a successful `flush`. A failed
//! `flush` leaves the store's previous checkpoint whole.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Bound;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use common::faulty::{FaultyStore, Op};
use common::rng::Rng;
use ghostbtree::{Address, BTree, Config, Error, Store};

type Tree = BTree<u64, u64>;
type Model = BTreeMap<u64, u64>;

/// Small bounds so the budget is exceeded by a few thousand keys.
const SMALL: usize = 16 << 10;
/// Nothing gets evicted.
const LARGE: usize = 256 << 20;

/// Tiny nodes: deep trees, many records, many loads.
fn tiny(budget: usize) -> Config {
    Config::new().leaf_capacity(4).branch_capacity(4).memory_budget(budget)
}

fn open(store: &FaultyStore, config: &Config) -> Tree {
    BTree::open(store.clone(), config.clone()).expect("open")
}

/// The error of `result`, which must be a store error.
#[track_caller]
fn io_error<T: Debug>(result: Result<T, Error>) -> Error {
    match result {
        Err(error @ Error::Io { .. }) => error,
        other => panic!("expected Err(Error::Io), got {other:?}"),
    }
}

/// `tree` holds exactly `model`, by point lookups over `0..=max_key` and by
/// scans both ways. Run with faults off.
#[track_caller]
fn assert_same(tree: &Tree, model: &Model, max_key: u64) {
    for key in 0..=max_key {
        assert_eq!(tree.get(&key).unwrap(), model.get(&key).copied(), "key {key}");
    }
    let forward: Vec<(u64, u64)> = tree.iter().collect::<Result<_, _>>().unwrap();
    assert!(forward.iter().copied().eq(model.iter().map(|(k, v)| (*k, *v))), "forward scan differs");
    let backward: Vec<(u64, u64)> = tree.iter().rev().collect::<Result<_, _>>().unwrap();
    assert!(backward.iter().copied().eq(model.iter().rev().map(|(k, v)| (*k, *v))), "backward scan differs");
    assert_eq!(tree.len(), model.len());
}

#[track_caller]
fn assert_verifies(tree: &Tree) {
    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{report}");
}

/// A fresh tree (over a fault-free store) opened on `store` equals `model`.
#[track_caller]
fn assert_reopens_as(store: &FaultyStore, config: &Config, model: &Model, max_key: u64) {
    let reopened = open(store, config);
    assert_same(&reopened, model, max_key);
    assert_verifies(&reopened);
}

/// `n` random inserts of keys below `keys`, into the tree and the model.
fn fill(tree: &Tree, model: &mut Model, rng: &mut Rng, n: usize, keys: u64) {
    for _ in 0..n {
        let (key, value) = (rng.below(keys), rng.next());
        assert_eq!(tree.insert(key, value).unwrap(), model.insert(key, value));
    }
}

#[test]
fn failed_reads_are_errors_never_absent_keys() {
    const KEYS: u64 = 3000;
    let store = FaultyStore::new(1);
    let config = tiny(SMALL);
    let mut model = Model::new();
    {
        let tree = open(&store, &config);
        for key in (0..KEYS).step_by(2) {
            tree.insert(key, key * 10).unwrap();
            model.insert(key, key * 10);
        }
        tree.flush().unwrap();
    }

    // Cold: every node a ghost, and no read succeeds.
    let tree = open(&store, &config);
    store.fail(Op::Read, true);
    for key in [0, 1, 1000, 1001, KEYS - 2, KEYS + 100] {
        let error = io_error(tree.get(&key));
        assert!(matches!(error, Error::Io { address: Some(_), .. }), "{error:?}");
        assert!(error.to_string().contains("injected"), "{error}");
        io_error(tree.contains_key(&key));
        io_error(tree.get_with(&key, |value| value.copied()));
    }
    io_error(tree.first_key_value());
    io_error(tree.last_key_value());
    assert!(matches!(tree.iter().next(), Some(Err(Error::Io { .. }))));
    assert!(matches!(tree.iter().next_back(), Some(Err(Error::Io { .. }))));
    assert!(matches!(tree.range(100..200).next(), Some(Err(Error::Io { .. }))));
    assert!(matches!(tree.range(100..=200).next_back(), Some(Err(Error::Io { .. }))));
    // Writes fail too, and take no effect (checked below, faults off).
    io_error(tree.insert(1, 1));
    io_error(tree.insert(2, 2));
    io_error(tree.remove(&4));
    io_error(tree.try_insert(5, 5));
    io_error(tree.compare_and_swap(6, Some(&60), None));
    io_error(tree.pop_first());
    io_error(tree.pop_last());
    io_error(tree.extend([(7, 7), (9, 9)]));
    io_error(tree.verify());
    assert_eq!(tree.len(), model.len());
    assert_eq!(tree.stats().loads, 0);
    assert!(store.injected(Op::Read) > 0);

    // Faults off: everything is there, nothing of the failed writes.
    store.fail(Op::Read, false);
    assert_same(&tree, &model, KEYS + 10);
    assert_verifies(&tree);
    let stats = tree.stats();
    assert!(stats.loads > 0 && stats.evictions > 0, "{stats:?}");

    // Warm and over budget: part resident, part evicted. Scans meet ghosts
    // midway; after an `Err` the iterator retries from where it was.
    store.fail_randomly(Op::Read, 0.5);
    for backward in [false, true] {
        let mut scan = tree.range(100..2900);
        let (mut seen, mut errors) = (Vec::new(), 0);
        loop {
            let item = if backward { scan.next_back() } else { scan.next() };
            match item {
                None => break,
                Some(Ok(entry)) => seen.push(entry),
                Some(Err(error)) => {
                    assert!(matches!(error, Error::Io { .. }), "{error:?}");
                    errors += 1;
                    assert!(errors < 100_000, "the scan makes no progress");
                }
            }
        }
        if backward {
            seen.reverse();
        }
        let expected: Vec<(u64, u64)> = model.range(100..2900).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(seen, expected, "backward: {backward}");
        assert!(errors > 0, "no read failed during the scan (backward: {backward})");
    }
    store.clear();
    assert_same(&tree, &model, KEYS + 10);
    assert_verifies(&tree);
}

/// After a write returned `Err`, the key still has the model's value (looked
/// up with faults off, then the faults go back on).
#[track_caller]
fn assert_no_effect(tree: &Tree, store: &FaultyStore, model: &Model, key: u64, p: f64) {
    store.fail_randomly(Op::Read, 0.0);
    assert_eq!(tree.get(&key).unwrap(), model.get(&key).copied(), "a failed write to {key} took effect");
    store.fail_randomly(Op::Read, p);
}

#[test]
fn random_read_faults_during_a_random_workload() {
    const KEYS: u64 = 3000;
    const P: f64 = 0.2;
    let ops = if cfg!(debug_assertions) { 8_000 } else { 30_000 };
    let store = FaultyStore::new(2);
    let config = tiny(SMALL);
    let tree = open(&store, &config);
    let mut model = Model::new();
    let mut rng = Rng(0x1234_5678);
    fill(&tree, &mut model, &mut rng, 2000, KEYS);
    tree.flush().unwrap();

    store.fail_randomly(Op::Read, P);
    let mut errors = 0;
    for step in 0..ops {
        let key = rng.below(KEYS);
        match rng.below(12) {
            0..=3 => match tree.get(&key) {
                Ok(value) => assert_eq!(value, model.get(&key).copied(), "get {key} at step {step}"),
                Err(error) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                }
            },
            4..=5 => match tree.insert(key, step) {
                Ok(old) => assert_eq!(old, model.insert(key, step), "insert {key} at step {step}"),
                Err(error) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                    assert_no_effect(&tree, &store, &model, key, P);
                }
            },
            6..=7 => match tree.remove(&key) {
                Ok(old) => assert_eq!(old, model.remove(&key), "remove {key} at step {step}"),
                Err(error) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                    assert_no_effect(&tree, &store, &model, key, P);
                }
            },
            8 => match tree.try_insert(key, step) {
                Ok(present) => {
                    assert_eq!(present, model.get(&key).copied(), "try_insert {key} at step {step}");
                    model.entry(key).or_insert(step);
                }
                Err(error) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                    assert_no_effect(&tree, &store, &model, key, P);
                }
            },
            9 => match tree.pop_first() {
                Ok(popped) => assert_eq!(popped, model.pop_first(), "pop_first at step {step}"),
                Err(error) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                    let first = model.first_key_value().map(|(k, _)| *k).unwrap_or(0);
                    assert_no_effect(&tree, &store, &model, first, P);
                }
            },
            _ => {
                let end = key + rng.below(40);
                let scan = tree.range(key..end);
                let got: Result<Vec<(u64, u64)>, Error> =
                    if step % 2 == 0 { scan.collect() } else { scan.rev().collect() };
                match got {
                    Ok(mut got) => {
                        if step % 2 == 1 {
                            got.reverse();
                        }
                        let expected: Vec<(u64, u64)> =
                            model.range(key..end).map(|(k, v)| (*k, *v)).collect();
                        assert_eq!(got, expected, "range {key}..{end} at step {step}");
                    }
                    Err(error) => {
                        io_error::<()>(Err(error));
                        errors += 1;
                    }
                }
            }
        }
    }
    let stats = tree.stats();
    assert!(errors > 0 && store.injected(Op::Read) > 0, "no fault was injected");
    assert!(stats.loads > 0 && stats.evictions > 0, "{stats:?}");

    store.clear();
    assert_same(&tree, &model, KEYS);
    assert_verifies(&tree);
    tree.flush().unwrap();
    assert_reopens_as(&store, &config, &model, KEYS);
}

/// A tree whose store holds a checkpoint of `flushed`, and that holds
/// `current` (changes since: updates, removals, inserts and splits).
/// `flushed` is `None` if a small budget made the changes checkpoint too.
/// Without `splits`, the changes only update and remove: every leaf and
/// branch keeps its slot and every branch its version.
fn flushed_then_changed(store: &FaultyStore, config: &Config, splits: bool) -> (Tree, Option<Model>, Model) {
    let tree = open(store, config);
    let mut model = Model::new();
    for i in 0..400u64 {
        tree.insert(i * 3, i).unwrap();
        model.insert(i * 3, i);
    }
    tree.flush().unwrap();
    let flushed = model.clone();
    for i in 0..400u64 {
        let key = i * 3;
        if i % 7 == 0 {
            assert_eq!(tree.insert(key, i + 1000).unwrap(), model.insert(key, i + 1000));
        }
        if i % 11 == 0 {
            assert_eq!(tree.remove(&key).unwrap(), model.remove(&key));
        }
        if splits && i % 4 == 0 {
            assert_eq!(tree.insert(key + 1, i).unwrap(), model.insert(key + 1, i));
        }
    }
    // Whatever writers wrote back on their own (a small budget), the flush
    // has leaves to write: updates until 4 KiB are dirty, under any
    // threshold of a write back.
    let present: Vec<u64> = model.keys().copied().collect();
    for (i, key) in present.iter().step_by(37).cycle().enumerate() {
        if tree.stats().dirty_bytes >= 4 << 10 {
            break;
        }
        let value = 5000 + i as u64;
        assert_eq!(tree.insert(*key, value).unwrap(), model.insert(*key, value));
    }
    let flushed = (tree.stats().checkpoints == 1).then_some(flushed);
    (tree, flushed, model)
}

#[test]
fn a_failed_flush_keeps_the_data_and_the_previous_checkpoint() {
    const MAX_KEY: u64 = 1300;
    for op in [Op::Append, Op::Sync, Op::WriteCommit] {
        for budget in [LARGE, SMALL] {
            let store = FaultyStore::new(3);
            let config = tiny(budget);
            let (tree, flushed, mut model) = flushed_then_changed(&store, &config, true);
            let checkpoints = tree.stats().checkpoints;

            store.fail(op, true);
            let error = io_error(tree.flush());
            assert!(error.to_string().contains("injected"), "{op:?}: {error}");
            io_error(tree.flush()); // and again
            assert_eq!(tree.stats().checkpoints, checkpoints, "{op:?}");
            assert!(store.injected(op) >= 2, "{op:?}");

            // The tree works and holds everything, also what is written now.
            assert_same(&tree, &model, MAX_KEY);
            assert_verifies(&tree);
            for key in (0..MAX_KEY).step_by(13) {
                assert_eq!(tree.insert(key, key).unwrap(), model.insert(key, key), "{op:?}");
            }
            // The store still holds the previous checkpoint, whole.
            if let Some(flushed) = &flushed {
                assert_reopens_as(&store, &config, flushed, MAX_KEY);
            }

            store.clear();
            tree.flush().unwrap();
            assert_eq!(tree.stats().checkpoints, checkpoints + 1, "{op:?}");
            assert_same(&tree, &model, MAX_KEY);
            assert_reopens_as(&store, &config, &model, MAX_KEY);
        }
    }
}

#[test]
fn a_flush_failing_at_any_append_loses_nothing() {
    flush_failing_at_each_append(true);
}

#[test]
fn a_flush_failing_at_any_append_loses_no_in_place_update() {
    flush_failing_at_each_append(false);
}

/// For every `n`: a flush whose `n`th append fails, then one that works.
fn flush_failing_at_each_append(splits: bool) {
    const MAX_KEY: u64 = 1300;
    // Every append in release builds; a sample of them in slow debug ones.
    let stride = if cfg!(debug_assertions) { 5 } else { 1 };
    for budget in [LARGE, SMALL] {
        for n in (1..).step_by(stride) {
            let store = FaultyStore::new(4);
            let config = tiny(budget);
            let (tree, flushed, mut model) = flushed_then_changed(&store, &config, splits);
            store.fail_nth(Op::Append, n);
            if tree.flush().is_ok() {
                // A small budget's writers write back on their own (dirty
                // bytes stay under three eighths of it): fewer are left.
                let least = if budget == SMALL { 5 } else { 10 };
                assert!(n > least, "a flush should append more than {n} records (budget {budget})");
                assert_eq!(store.injected(Op::Append), 0);
                break;
            }
            assert_eq!(store.injected(Op::Append), 1);
            assert_same(&tree, &model, MAX_KEY);
            if let Some(flushed) = &flushed {
                assert_reopens_as(&store, &config, flushed, MAX_KEY);
            }
            // A few more writes (that could mask a lost write: only with
            // splits), then a flush that works.
            for key in (n % 7..MAX_KEY).step_by(29).filter(|_| splits) {
                assert_eq!(tree.insert(key, n).unwrap(), model.insert(key, n));
            }
            tree.flush().unwrap();
            assert_same(&tree, &model, MAX_KEY);
            let reopened = open(&store, &config);
            for key in 0..=MAX_KEY {
                assert_eq!(
                    reopened.get(&key).unwrap(),
                    model.get(&key).copied(),
                    "key {key} after a flush whose append #{n} failed (budget {budget}, splits {splits}), \
                     then a good flush"
                );
            }
            assert_same(&reopened, &model, MAX_KEY);
        }
    }
}

#[test]
fn failing_automatic_checkpoints_do_not_fail_writes() {
    automatic_checkpoints_with_faults(0.0);
}

#[test]
fn automatic_checkpoints_broken_off_midway_lose_nothing() {
    automatic_checkpoints_with_faults(0.001);
}

/// Writes on a small budget while every append fails, then while syncs,
/// commit writes and (with probability `append_p`) appends fail.
fn automatic_checkpoints_with_faults(append_p: f64) {
    const KEYS: u64 = 6000;
    let store = FaultyStore::new(5);
    let config = tiny(SMALL);
    let tree = open(&store, &config);
    let mut model = Model::new();
    let mut rng = Rng(0xdead_beef);

    // Every append fails: dirty bytes pass half the budget, the writers'
    // checkpoints fail, and the writes still succeed.
    store.fail(Op::Append, true);
    fill(&tree, &mut model, &mut rng, 3000, KEYS);
    let stats = tree.stats();
    assert!(store.injected(Op::Append) > 0, "no automatic checkpoint was tried: {stats:?}");
    assert_eq!(stats.checkpoints, 0, "{stats:?}");
    assert!(stats.dirty_bytes > SMALL as u64 / 2, "{stats:?}");
    assert_same(&tree, &model, KEYS);

    // Some checkpoints fail after their appends (or, with `append_p`,
    // midway); leaves stored by them are evicted and loaded again.
    store.fail(Op::Append, false);
    store.fail_randomly(Op::Append, append_p);
    store.fail_randomly(Op::Sync, 0.3);
    store.fail_randomly(Op::WriteCommit, 0.3);
    for step in 0..6000u64 {
        let key = rng.below(KEYS);
        if step % 3 == 0 {
            assert_eq!(tree.remove(&key).unwrap(), model.remove(&key));
        } else {
            assert_eq!(tree.insert(key, step).unwrap(), model.insert(key, step));
        }
    }
    let stats = tree.stats();
    assert!(stats.checkpoints > 0, "{stats:?}");
    assert!(stats.evictions > 0 && stats.loads > 0, "{stats:?}");
    let injected: u64 =
        [Op::Append, Op::Sync, Op::WriteCommit].into_iter().map(|op| store.injected(op)).sum();
    assert!(injected > 3, "only {injected} faults injected");
    assert_same(&tree, &model, KEYS);
    assert_verifies(&tree);

    store.clear();
    tree.flush().unwrap();
    assert_reopens_as(&store, &config, &model, KEYS);
}

#[test]
fn a_corrupt_record_is_reported_with_its_address() {
    const KEYS: u64 = 400;
    let store = FaultyStore::new(6);
    let config = tiny(LARGE);
    let mut model = Model::new();
    {
        let tree = open(&store, &config);
        for key in 0..KEYS {
            tree.insert(key, key + 1).unwrap();
            model.insert(key, key + 1);
        }
        tree.flush().unwrap(); // one checkpoint: every record is in the tree
    }
    // A leaf record from the middle of the store (byte 1 is the node kind).
    let records = store.memory().records() as u64;
    let leaf = (records / 2..=records)
        .map(Address)
        .find(|&address| store.memory().read(address).unwrap()[1] == 0)
        .expect("a leaf record");
    store.corrupt(Some(leaf));

    let tree = open(&store, &config);
    let mut corrupt = Vec::new();
    for key in 0..KEYS {
        match tree.get(&key) {
            Ok(value) => assert_eq!(value, model.get(&key).copied(), "key {key}"),
            Err(Error::Corrupt { address, what }) => {
                assert_eq!(address, Some(leaf), "{what}");
                corrupt.push(key);
            }
            Err(other) => panic!("key {key}: {other:?}"),
        }
    }
    // Exactly the keys of one leaf, a contiguous run.
    assert!((1..=4).contains(&corrupt.len()), "{corrupt:?}");
    assert_eq!(corrupt.last().unwrap() - corrupt[0], corrupt.len() as u64 - 1, "{corrupt:?}");
    let error = tree.get(&corrupt[0]).unwrap_err();
    assert!(error.to_string().contains(&leaf.to_string()), "{error}");
    // Writes to the leaf fail the same way and change nothing.
    assert!(matches!(tree.insert(corrupt[0], 0), Err(Error::Corrupt { .. })));
    // A scan stops at the leaf with the error; one around it works.
    let error = tree.iter().find_map(Result::err).expect("the scan meets the corrupt leaf");
    assert!(matches!(error, Error::Corrupt { address: Some(a), .. } if a == leaf), "{error:?}");
    let after: Vec<(u64, u64)> = tree.range(corrupt.last().unwrap() + 1..).collect::<Result<_, _>>().unwrap();
    assert_eq!(after.len() as u64, KEYS - 1 - corrupt.last().unwrap());
    assert!(tree.verify().is_err());

    // The record reads back clean: the node loads.
    store.corrupt(None);
    assert_same(&tree, &model, KEYS);
    assert_verifies(&tree);
}

#[test]
fn open_reports_a_failed_or_corrupt_commit_record() {
    let store = FaultyStore::new(7);
    {
        let tree = open(&store, &tiny(LARGE));
        tree.insert(1, 1).unwrap();
        tree.flush().unwrap();
    }
    store.fail(Op::ReadCommit, true);
    io_error(Tree::open(store.clone(), tiny(LARGE)));
    store.fail(Op::ReadCommit, false);
    assert_eq!(open(&store, &tiny(LARGE)).get(&1).unwrap(), Some(1));

    store.memory().write_commit(b"not a commit record").unwrap();
    match Tree::open(store.clone(), tiny(LARGE)) {
        Err(Error::Corrupt { address: None, .. }) => {}
        other => panic!("expected a corrupt commit record, got {:?}", other.map(|_| ())),
    }
}

/// Runs `work` on `threads` threads and fails the test if they are not all
/// done within `limit` (a hang: a waiter never woken).
fn run_threads<F>(threads: usize, limit: Duration, work: F)
where
    F: Fn(usize) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let (done, finished) = mpsc::channel();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (work, done) = (Arc::clone(&work), done.clone());
            std::thread::spawn(move || {
                work(t);
                done.send(t).unwrap();
            })
        })
        .collect();
    let deadline = Instant::now() + limit;
    for _ in 0..threads {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            // A thread panicked (its join shows why) or hangs.
            for handle in handles.into_iter().filter(|handle| handle.is_finished()) {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            panic!("threads still running after {limit:?}: a hang");
        }
    }
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn concurrent_gets_with_random_read_faults() {
    const KEYS: u64 = 3000;
    let store = FaultyStore::new(8);
    let config = tiny(SMALL);
    let mut model = Model::new();
    {
        let tree = open(&store, &config);
        let mut rng = Rng(42);
        fill(&tree, &mut model, &mut rng, 2000, KEYS);
        tree.flush().unwrap();
    }
    let tree = Arc::new(open(&store, &config));
    let model = Arc::new(model);
    store.fail_randomly(Op::Read, 0.3);
    let gets = if cfg!(debug_assertions) { 3_000 } else { 20_000 };
    {
        let (tree, model) = (Arc::clone(&tree), Arc::clone(&model));
        run_threads(4, Duration::from_secs(60), move |t| {
            let mut rng = Rng(t as u64 + 1);
            let mut errors = 0;
            for _ in 0..gets {
                // Half the gets on a small hot set, so threads meet on loads.
                let key = if rng.below(2) == 0 { rng.below(64) } else { rng.below(KEYS) };
                match tree.get(&key) {
                    Ok(value) => assert_eq!(value, model.get(&key).copied(), "key {key}"),
                    Err(Error::Io { .. }) => errors += 1,
                    Err(other) => panic!("key {key}: {other:?}"),
                }
            }
            assert!(errors > 0, "thread {t}: no get failed");
        });
    }
    let stats = tree.stats();
    assert!(stats.loads > 0 && stats.evictions > 0, "{stats:?}");
    println!("{stats:?}, {} reads failed", store.injected(Op::Read));

    store.clear();
    assert_same(&tree, &model, KEYS);
    assert_verifies(&tree);
}

#[test]
fn threads_waiting_on_a_failed_load_get_the_error() {
    let store = FaultyStore::new(9);
    let config = tiny(LARGE);
    {
        let tree = open(&store, &config);
        for key in 0..100 {
            tree.insert(key, key).unwrap();
        }
        tree.flush().unwrap();
    }
    // A slow store that fails: the first thread to miss on the root loads
    // it, the others wait for it, and all must get the error. Retried until
    // a wait actually happened (threads may not overlap on a busy machine).
    for attempt in 0.. {
        let tree = Arc::new(open(&store, &config));
        store.read_delay(Duration::from_millis(30));
        store.fail(Op::Read, true);
        let barrier = Arc::new(Barrier::new(4));
        {
            let tree = Arc::clone(&tree);
            run_threads(4, Duration::from_secs(30), move |t| {
                barrier.wait();
                io_error(tree.get(&(t as u64 * 10)));
            });
        }
        store.clear();
        for key in 0..100 {
            assert_eq!(tree.get(&key).unwrap(), Some(key));
        }
        if tree.stats().load_waits > 0 {
            break;
        }
        assert!(attempt < 20, "no thread ever waited for another's load");
    }
}

/// Writers on disjoint keys, a reader and a flusher, with read and append
/// faults: every completed write survives, in memory and on reopen.
#[test]
fn concurrent_writes_and_flushes_with_faults() {
    concurrent_writes_and_flushes(0.0);
}

#[test]
fn concurrent_writes_and_flushes_with_append_faults() {
    concurrent_writes_and_flushes(0.01);
}

/// `WRITERS` threads on disjoint keys and a flusher, with read, sync and
/// (with probability `append_p`) append faults.
fn concurrent_writes_and_flushes(append_p: f64) {
    const KEYS: u64 = 4000;
    const WRITERS: u64 = 3;
    let store = FaultyStore::new(10);
    let config = tiny(SMALL);
    let tree = Arc::new(open(&store, &config));
    store.fail_randomly(Op::Read, 0.1);
    store.fail_randomly(Op::Append, append_p);
    store.fail_randomly(Op::Sync, 0.2);
    store.fail_randomly(Op::WriteCommit, 0.1);
    let ops = if cfg!(debug_assertions) { 2_000 } else { 8_000 };
    let (models, collect) = mpsc::channel();
    {
        let tree = Arc::clone(&tree);
        run_threads(WRITERS as usize + 1, Duration::from_secs(60), move |t| {
            let t = t as u64;
            if t == WRITERS {
                // The flusher: flushes fail or not; the tree goes on.
                for _ in 0..40 {
                    let _ = tree.flush();
                    std::thread::sleep(Duration::from_millis(2));
                }
                return;
            }
            let mut model = Model::new();
            let mut rng = Rng(t + 100);
            for step in 0..ops {
                let key = rng.below(KEYS / WRITERS) * WRITERS + t; // this writer's keys
                let result = if step % 4 == 0 {
                    tree.remove(&key).map(|old| (old, model.get(&key).copied(), None))
                } else {
                    tree.insert(key, step).map(|old| (old, model.get(&key).copied(), Some(step)))
                };
                match result {
                    Ok((old, expected, new)) => {
                        assert_eq!(old, expected, "writer {t}, key {key}");
                        match new {
                            Some(value) => model.insert(key, value),
                            None => model.remove(&key),
                        };
                    }
                    Err(Error::Io { .. }) => {}
                    Err(other) => panic!("writer {t}, key {key}: {other:?}"),
                }
            }
            models.send(model).unwrap();
        });
    }
    let model: Model = collect.try_iter().flatten().collect();
    store.clear();
    assert_same(&tree, &model, KEYS);
    assert_verifies(&tree);
    tree.flush().unwrap();
    assert_reopens_as(&store, &config, &model, KEYS);
}

/// A range with every kind of bound still answers right under faults (the
/// bounds decide where an interrupted scan resumes).
#[test]
fn scans_with_excluded_bounds_resume_after_errors() {
    const KEYS: u64 = 2000;
    let store = FaultyStore::new(11);
    let config = tiny(SMALL);
    let tree = open(&store, &config);
    let mut model = Model::new();
    let mut rng = Rng(77);
    fill(&tree, &mut model, &mut rng, 1500, KEYS);
    tree.flush().unwrap();
    let tree = open(&store, &config);
    store.fail_randomly(Op::Read, 0.4);
    for round in 0..40u64 {
        let (a, b) = (rng.below(KEYS), rng.below(KEYS));
        let bounds = (Bound::Excluded(a.min(b)), Bound::Excluded(a.max(b)));
        let mut scan = tree.range(bounds);
        let (mut front, mut back, mut errors) = (Vec::new(), Vec::new(), 0);
        // Alternate ends, retrying after each error.
        loop {
            let from_front = (front.len() + back.len() + errors) % 2 == 0;
            let item = if from_front { scan.next() } else { scan.next_back() };
            match item {
                None => break,
                Some(Ok(entry)) if from_front => front.push(entry),
                Some(Ok(entry)) => back.push(entry),
                Some(Err(error)) => {
                    io_error::<()>(Err(error));
                    errors += 1;
                    assert!(errors < 100_000, "round {round}: no progress");
                }
            }
        }
        back.reverse();
        front.extend(back);
        let expected: Vec<(u64, u64)> = model.range(bounds).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(front, expected, "round {round}: {bounds:?}");
    }
}

/// The smallest case of a lost write: one value updated in place (no split,
/// so the leaf's parent keeps its stored version), a flush whose second
/// append (the parent's new image, after the leaf's) fails, then a flush that
/// works.
#[test]
fn a_flush_failing_after_a_leaf_but_before_its_parent_loses_nothing() {
    let store = FaultyStore::new(12);
    let config = tiny(LARGE);
    let tree = open(&store, &config);
    for key in 0..100 {
        tree.insert(key, key).unwrap();
    }
    tree.flush().unwrap();
    tree.insert(50, 5000).unwrap();
    let appends = store.calls(Op::Append);
    store.fail_nth(Op::Append, 2);
    io_error(tree.flush());
    assert_eq!(store.calls(Op::Append) - appends, 2, "the leaf, then its parent");
    tree.flush().unwrap();
    assert_eq!(tree.get(&50).unwrap(), Some(5000));
    let reopened = open(&store, &config);
    assert_eq!(reopened.get(&50).unwrap(), Some(5000), "the update is lost on reopen");
}

/// A checkpoint of the checkpoint thread that fails is not swallowed: its
/// error stays in `health()` and `stats()` until one succeeds, `flush`
/// returns the store's error while it lasts, reads go on, and the thread
/// tries again: once the store recovers, everything is there on reopen.
#[test]
fn a_failing_background_checkpoint_is_kept_reported_and_retried() {
    let store = FaultyStore::new(17);
    let config = tiny(LARGE).checkpoint_interval(Duration::from_millis(2));
    let tree = open(&store, &config);
    store.fail(Op::Sync, true);
    for key in 0..500 {
        tree.insert(key, key).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while tree.stats().checkpoint_failures == 0 {
        assert!(Instant::now() < deadline, "no background checkpoint ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let error = tree.health().expect_err("a failed checkpoint is reported");
    assert!(error.to_string().contains("injected Sync failure"), "{error}");
    let stats = tree.stats();
    assert!(stats.last_checkpoint_error.as_deref().is_some_and(|e| e.contains("injected")), "{stats:?}");
    assert_eq!(tree.get(&7).unwrap(), Some(7), "reads go on");
    assert!(tree.flush().is_err(), "flush reports the store's trouble while it lasts");
    store.clear();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tree.health().is_err() || tree.stats().dirty_bytes > 0 {
        assert!(Instant::now() < deadline, "the thread did not try again");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(tree.stats().last_checkpoint_error, None);
    drop(tree);
    let reopened = open(&store, &tiny(LARGE));
    assert_eq!(reopened.len(), 500);
    assert!((0..500).all(|key| reopened.get(&key).unwrap() == Some(key)));
}
