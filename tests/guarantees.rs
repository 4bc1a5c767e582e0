//! Regression tests for four documented guarantees that did not hold, each
//! named for the promise it guards, each a deterministic reproduction of
//! the way it broke:
//!
//! - a panic in a key's `Clone` or `Ord` during a write made the write take
//!   effect without counting it, so `len()` stayed wrong for good (and a
//!   stored tree wrote the wrong count into its commit record): the leaf
//!   swap took effect, then the posting of the split's separator cloned and
//!   compared keys and its panic skipped the count;
//! - an iterator whose end stepped into an empty leaf and then hit a failed
//!   load lost the position of the last key that end had yielded, so the
//!   other end yielded those keys again;
//! - `pop_first` / `pop_last` read the leaves on the way to the first
//!   non-empty one one at a time and removed from it without checking that
//!   the ones passed were still empty: they could remove a key that was
//!   never the smallest / largest;
//! - a tree reopened with smaller node capacities split an over-full node
//!   in two halves that were both still over capacity, for good.

mod common;

use std::collections::BTreeMap;

use common::faulty::{FaultyStore, Op};
use common::panicky::{Key, Trigger, quiet_injected_panics, with_panic_at};
use ghostbtree::{BTree, Config, Error, MemoryStore};

type Tree = BTree<Key, u32>;

/// Leaves of two entries, branches of three: every few inserts split, and
/// separators are posted two levels up.
fn tiny() -> Config {
    Config::new().leaf_capacity(2).branch_capacity(3)
}

fn contents(tree: &Tree) -> BTreeMap<u16, u32> {
    tree.iter().map(|entry| entry.map(|(k, v)| (k.0, v))).collect::<Result<_, _>>().unwrap()
}

#[track_caller]
fn assert_consistent(tree: &Tree, what: &str) {
    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{what}: {report}");
    assert_eq!(tree.len(), contents(tree).len(), "{what}: len() against the entries");
}

/// The repro: insert 1 and 2, then 3 with a clone of that call
/// panicking (the key type panicked at the 6th, while the split's
/// separator was being posted; the count differs between key types, so
/// every clone is tried).
#[test]
fn a_panic_while_posting_a_split_leaves_len_exact() {
    quiet_injected_panics();
    let mut panicked = 0;
    for n in 1..=12 {
        let tree: Tree = BTree::with_config(tiny()).unwrap();
        tree.insert(Key(1), 1).unwrap();
        tree.insert(Key(2), 2).unwrap();
        panicked += usize::from(with_panic_at(Trigger::Clone, n, || tree.insert(Key(3), 3)).is_none());
        assert_consistent(&tree, &format!("clone {n} panicked"));
        tree.insert(Key(4), 4).unwrap();
        assert_consistent(&tree, &format!("clone {n} panicked, then an insert"));
    }
    assert!(panicked >= 6, "only {panicked} clones panicked");
}

/// A panic at any clone or comparison of any write leaves the tree as it
/// was before the write or as the write left it, never in between: the
/// entries are one of the two, `len()` counts them, `verify()` passes, and
/// over a store a flush and a reopen show the same.
#[test]
fn a_panic_at_any_point_of_a_write_leaves_the_tree_before_or_after_it() {
    quiet_injected_panics();
    type Write = fn(&Tree);
    let writes: [(&str, u16, Write); 6] = [
        ("insert (splits)", 55, |t| drop(t.insert(Key(55), 55))),
        ("insert (replaces)", 50, |t| drop(t.insert(Key(50), 7))),
        ("remove", 50, |t| drop(t.remove(&Key(50)))),
        ("try_insert", 45, |t| drop(t.try_insert(Key(45), 45))),
        ("pop_first", 0, |t| drop(t.pop_first())),
        ("pop_last", 0, |t| drop(t.pop_last())),
    ];
    let mut total = 0;
    for (name, key, write) in writes {
        for kind in [Trigger::Clone, Trigger::Compare] {
            let mut panicked = 0;
            for n in 1..60 {
                for stored in [false, true] {
                    let first = !stored;
                    let store = MemoryStore::new();
                    let tree: Tree = if stored {
                        BTree::open(store.clone(), tiny()).unwrap()
                    } else {
                        BTree::with_config(tiny()).unwrap()
                    };
                    for k in 0..12 {
                        tree.insert(Key(k * 10), u32::from(k)).unwrap();
                    }
                    let before = contents(&tree);
                    let what = format!("{name} of {key}, {kind:?} {n} panics, stored {stored}");
                    if with_panic_at(kind, n, || write(&tree)).is_none() && first {
                        panicked += 1;
                    }
                    let now = contents(&tree);
                    // What the write does when it does not panic:
                    let mut after = before.clone();
                    match name {
                        "insert (splits)" => drop(after.insert(55, 55)),
                        "insert (replaces)" => drop(after.insert(50, 7)),
                        "remove" => drop(after.remove(&50)),
                        "try_insert" => drop(after.entry(45).or_insert(45)),
                        "pop_first" => drop(after.pop_first()),
                        _ => drop(after.pop_last()),
                    }
                    assert!(now == before || now == after, "{what}: {now:?}");
                    assert_consistent(&tree, &what);
                    if stored {
                        tree.flush().unwrap();
                        drop(tree);
                        let reopened: Tree = BTree::open(store, tiny()).unwrap();
                        assert_eq!(contents(&reopened), now, "{what}: reopened");
                        assert_consistent(&reopened, &format!("{what}, reopened"));
                    }
                }
            }
            // Every point of the write was tried: the last ones did not panic.
            assert!(panicked < 59, "{name}: {kind:?} panicked at every point tried");
            total += panicked;
        }
    }
    assert!(total >= 50, "the trigger fired only {total} times");
}

