//! Differential tests: random sequences of every public call, replayed
//! against `BTree` (with tiny nodes, so trees are deep and splits constant)
//! and `std::collections::BTreeMap`; every answer must agree, and `verify()`
//! must pass after each sequence.
//!
//! The tree's keys panic on command (`common::panicky`): some calls run
//! with the `n`th clone or comparison of a key armed to panic, and must
//! then leave the tree as before the call or as after it. Over a store
//! (`common::faulty::FaultyStore`), range walks meet failed reads and go
//! on, and reopens may change the node capacities.

mod common;

use std::collections::BTreeMap;

use common::ops::{End, Key, Op, Subject, Value};
use common::panicky::Trigger;
use ghostbtree::{BTree, Config, Error};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = Key> {
    0..300u16
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![key().prop_map(End::Included), key().prop_map(End::Excluded), Just(End::Unbounded)]
}

/// Every op but `Panicking`.
fn plain_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (key(), any::<Value>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (key(), any::<Value>()).prop_map(|(k, v)| Op::TryInsert(k, v)),
        5 => key().prop_map(Op::Remove),
        2 => (key(), any::<u8>()).prop_map(|(k, n)| Op::RemoveRun(k, n)),
        1 => (key(), 0..300u16, proptest::bool::weighted(0.2))
            .prop_map(|(start, len, all)| Op::Drain { start, len, all }),
        1 => (key(), any::<u8>()).prop_map(|(k, n)| Op::Refill(k, n)),
        2 => key().prop_map(Op::Get),
        1 => key().prop_map(Op::ContainsKey),
        2 => (key(), proptest::option::of(0..4u32), proptest::option::of(0..4u32))
            .prop_map(|(key, expected, new)| Op::CompareAndSwap { key, expected, new }),
        1 => Just(Op::PopFirst),
        1 => Just(Op::PopLast),
        1 => Just(Op::First),
        1 => Just(Op::Last),
        1 => Just(Op::Len),
        1 => proptest::collection::vec((key(), any::<Value>()), 0..20).prop_map(Op::Extend),
        2 => (end(), end(), proptest::collection::vec(any::<bool>(), 0..20), proptest::option::of(any::<u8>()))
            .prop_map(|(start, end, backs, fail)| Op::Range { start, end, backs, fail }),
        1 => Just(Op::Flush),
        1 => (proptest::option::weighted(0.3, any::<u8>()), proptest::option::weighted(0.3, any::<u8>()))
            .prop_map(|(leaf, branch)| Op::Reopen { leaf, branch }),
    ]
}

/// A write (or a read, or a flush) with a clone or comparison of a key
/// armed to panic: at any point of it, from the descent to the root's
/// growth.
fn panicking_op() -> impl Strategy<Value = Op> {
    let trigger = prop_oneof![Just(Trigger::Clone), Just(Trigger::Compare)];
    let op = prop_oneof![
        10 => (key(), any::<Value>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (key(), any::<Value>()).prop_map(|(k, v)| Op::TryInsert(k, v)),
        5 => key().prop_map(Op::Remove),
        1 => (key(), any::<u8>()).prop_map(|(k, n)| Op::RemoveRun(k, n)),
        1 => (key(), 0..40u16).prop_map(|(start, len)| Op::Drain { start, len, all: false }),
        2 => (key(), proptest::option::of(0..4u32), proptest::option::of(0..4u32))
            .prop_map(|(key, expected, new)| Op::CompareAndSwap { key, expected, new }),
        2 => Just(Op::PopFirst),
        2 => Just(Op::PopLast),
        2 => proptest::collection::vec((key(), any::<Value>()), 0..20).prop_map(Op::Extend),
        1 => key().prop_map(Op::Get),
        1 => prop_oneof![Just(Op::First), Just(Op::Last)],
        1 => (end(), end(), proptest::collection::vec(any::<bool>(), 0..20), proptest::option::of(any::<u8>()))
            .prop_map(|(start, end, backs, fail)| Op::Range { start, end, backs, fail }),
        1 => Just(Op::Flush),
    ];
    // In memory a write makes at most ~40 clones or comparisons (tiny
    // nodes, 300 keys); over a store, loads and evictions add more (a
    // hundred or two; a pop's up to ~500, past what a u8 reaches).
    let at = prop_oneof![3 => 1..=64u8, 1 => 65..=255u8];
    (trigger, at, op).prop_map(|(trigger, at, op)| Op::Panicking { trigger, at, op: Box::new(op) })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![35 => plain_op(), 6 => panicking_op()]
}

fn config() -> impl Strategy<Value = Config> {
    (2..6usize, 3..6usize)
        .prop_map(|(leaf, branch)| Config::new().leaf_capacity(leaf).branch_capacity(branch))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 512 }))]

    #[test]
    fn matches_btreemap(config in config(), ops in proptest::collection::vec(op(), 1..400)) {
        let mut subject = Subject::in_memory(BTree::with_config(config).unwrap(), BTreeMap::new());
        for op in &ops {
            subject.apply(op);
        }
        subject.check();
    }

    /// The same over a store with a budget of a few nodes (under 1 KiB in
    /// half the cases, at most 16 KiB): leaves are
    /// evicted and reloaded constantly (so range walks load leaves, and
    /// some of those reads fail), flushes and reopens (some with other
    /// capacities) are in the mix, and a reopen must show a state since
    /// the last flush.
    #[test]
    fn trees_over_a_store_match_too(
        config in config(),
        budget in prop_oneof![1usize..1024, 1024usize..16 << 10],
        initial in proptest::collection::btree_map(key(), any::<Value>(), 0..300),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut subject = Subject::over_store(config.memory_budget(budget), initial);
        for op in &ops {
            subject.apply(op);
        }
        subject.check();
        subject.apply(&Op::Flush);
        subject.apply(&Op::REOPEN);
        subject.check();
    }

    #[test]
    fn bulk_loaded_trees_match_too(
        config in config(),
        initial in proptest::collection::btree_map(key(), any::<Value>(), 0..300),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let tree = BTree::from_sorted(initial.iter().map(|(k, v)| (common::panicky::Key(*k), *v)), config).unwrap();
        let mut subject = Subject::in_memory(tree, initial);
        subject.check();
        for op in &ops {
            subject.apply(op);
        }
        subject.check();
    }
}

