//! The operation model shared by the differential tests and the fuzz target:
//! every public call of `BTree`, replayed against the tree and against
//! `std::collections::BTreeMap`, with each result compared.
//!
//! The fuzz target includes this file with `#[path]`, and derives
//! `Arbitrary` through `cfg(fuzzing)`.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use ghostbtree::{BTree, CompareAndSwapError, Config, MemoryStore};

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
    /// Checkpoint (trees over a store; a no-op in memory).
    Flush,
    /// Drop the tree and open the store again: what was flushed survives,
    /// what was not is gone (trees over a store; a no-op in memory).
    Reopen,
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

/// A tree under test, in memory or over a store, with its model: the map it
/// must equal, and the maps a checkpoint may hold. A checkpoint may also
/// start on its own (dirty bytes filling the budget) after any operation, so
/// a reopen must show the state after the last flush or after some later
/// operation.
pub struct Subject {
    pub tree: BTree<Key, Value>,
    pub model: BTreeMap<Key, Value>,
    /// The model after the last flush, then after each operation since.
    durable: Vec<BTreeMap<Key, Value>>,
    store: Option<(MemoryStore, Config)>,
}

impl Subject {
    pub fn in_memory(tree: BTree<Key, Value>, model: BTreeMap<Key, Value>) -> Subject {
        Subject { tree, durable: Vec::new(), model, store: None }
    }

    /// A tree over a fresh store holding `initial`, flushed.
    pub fn over_store(config: Config, initial: BTreeMap<Key, Value>) -> Subject {
        let store = MemoryStore::new();
        let tree = BTree::open(store.clone(), config.clone()).unwrap();
        tree.extend(initial.clone()).unwrap();
        tree.flush().unwrap();
        Subject { tree, durable: vec![initial.clone()], model: initial, store: Some((store, config)) }
    }

    pub fn apply(&mut self, op: &Op) {
        match (op, &self.store) {
            (Op::Flush, Some(_)) => {
                self.tree.flush().unwrap();
                self.durable = vec![self.model.clone()];
            }
            (Op::Reopen, Some((store, config))) => {
                self.tree = BTree::open(store.clone(), config.clone()).unwrap();
                let len = self.tree.len();
                let entries: Vec<(Key, Value)> = self.tree.iter().collect::<Result<_, _>>().unwrap();
                assert_eq!(entries.len(), len, "reopened length");
                let Some(state) = self
                    .durable
                    .iter()
                    .rev()
                    .find(|m| m.iter().map(|(k, v)| (*k, *v)).eq(entries.iter().copied()))
                else {
                    panic!(
                        "reopened tree matches no state since the last flush:\n  reopened {entries:?}\n  flushed {:?}\n  now {:?}",
                        self.durable.first(),
                        self.model
                    );
                };
                self.model = state.clone();
                self.durable = vec![self.model.clone()];
            }
            (Op::Flush | Op::Reopen, None) => {}
            (Op::Extend(entries), Some(_)) => {
                // Each insert of an `extend` is an operation: a checkpoint
                // may fall between any two.
                for (key, value) in entries {
                    self.apply(&Op::Insert(*key, *value));
                }
            }
            _ => {
                apply(&self.tree, &mut self.model, op);
                if self.store.is_some() {
                    self.durable.push(self.model.clone());
                }
            }
        }
    }

    pub fn check(&self) {
        check(&self.tree, &self.model);
    }
}

/// Applies `op` to both, panicking with the op if their answers differ.
pub fn apply(tree: &BTree<Key, Value>, model: &mut BTreeMap<Key, Value>, op: &Op) {
    match op.clone() {
        Op::Flush | Op::Reopen => tree.flush().unwrap(),
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