/// Eviction runs inside reads and writes (whoever notices the budget is
/// exceeded turns the clock), and it clones keys into a ghost's
/// description. A panic there must leave every node loadable: the node
/// stays loaded, or becomes a whole ghost.
#[test]
fn a_panic_during_eviction_leaves_every_node_loadable() {
    quiet_injected_panics();
    let store = MemoryStore::new();
    let model: BTreeMap<u16, u32> = (0..400).map(|k| (k * 3, u32::from(k))).collect();
    {
        let tree: Tree = BTree::open(store.clone(), tiny()).unwrap();
        tree.extend(model.iter().map(|(k, v)| (Key(*k), *v))).unwrap();
        tree.flush().unwrap();
    }
    // A budget of a few nodes: nearly every load evicts.
    let tree: Tree = BTree::open(store, tiny().memory_budget(2048)).unwrap();
    let mut x = 1u32;
    let mut panicked = 0;
    for round in 0..3000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let key = (x >> 16) as u16 % 1200;
        let kind = if round % 2 == 0 { Trigger::Clone } else { Trigger::Compare };
        let got = with_panic_at(kind, 1 + (x >> 8) % 40, || tree.get(&Key(key)).unwrap());
        match got {
            Some(value) => assert_eq!(value, model.get(&key).copied(), "key {key}"),
            None => panicked += 1,
        }
    }
    assert!(panicked > 100, "the trigger fired only {panicked} times");
    assert!(tree.stats().evictions > 1000, "{:?}", tree.stats());
    assert_eq!(contents(&tree), model);
    assert_consistent(&tree, "after panics during eviction");
}

/// Leaves `[..30: empty] [30, 40] [50, 60]` under one root, stored: the
/// first leaf emptied while its merge could not read its neighbour (an
/// empty leaf stays only so, or after a panic broke its merge off).
fn stored_with_an_empty_first_leaf() -> (FaultyStore, Config) {
    let store = FaultyStore::new(1);
    let config = Config::new().leaf_capacity(2).branch_capacity(4);
    {
        let tree: BTree<u32, u32> = BTree::open(store.clone(), config.clone()).unwrap();
        for key in [10, 20, 30, 40, 50, 60] {
            tree.insert(key, key).unwrap();
        }
        tree.flush().unwrap();
    }
    let tree: BTree<u32, u32> = BTree::open(store.clone(), config.clone()).unwrap();
    assert_eq!(tree.get(&10).unwrap(), Some(10));
    store.fail(Op::Read, true);
    tree.remove(&10).unwrap();
    tree.remove(&20).unwrap();
    store.clear();
    let report = tree.verify().unwrap();
    assert_eq!((report.height, report.nodes, report.empty), (1, 4, 1), "{report}");
    tree.flush().unwrap();
    (store, config)
}

