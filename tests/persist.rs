//! Trees over a store: flush, reopen lazily, and the checkpoint's promises.

use std::collections::BTreeMap;

use ghostbtree::{BTree, Config, MemoryStore};

fn tiny() -> Config {
    Config::new().leaf_capacity(4).branch_capacity(4)
}

#[test]
fn flush_then_reopen_sees_everything_and_loads_lazily() {
    let store = MemoryStore::new();
    let tree: BTree<u64, String> = BTree::open(store.clone(), tiny()).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..2000u64 {
        let key = i * 7919 % 5003;
        tree.insert(key, key.to_string()).unwrap();
        model.insert(key, key.to_string());
    }
    tree.flush().unwrap();
    // Writes after the flush are not in the checkpoint.
    tree.insert(999_999, "late".into()).unwrap();
    drop(tree);

    let reopened: BTree<u64, String> = BTree::open(store.clone(), tiny()).unwrap();
    assert_eq!(reopened.stats().store_reads, 0, "open reads only the commit record");
    assert_eq!(reopened.len(), model.len());
    assert_eq!(reopened.get(&17).unwrap(), model.get(&17).cloned());
    let reads_for_one_get = reopened.stats().store_reads;
    assert!((2..12).contains(&reads_for_one_get), "{reads_for_one_get} reads for one get");
    let all: Vec<(u64, String)> = reopened.iter().collect::<Result<_, _>>().unwrap();
    assert!(all.into_iter().eq(model.clone()));
    assert_eq!(reopened.get(&999_999).unwrap(), None);
    let report = reopened.verify().unwrap();
    assert!(report.is_ok() && report.unposted == 0, "{report}");

    // Change some, flush again, reopen again.
    for key in (0..5003u64).step_by(3) {
        assert_eq!(reopened.remove(&key).unwrap(), model.remove(&key));
    }
    reopened.flush().unwrap();
    let again: BTree<u64, String> = BTree::open(store, tiny()).unwrap();
    assert!(again.iter().map(Result::unwrap).eq(model.clone()));
    assert_eq!(again.len(), model.len());
}

#[test]
fn a_tiny_budget_evicts_and_reloads_without_losing_anything() {
    let store = MemoryStore::new();
    let config = Config::new().leaf_capacity(16).branch_capacity(64).memory_budget(64 << 10);
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut x = 1u64;
    for _ in 0..30_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = (x >> 33) % 20_000;
        if x.is_multiple_of(5) {
            assert_eq!(tree.remove(&key).unwrap(), model.remove(&key));
        } else {
            assert_eq!(tree.insert(key, x).unwrap(), model.insert(key, x));
        }
    }
    let stats = tree.stats();
    assert!(stats.checkpoints > 0, "dirty bytes should have forced checkpoints: {stats:?}");
    assert!(tree.iter().map(Result::unwrap).eq(model.clone()));
    let stats = tree.stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.loads > 0, "{stats:?}");
    tree.flush().unwrap();
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.unposted == 0, "{report}");
    drop(tree);

    let reopened: BTree<u64, u64> = BTree::open(store, config).unwrap();
    for key in 0..20_000 {
        assert_eq!(reopened.get(&key).unwrap(), model.get(&key).copied());
    }
    let stats = reopened.stats();
    assert!(stats.resident_bytes < 2 * (64 << 10), "{stats:?}");
    println!("{stats:?}");
}

/// Branches go back to ghosts too: under a budget smaller than the tree's
/// interior nodes alone, scans and gets stay within it, writes under
/// evicted branches land, and `verify` leaves the tree within it.
#[test]
fn a_budget_smaller_than_the_branches_holds() {
    const KEYS: u64 = 20_000;
    let store = MemoryStore::new();
    {
        let tree: BTree<u64, u64> = BTree::open(store.clone(), tiny()).unwrap();
        tree.extend((0..KEYS).map(|k| (k * 2, k))).unwrap();
        tree.flush().unwrap();
    }
    // The whole tree's resident size, and its interior nodes' share: a
    // `verify` counts the nodes, leaves are 4-entry buckets.
    let whole = {
        let tree: BTree<u64, u64> = BTree::open(store.clone(), tiny()).unwrap();
        let report = tree.verify().unwrap();
        let leaves = tree.iter().count().div_ceil(4);
        assert!(report.nodes - leaves > report.nodes / 5, "{report}");
        tree.stats().resident_bytes as usize
    };
    let budget = whole / 40; // well below the branches' share (> 1/5)
    let config = tiny().memory_budget(budget);
    let tree: BTree<u64, u64> = BTree::open(store, config).unwrap();
    // What one thread may run over by: a node loaded before the clock turns.
    let bound = budget + budget / 10 + 4096;
    let within = |what: &str| {
        let stats = tree.stats();
        assert!(stats.resident_bytes as usize <= bound, "{what}: {stats:?}, budget {budget}");
    };
    assert_eq!(tree.iter().count() as u64, KEYS);
    within("after a scan");
    assert_eq!(tree.iter().rev().count() as u64, KEYS);
    within("after a reverse scan");
    let mut x = 7u64;
    for _ in 0..5_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = (x >> 33) % (2 * KEYS);
        assert_eq!(tree.get(&key).unwrap(), key.is_multiple_of(2).then_some(key / 2));
    }
    within("after random gets");
    // Writes everywhere: each lands in a live slot, none in a detached one.
    for key in (1..2 * KEYS).step_by(50) {
        tree.insert(key, key).unwrap();
    }
    tree.flush().unwrap();
    for key in (1..2 * KEYS).step_by(50) {
        assert_eq!(tree.get(&key).unwrap(), Some(key));
    }
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.unposted == 0, "{report}");
    within("after verify");
    let stats = tree.stats();
    assert!(stats.evictions as usize > report.nodes, "{stats:?}");
}

/// Dropping a big tree over a store frees it parent by parent. The eviction
/// clock holds slots too; freed from it after the root, each leaf freed its
/// right neighbour in turn, a recursion as long as the leaf level, which
/// overflowed the stack of the quickstart's two-million-key tree. Here on a
/// thread with a small stack, where that recursion aborts the test.
#[test]
fn dropping_a_big_tree_does_not_recurse_along_the_leaves() {
    let store = MemoryStore::new();
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let tree: BTree<u64, u64> = BTree::open(store, tiny()).unwrap();
            tree.extend((0..200_000).map(|k| (k, k))).unwrap();
            tree.flush().unwrap(); // every leaf stored, so in the clock
            drop(tree);
        })
        .unwrap()
        .join()
        .unwrap();
}