/// The file mode of `Subject` (what the `differential_file` fuzz target
/// runs), pinned: a crash of a quiet tree rolls back to the last flush
/// exactly, a clean close loses nothing, and a busy one (checkpoints in
/// the background) shows a state since the last flush.
#[test]
fn trees_in_a_file_roll_back_a_crash_to_the_last_flush() {
    let dir = std::env::temp_dir().join(format!("ghostbtree-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config::new().leaf_capacity(3).branch_capacity(3);
    let quiet =
        config.clone().memory_budget(1 << 30).checkpoint_interval(std::time::Duration::from_secs(3600));
    let busy = config.memory_budget(2 << 10).checkpoint_interval(std::time::Duration::from_millis(1));
    for (config, is_quiet) in [(quiet, true), (busy, false)] {
        let initial: BTreeMap<Key, Value> = (0..20).map(|k| (k, 1)).collect();
        let mut subject = Subject::over_file(&dir.join("tree.gbt"), config, is_quiet, initial);
        subject.apply(&Op::Extend((100..160).map(|k| (k, 2)).collect()));
        subject.apply(&Op::Flush);
        let flushed = subject.model.clone();
        subject.apply(&Op::Drain { start: 0, len: 130, all: false });
        subject.apply(&Op::Refill(500, 40));
        subject.apply(&Op::REOPEN);
        if is_quiet {
            assert_eq!(subject.model, flushed, "a crash keeps exactly the last flush");
        }
        subject.apply(&Op::Refill(700, 30));
        let before = subject.model.clone();
        subject.apply(&Op::CloseAndReopen { leaf: Some(1), branch: None });
        assert_eq!(subject.model, before, "a clean close loses nothing");
        subject.check();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Busy trees in a file (a budget of a few KiB, checkpoints every
/// millisecond in the background) under drains, refills and crashes: the
/// shape in which the `differential_file` fuzz target found checkpoints
/// writing images that lost a node. A root leaf's old version led, by a
/// right link, to a slot detached by its parent's eviction (its
/// description has no right link, which the image walk took for the end
/// of the level), whose live node a merge had since absorbed into its left
/// neighbour (so no descent finds it; `Stored::retired_after`). Timing
/// decides whether a run meets it: about one run in a few hundred did
/// before the fix. `SEEDS` (default 200) scales it.
#[test]
fn busy_trees_in_a_file_survive_drains_and_crashes() {
    use common::rng::Rng;
    let seeds = std::env::var("SEEDS").map_or(200, |s| s.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("ghostbtree-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 0..seeds {
        let mut rng = Rng(seed * 104_729 + 7);
        let config = Config::new()
            .leaf_capacity(2 + rng.below(3) as usize)
            .branch_capacity(3 + rng.below(3) as usize)
            .memory_budget((1 + rng.below(6) as usize) << 10)
            .checkpoint_interval(std::time::Duration::from_millis(1 + rng.below(3)));
        let initial: BTreeMap<Key, Value> = (0..rng.below(200) as Key).map(|k| (k * 3, 1)).collect();
        let mut subject = Subject::over_file(&dir.join("tree.gbt"), config, false, initial);
        for _ in 0..12 {
            let start = rng.below(600) as Key;
            let op = match rng.below(6) {
                0 | 1 => Op::Drain { start, len: rng.below(700) as u16, all: rng.below(2) == 0 },
                2 => Op::Refill(start, rng.below(120) as u8),
                3 => Op::RemoveRun(start, rng.below(16) as u8),
                4 => Op::REOPEN,
                _ => Op::Flush,
            };
            subject.apply(&op);
        }
        subject.apply(&Op::REOPEN);
        subject.apply(&Op::CloseAndReopen { leaf: None, branch: None });
        subject.check();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn from_iter_sorts_and_keeps_the_last_value() {
    let tree: BTree<u32, u32> = [(3, 1), (1, 1), (3, 2), (2, 1)].into_iter().collect();
    let all: Vec<_> = tree.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, [(1, 1), (2, 1), (3, 2)]);
    assert!(tree.verify().unwrap().is_ok());
}

#[test]
fn from_sorted_rejects_unsorted_input() {
    let result = BTree::from_sorted([(1, ()), (3, ()), (3, ())], Config::new());
    assert!(matches!(result.err(), Some(Error::Unsorted { index: 2 })));
    let result = BTree::from_sorted([(2, ()), (1, ())], Config::new());
    assert!(matches!(result.err(), Some(Error::Unsorted { index: 1 })));
}

#[test]
fn invalid_configs_are_errors() {
    let error = BTree::<u8, u8>::with_config(Config::new().leaf_capacity(1)).err().unwrap();
    assert!(matches!(error, Error::InvalidConfig { setting: "leaf_capacity", value: 1, min: 2, max: 65536 }));
    assert_eq!(error.to_string(), "invalid config: leaf_capacity is 1, it must be between 2 and 65536");
    assert!(BTree::<u8, u8>::with_config(Config::new().branch_capacity(2)).is_err());
    assert!(BTree::<u8, u8>::with_config(Config::new().leaf_capacity(usize::MAX)).is_err());
}

#[test]
fn inverted_and_empty_ranges_yield_nothing() {
    let tree: BTree<u32, ()> = (0..100).map(|k| (k, ())).collect();
    #[allow(clippy::reversed_empty_ranges)] // the point of the test
    let inverted = 50..10;
    assert_eq!(tree.range(inverted).count(), 0);
    assert_eq!(tree.range(10..10).count(), 0);
    assert_eq!(tree.range((std::ops::Bound::Excluded(10), std::ops::Bound::Excluded(10))).count(), 0);
    assert_eq!(tree.range((std::ops::Bound::Excluded(10), std::ops::Bound::Excluded(11))).count(), 0);
    assert_eq!(tree.range(10..=10).count(), 1);
}

#[test]
fn large_sequential_and_random_inserts() {
    let config = Config::new().leaf_capacity(8).branch_capacity(4);
    let tree = BTree::with_config(config).unwrap();
    let mut model = BTreeMap::new();
    let n: u32 = if cfg!(miri) { 300 } else { 50_000 };
    for i in 0..n {
        tree.insert(i, i).unwrap();
        model.insert(i, i);
    }
    let mut x = 12345u32;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let key = x % (2 * n);
        if x.is_multiple_of(3) {
            assert_eq!(tree.remove(&key).unwrap(), model.remove(&key));
        } else {
            assert_eq!(tree.insert(key, x).unwrap(), model.insert(key, x));
        }
    }
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.unposted == 0, "{report}");
    assert_eq!(tree.len(), model.len());
    assert!(tree.iter().map(Result::unwrap).eq(model.into_iter()));
}

/// Keys looked up and removed by a borrowed form (`&str` for `String`,
/// `&[u8]` for `Vec<u8>`), as `std`'s `BTreeMap` allows, in memory and
/// over a store with a tiny budget.
#[test]
fn borrowed_keys_work_like_std() {
    let config = Config::new().leaf_capacity(3).branch_capacity(3);
    let store = ghostbtree::MemoryStore::new();
    let in_memory: BTree<String, u32> = BTree::with_config(config.clone()).unwrap();
    let stored: BTree<String, u32> = BTree::open(store, config.clone().memory_budget(1)).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..300u32 {
        let key = format!("key{:04}", i * 7 % 300);
        for tree in [&in_memory, &stored] {
            tree.insert(key.clone(), i).unwrap();
        }
        model.insert(key, i);
    }
    stored.flush().unwrap();
    for i in (0..320u32).step_by(3) {
        let key = format!("key{i:04}");
        let key: &str = &key;
        for tree in [&in_memory, &stored] {
            assert_eq!(tree.get(key).unwrap(), model.get(key).copied(), "{key}");
            assert_eq!(tree.contains_key(key).unwrap(), model.contains_key(key), "{key}");
            assert_eq!(tree.get_with(key, |v| v.copied()).unwrap(), model.get(key).copied(), "{key}");
        }
        if i % 2 == 0 {
            let expected = model.remove(key);
            for tree in [&in_memory, &stored] {
                assert_eq!(tree.remove(key).unwrap(), expected, "{key}");
            }
        }
    }
    for tree in [&in_memory, &stored] {
        let all: Vec<(String, u32)> = tree.iter().collect::<Result<_, _>>().unwrap();
        assert!(all.iter().map(|(k, v)| (k, v)).eq(model.iter()));
        let report = tree.verify().unwrap();
        assert!(report.is_ok(), "{report}");
    }

    let bytes: BTree<Vec<u8>, u8> = BTree::with_config(config).unwrap();
    bytes.insert(b"abc".to_vec(), 1).unwrap();
    assert_eq!(bytes.get(&b"abc"[..]).unwrap(), Some(1));
    assert_eq!(bytes.remove(&b"abc"[..]).unwrap(), Some(1));
    assert!(bytes.is_empty());
}

/// Random removal-heavy runs over a store with injected panics, checking after
/// every step that the tree, a scan and the image a reopen would see agree.
/// `SEEDS` (default 300) and `STEPS` (default 300) scale it; `SEED=n`
/// replays seed `n` alone, printing each step.
#[test]
fn removal_heavy_runs_over_a_store_with_panics() {
    use common::panicky::{Key as P, quiet_injected_panics, with_panic_at};
    use common::rng::Rng;
    quiet_injected_panics();
    let var = |name: &str, default: u64| std::env::var(name).map_or(default, |s| s.parse().unwrap());
    let (seeds, steps) = (var("SEEDS", 300), var("STEPS", 300));
    let only = std::env::var("SEED").ok().map(|seed| seed.parse::<u64>().unwrap());
    for seed in 0..seeds {
        if only.is_some_and(|only| only != seed) {
            continue;
        }
        let mut rng = Rng(seed * 7919 + 1);
        let store = ghostbtree::MemoryStore::new();
        let (leaf, branch) = (2 + rng.below(5) as usize, 3 + rng.below(3) as usize);
        let budget = if rng.below(2) == 0 { 1 << 30 } else { 1 + rng.below(8000) as usize };
        let config = Config::new().leaf_capacity(leaf).branch_capacity(branch).memory_budget(budget);
        let mut tree: BTree<P, u32> = BTree::open(store.clone(), config.clone()).unwrap();
        let mut log = Vec::new();
        let mut panicked = false;
        for step in 0..steps {
            let key = rng.below(120) as u16;
            let r = rng.below(12);
            let at = 1 + rng.below(60) as u32;
            let trigger = if rng.below(2) == 0 { Trigger::Clone } else { Trigger::Compare };
            let armed = rng.below(4) == 0;
            let run = |f: &dyn Fn()| {
                if armed {
                    with_panic_at(trigger, at, f).is_none()
                } else {
                    f();
                    false
                }
            };
            let what = if armed { format!(" ({trigger:?} {at})") } else { String::new() };
            let p = match r {
                0..5 => {
                    log.push(format!("insert {key}{what}"));
                    run(&|| {
                        let _ = tree.insert(P(key), 1).unwrap();
                    })
                }
                5..7 => {
                    let last = rng.below(2) == 0;
                    log.push(format!("pop {}{what}", if last { "last" } else { "first" }));
                    run(&|| {
                        let _ = if last { tree.pop_last() } else { tree.pop_first() }.unwrap();
                    })
                }
                7..10 => {
                    log.push(format!("remove {key}{what}"));
                    run(&|| {
                        let _ = tree.remove(&P(key)).unwrap();
                    })
                }
                10 => {
                    log.push(format!("flush{what}"));
                    run(&|| tree.flush().unwrap())
                }
                _ if rng.below(3) == 0 => {
                    log.push("reopen".into());
                    drop(tree);
                    tree = BTree::open(store.clone(), config.clone()).unwrap();
                    false
                }
                _ => {
                    log.push(format!("scan{what}"));
                    run(&|| {
                        let _ = tree.iter().count();
                    })
                }
            };
            if only.is_some() {
                eprintln!("{step}: {}", log.last().unwrap());
            }
            if p {
                log.push("  ^ panicked".into());
            }
            panicked |= p;
            let at = || format!("seed {seed} step {step} {config:?}\n{}", log.join("; "));
            let image: BTree<P, u32> = BTree::open(store.clone(), Config::new()).unwrap();
            assert_eq!(image.iter().count(), image.len(), "image: {}", at());
            let keys: Vec<u16> = tree.iter().map(|e| e.unwrap().0.0).collect();
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]) && keys.len() == tree.len(),
                "scan {keys:?}: {}",
                at()
            );
            let report = tree.verify().unwrap();
            assert!(report.is_ok() && (panicked || report.is_settled()), "{report}: {}", at());
        }
    }
}