fn next(range: &mut ghostbtree::Range<'_, u32, u32>, back: bool) -> Option<Result<u32, Error>> {
    let item = if back { range.next_back() } else { range.next() };
    item.map(|entry| entry.map(|(key, _)| key))
}

/// iter.rs: "after an `Err`, the next call retries from the same position",
/// and both ends stop where they meet, from either end and whichever end
/// goes on after the error. The error comes as an end steps to the middle
/// leaf: from the front, out of the empty leaf (the cursor then sat in a
/// leaf it had yielded nothing from, and the other end's stop check was
/// lost), from the back after two keys.
#[test]
fn an_iterator_resumes_after_an_error_without_yielding_a_key_twice() {
    let (store, config) = stored_with_an_empty_first_leaf();
    for first_back in [true, false] {
        for then_back in [true, false] {
            let tree: BTree<u32, u32> = BTree::open(store.clone(), config.clone()).unwrap();
            let mut range = tree.iter();
            let mut yielded = Vec::new();
            if first_back {
                yielded.push(next(&mut range, true).unwrap().unwrap());
                yielded.push(next(&mut range, true).unwrap().unwrap());
            }
            // The middle leaf's read fails (from the front, after the
            // root's and the empty leaf's).
            store.fail_nth(Op::Read, if first_back { 1 } else { 3 });
            let what = format!("first from the back {first_back}, then from the back {then_back}");
            assert!(matches!(next(&mut range, first_back), Some(Err(Error::Io { .. }))), "{what}");
            store.clear();
            while let Some(key) = next(&mut range, then_back) {
                yielded.push(key.unwrap());
            }
            yielded.sort_unstable();
            assert_eq!(yielded, [30, 40, 50, 60], "{what}");
        }
    }
}

/// map.rs: `pop_first` removes the smallest entry at the moment it takes
/// effect. Leaves `[] [30, 40] [50, 60]`, the middle one a ghost: the pop
/// meets the empty leaf, and its merge stops in the middle leaf's read
/// while another thread inserts 5 (which the pop must return then). A pop
/// that stepped over the empty leaf returned 30, and before merges, a pop
/// that stepped over two returned 60.
#[test]
fn pop_first_removes_a_key_that_was_the_smallest() {
    let (store, config) = stored_with_an_empty_first_leaf();
    let tree: BTree<u32, u32> = BTree::open(store.clone(), config).unwrap();
    // Load the root and the outer leaves; the middle one stays a ghost.
    assert_eq!(tree.get(&5).unwrap(), None);
    assert_eq!(tree.get(&60).unwrap(), Some(60));
    let popped = std::thread::scope(|s| {
        let held = store.hold_next_read();
        let pop = s.spawn(|| tree.pop_first().unwrap());
        held.wait_until_holding();
        tree.insert(5, 5).unwrap();
        held.release();
        pop.join().unwrap()
    });
    assert_eq!(popped.expect("the tree was never empty").0, 5, "the smallest when the pop took effect");
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.is_settled(), "{report}");
}

/// node.rs invariant 6: a node built in memory holds at most its capacity.
/// A store written with the default capacities and reopened with tiny
/// ones: each write to a loaded node split it at half, leaving both
/// halves over capacity for good.
#[test]
fn a_tree_reopened_with_smaller_capacities_splits_nodes_to_fit() {
    let store = MemoryStore::new();
    {
        let tree: BTree<u32, u32> = BTree::open(store.clone(), Config::new()).unwrap();
        tree.extend((0..5000).map(|k| (k * 2, k))).unwrap();
        tree.flush().unwrap();
    }
    let tree: BTree<u32, u32> = BTree::open(store.clone(), tiny()).unwrap();
    let mut x = 7u32;
    for _ in 0..5000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        tree.insert((x >> 8) % 10_000 * 2 + 1, x).unwrap();
    }
    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    tree.flush().unwrap();
    drop(tree);
    let tree: BTree<u32, u32> = BTree::open(store, tiny()).unwrap();
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.entries == tree.len(), "{report}");
}

/// `Error::Unsorted`'s message for the first entry has no entry before it.
#[test]
fn error_messages_never_underflow() {
    let message = Error::Unsorted { index: 0 }.to_string();
    assert!(!message.contains("18446744073709551615"), "{message}");
    let message = Error::Unsorted { index: 3 }.to_string();
    assert!(message.contains("entry 3") && message.contains("entry 2"), "{message}");
}
