//! The bug ghostbtree exists to end, as a regression test.
//!
//! In ZODB a ghost bucket is flagged loaded *before* its state is filled in,
//! so a second thread touching it in that window sees an empty "loaded"
//! bucket: `Bucket length < 1`, "the bucket being iterated changed size",
//! KeyErrors for keys that exist, segfaults. Here a slot goes
//! Ghost -> Loading -> Loaded by atomic swaps, so no thread can see anything
//! but a ghost or a complete node.
//!
//! The test makes the window wide: a store whose reads sleep 1-5 ms, a tree
//! that is entirely ghosts, and eight threads that start together and all
//! iterate and `get` the same keys. Every key must be found with its value,
//! every iteration must return exactly the keys, and each node must be read
//! from the store exactly once however many threads missed on it.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;

use common::hooked::{Hooked, Hooks};
use ghostbtree::{Address, BTree, Config};

/// Reads that take 1-5 ms, counted.
#[derive(Default)]
struct Slow {
    reads: AtomicU64,
}

impl Hooks for Slow {
    fn before_read(&self, _address: Address) {
        // Relaxed: a count, read after the threads joined.
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(1000 + (n * 7919 % 4000)));
    }
}

const THREADS: usize = 8;

#[test]
fn concurrent_first_touches_of_ghosts_see_complete_nodes() {
    let keys: u64 = if cfg!(miri) { 50 } else { 600 };
    let config = Config::new().leaf_capacity(8).branch_capacity(8);
    let store = Hooked::new(Slow::default());
    {
        let tree = BTree::open(store.clone(), config.clone()).unwrap();
        for key in 0..keys {
            tree.insert(key * 3, key).unwrap();
        }
        tree.flush().unwrap();
    }
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config).unwrap();
    assert_eq!(tree.stats().store_reads, 0);
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (tree, start) = (&tree, &start);
            s.spawn(move || {
                start.wait();
                // Half the threads scan first, half look keys up first, so
                // scans and gets meet on the same ghosts.
                for round in 0..2 {
                    if (t + round) % 2 == 0 {
                        let seen: Vec<(u64, u64)> = tree.iter().map(|e| e.unwrap()).collect();
                        assert_eq!(seen.len() as u64, keys, "a scan missed or repeated keys");
                        assert!(
                            seen.iter().enumerate().all(|(i, &(k, v))| k == 3 * i as u64 && v == i as u64)
                        );
                    } else {
                        for key in (0..keys).rev() {
                            assert_eq!(tree.get(&(key * 3)).unwrap(), Some(key), "key {} lost", key * 3);
                            assert_eq!(tree.get(&(key * 3 + 1)).unwrap(), None);
                        }
                    }
                }
            });
        }
    });
    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    let stats = tree.stats();
    assert_eq!(stats.evictions, 0, "the default budget holds this tree");
    assert_eq!(stats.loads as usize, report.nodes, "every node loaded exactly once: {stats:?}");
    assert_eq!(stats.store_reads, stats.loads, "{stats:?}");
    assert_eq!(store.hooks.reads.load(Ordering::Relaxed), stats.store_reads);
    assert!(stats.load_waits > 0, "threads should have met on loads in flight: {stats:?}");
}
