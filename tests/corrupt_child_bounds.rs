//! Regression: a child record whose bounds differ from its parent's
//! separators loaded anyway, and its right link, found from its high key,
//! could lead back to itself: a descent moving right went round for ever.
//! The `decode` fuzz target found it in a damaged file whose checksums
//! held (a branch's separator changed from 108 to 108 + 2^56, so the child
//! before it, ending at 108, became its own right neighbour); here the
//! records are written by hand into a `MemoryStore`. A child record must
//! now sit exactly where its bounds say, or it is `Error::Corrupt`.

use std::sync::mpsc;
use std::time::Duration;

use ghostbtree::{BTree, Config, Error, MemoryStore, Store};

const LEAF: u8 = 0;
const BRANCH: u8 = 1;

/// A node record (`src/engine/format.rs`) with `u64` keys and values.
fn record(kind: u8, level: u8, low: Option<u64>, high: Option<u64>, keys: &[u64], tail: &[u64]) -> Vec<u8> {
    let count = if kind == LEAF { keys.len() } else { tail.len() };
    let flags = u8::from(low.is_some()) | u8::from(high.is_some()) << 1;
    let mut out = vec![1, kind, level, flags];
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for word in low.iter().chain(&high).chain(keys).chain(tail) {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn leaf(store: &MemoryStore, low: Option<u64>, high: Option<u64>, keys: &[u64]) -> u64 {
    store.append(&record(LEAF, 0, low, high, keys, keys)).unwrap().0
}

fn branch(
    store: &MemoryStore,
    level: u8,
    low: Option<u64>,
    high: Option<u64>,
    keys: &[u64],
    children: &[u64],
) -> u64 {
    store.append(&record(BRANCH, level, low, high, keys, children)).unwrap().0
}

fn commit(store: &MemoryStore, root: u64, level: u8, len: u64) {
    let mut out = b"GBTC".to_vec();
    out.extend_from_slice(&[1, level]);
    for word in [root, 1, len] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    store.seal().unwrap();
    store.sync().unwrap();
    store.write_commit(&out).unwrap();
}

/// Two levels of branches over three leaves: `[1, 2] | 10 | [11] || 20 ||
/// [21]`, with the root's separator and children as given.
fn store(root_key: u64, same_child_twice: bool) -> MemoryStore {
    let store = MemoryStore::new();
    let l0 = leaf(&store, None, Some(10), &[1, 2]);
    let l1 = leaf(&store, Some(10), Some(20), &[11]);
    let l2 = leaf(&store, Some(20), None, &[21]);
    let a = branch(&store, 1, None, Some(20), &[10], &[l0, l1]);
    let b = branch(&store, 1, Some(20), None, &[], &[l2]);
    let children = if same_child_twice { [a, a] } else { [a, b] };
    let root = branch(&store, 2, None, None, &[root_key], &children);
    commit(&store, root, 2, 4);
    store
}

/// `get(key)` on a tree over `store`, on another thread: `None` if it
/// does not return (the bug: a descent going round for ever).
fn get_in_time(store: MemoryStore, key: u64) -> Option<Result<Option<u64>, Error>> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let tree: BTree<u64, u64> =
            BTree::open(store, Config::new().leaf_capacity(4).branch_capacity(4)).unwrap();
        let _ = send.send(tree.get(&key));
    });
    receive.recv_timeout(Duration::from_secs(20)).ok()
}

#[test]
fn the_records_as_written_make_a_sound_tree() {
    let tree: BTree<u64, u64> = BTree::open(store(20, false), Config::new()).unwrap();
    let all: Vec<(u64, u64)> = tree.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, [(1, 1), (2, 2), (11, 11), (21, 21)]);
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.is_settled(), "{report}");
}

#[test]
fn a_child_ending_inside_its_parents_range_is_corrupt() {
    // The root says the first child covers keys below 30; its record says
    // it ends at 20, so its right neighbour was the child holding 20: itself.
    let got = get_in_time(store(30, false), 25).expect("get(25) did not return: a descent goes round");
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
}

#[test]
fn a_record_listed_twice_is_corrupt_the_second_time() {
    // Both children name the first child's record: the second loads bounds
    // that belong to the first place.
    let got = get_in_time(store(20, true), 25).expect("get(25) did not return: a descent goes round");
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
    let tree: BTree<u64, u64> = BTree::open(store(20, true), Config::new()).unwrap();
    assert_eq!(tree.get(&2).unwrap(), Some(2), "the first place is sound");
}
