//! Differential tests: random sequences of every public call, replayed
//! against `BTree` (with tiny nodes, so trees are deep and splits constant)
//! and `std::collections::BTreeMap`; every answer must agree, and `verify()`
//! must pass after each sequence.

mod common;

use std::collections::BTreeMap;

use common::ops::{End, Key, Op, Subject, Value, apply, check};
use ghostbtree::{BTree, Config, Error};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = Key> {
    0..300u16
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![key().prop_map(End::Included), key().prop_map(End::Excluded), Just(End::Unbounded)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (key(), any::<Value>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (key(), any::<Value>()).prop_map(|(k, v)| Op::TryInsert(k, v)),
        5 => key().prop_map(Op::Remove),
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
        2 => (end(), end(), proptest::collection::vec(any::<bool>(), 0..20))
            .prop_map(|(start, end, backs)| Op::Range { start, end, backs }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (2..6usize, 3..6usize)
        .prop_map(|(leaf, branch)| Config::new().leaf_capacity(leaf).branch_capacity(branch))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 512 }))]

    #[test]
    fn matches_btreemap(config in config(), ops in proptest::collection::vec(op(), 1..400)) {
        let tree = BTree::with_config(config).unwrap();
        let mut model = BTreeMap::new();
        for op in &ops {
            apply(&tree, &mut model, op);
        }
        check(&tree, &model);
    }

    /// The same over a store with a budget of a few nodes: leaves are
    /// evicted and reloaded constantly, flushes and reopens are in the mix,
    /// and a reopen must show exactly what the last flush held.
    #[test]
    fn trees_over_a_store_match_too(
        config in config(),
        budget in 1usize..16,
        initial in proptest::collection::btree_map(key(), any::<Value>(), 0..300),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut subject = Subject::over_store(config.memory_budget(budget << 10), initial);
        for op in &ops {
            subject.apply(op);
        }
        subject.check();
        subject.apply(&Op::Flush);
        subject.apply(&Op::Reopen);
        subject.check();
    }

    #[test]
    fn bulk_loaded_trees_match_too(
        config in config(),
        initial in proptest::collection::btree_map(key(), any::<Value>(), 0..300),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let tree = BTree::from_sorted(initial.clone(), config).unwrap();
        let mut model = initial;
        check(&tree, &model);
        for op in &ops {
            apply(&tree, &mut model, op);
        }
        check(&tree, &model);
    }
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
