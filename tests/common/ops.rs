//! The operation model shared by the differential tests and the fuzz target:
//! every public call of `BTree`, replayed against the tree and against
//! `std::collections::BTreeMap`, with each result compared.
//!
//! The fuzz target includes this file with `#[path]`, and derives
//! `Arbitrary` through `cfg(fuzzing)`.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use ghostbtree::{BTree, CompareAndSwapError};

pub type Key = u16;
pub type Value = u32;

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
    /// A range walked from both ends: `true` takes from the back.
    Range {
        start: End,
        end: End,
        backs: Vec<bool>,
    },
}

fn bound(end: End) -> Bound<Key> {
    match end {
        End::Included(key) => Bound::Included(key),
        End::Excluded(key) => Bound::Excluded(key),
        End::Unbounded => Bound::Unbounded,
    }
}

fn contains(range: &(Bound<Key>, Bound<Key>), key: Key) -> bool {
    let above = match range.0 {
        Bound::Included(start) => key >= start,
        Bound::Excluded(start) => key > start,
        Bound::Unbounded => true,
    };
    let below = match range.1 {
        Bound::Included(end) => key <= end,
        Bound::Excluded(end) => key < end,
        Bound::Unbounded => true,
    };
    above && below
}

/// Applies `op` to both, panicking with the op if their answers differ.
pub fn apply(tree: &BTree<Key, Value>, model: &mut BTreeMap<Key, Value>, op: &Op) {
    match op.clone() {
        Op::Insert(key, value) => {
            assert_eq!(tree.insert(key, value).unwrap(), model.insert(key, value), "{op:?}")
        }
        Op::TryInsert(key, value) => {
            let expected = match model.get(&key) {
                Some(current) => Some(*current),
                None => {
                    model.insert(key, value);
                    None
                }
            };
            assert_eq!(tree.try_insert(key, value).unwrap(), expected, "{op:?}");
        }
        Op::Remove(key) => assert_eq!(tree.remove(&key).unwrap(), model.remove(&key), "{op:?}"),
        Op::Get(key) => assert_eq!(tree.get(&key).unwrap(), model.get(&key).copied(), "{op:?}"),
        Op::ContainsKey(key) => {
            assert_eq!(tree.contains_key(&key).unwrap(), model.contains_key(&key), "{op:?}")
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
            assert_eq!(tree.compare_and_swap(key, expected.as_ref(), new).unwrap(), want, "{op:?}");
        }
        Op::PopFirst => assert_eq!(tree.pop_first().unwrap(), model.pop_first(), "{op:?}"),
        Op::PopLast => assert_eq!(tree.pop_last().unwrap(), model.pop_last(), "{op:?}"),
        Op::First => {
            let want = model.first_key_value().map(|(k, v)| (*k, *v));
            assert_eq!(tree.first_key_value().unwrap(), want, "{op:?}");
        }
        Op::Last => {
            let want = model.last_key_value().map(|(k, v)| (*k, *v));
            assert_eq!(tree.last_key_value().unwrap(), want, "{op:?}");
        }
        Op::Len => assert_eq!(tree.len(), model.len(), "{op:?}"),
        Op::Extend(entries) => {
            tree.extend(entries.iter().copied()).unwrap();
            model.extend(entries);
        }
        Op::Range { start, end, backs } => {
            let range = (bound(start), bound(end));
            let mut want: VecDeque<(Key, Value)> =
                model.iter().filter(|(k, _)| contains(&range, **k)).map(|(k, v)| (*k, *v)).collect();
            let mut iter = tree.range(range);
            // Walk as `backs` says, then drain the front.
            for &back in backs.iter().chain(std::iter::repeat_n(&false, want.len() + 1)) {
                let (got, expected) =
                    if back { (iter.next_back(), want.pop_back()) } else { (iter.next(), want.pop_front()) };
                assert_eq!(got.transpose().unwrap(), expected, "{op:?}");
            }
        }
    }
}

/// Checks the whole tree against the model and its own invariants.
pub fn check(tree: &BTree<Key, Value>, model: &BTreeMap<Key, Value>) {
    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unposted, 0, "{report}");
    assert_eq!(tree.len(), model.len());
    let all: Vec<(Key, Value)> = tree.iter().collect::<Result<_, _>>().unwrap();
    assert!(all.iter().copied().eq(model.iter().map(|(k, v)| (*k, *v))));
    let reversed: Vec<(Key, Value)> = tree.iter().rev().collect::<Result<_, _>>().unwrap();
    assert!(reversed.iter().copied().eq(model.iter().rev().map(|(k, v)| (*k, *v))));
}
