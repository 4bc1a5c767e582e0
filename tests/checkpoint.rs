//! The checkpoint's promise under concurrent writes: a `flush` holds every
//! operation that completed before it was called and none that started
//! after it returned, and it is a consistent image (a reopen of it passes
//! `verify()`).
//!
//! Writers each own a counter key and set it to 1, 2, 3, ... while also
//! inserting and removing other keys (so leaves split and merge-free trees
//! grow). Around each `flush`, the flusher notes each writer's last
//! completed value before the call and last started value after the return;
//! the image, opened from the store while the writers go on, must hold a
//! value between the two for every writer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ghostbtree::{BTree, Config, MemoryStore};

const WRITERS: u64 = 3;
/// Counter keys live far above the other keys.
const COUNTER: u64 = 1 << 40;

#[test]
fn flush_holds_exactly_the_operations_around_it() {
    let rounds = if cfg!(miri) { 2 } else { 100 };
    let store = MemoryStore::new();
    // A budget large enough that no checkpoint starts on its own.
    let config = Config::new().leaf_capacity(4).branch_capacity(4);
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config.clone()).unwrap();
    let completed: Vec<AtomicU64> = (0..WRITERS).map(|_| AtomicU64::new(0)).collect();
    let started: Vec<AtomicU64> = (0..WRITERS).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (tree, completed, started, stop) =
                (&tree, &completed[w as usize], &started[w as usize], &stop);
            s.spawn(move || {
                let mut value = 0;
                while !stop.load(Ordering::Relaxed) {
                    value += 1;
                    // SeqCst: the flusher's snapshots must order against
                    // these marks and the insert between them.
                    started.store(value, Ordering::SeqCst);
                    tree.insert(COUNTER + w, value).unwrap();
                    completed.store(value, Ordering::SeqCst);
                    let key = (value * 7919 + w * 104_729) % 5000;
                    if value % 3 == 0 {
                        tree.remove(&key).unwrap();
                    } else {
                        tree.insert(key, value).unwrap();
                    }
                }
            });
        }
        // Stops the writers however this thread leaves the scope (a failed
        // assertion must not leave them running forever).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        for _ in 0..rounds {
            let before: Vec<u64> = completed.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            tree.flush().unwrap();
            let after: Vec<u64> = started.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            let image: BTree<u64, u64> = BTree::open(store.clone(), config.clone()).unwrap();
            for w in 0..WRITERS as usize {
                let value = image.get(&(COUNTER + w as u64)).unwrap().unwrap_or(0);
                assert!(
                    before[w] <= value && value <= after[w],
                    "writer {w}: the image holds {value}, outside [{}, {}]",
                    before[w],
                    after[w]
                );
            }
            let report = image.verify().unwrap();
            assert!(report.is_ok() && report.unposted == 0, "{report}");
            assert_eq!(image.len(), image.iter().count(), "the image's count is its entries'");
        }
    });
    tree.flush().unwrap();
    let image: BTree<u64, u64> = BTree::open(store, config).unwrap();
    let live: Vec<(u64, u64)> = tree.iter().collect::<Result<_, _>>().unwrap();
    let stored: Vec<(u64, u64)> = image.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(live, stored, "after the writers stopped, a flush holds everything");
}

/// A version keeps the one it replaced only while a checkpoint may need it.
/// Leaves written now and then while checkpoints run back to back must not
/// hold chains of old versions (each kept one per write, for good, and the
/// quickstart ran to 10x its budget).
#[test]
fn versions_do_not_chain_across_checkpoints() {
    let (keys, writes) = if cfg!(miri) { (300, 20) } else { (200_000, 30_000) };
    let store = MemoryStore::new();
    let tree: BTree<u64, u64> = BTree::open(store, Config::new()).unwrap();
    tree.extend((0..keys).map(|k| (k, k))).unwrap();
    tree.flush().unwrap();
    let before = tree.stats().resident_bytes;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                tree.flush().unwrap();
            }
        });
        // Values change, keys do not: no leaf splits, the tree keeps its size.
        let mut x = 1u64;
        for _ in 0..writes {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = (x >> 33) % keys;
            tree.insert(key, x).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    tree.flush().unwrap();
    let stats = tree.stats();
    assert!(stats.checkpoints >= 3 || cfg!(miri), "{stats:?}");
    assert!(stats.resident_bytes <= before + before / 10, "{stats:?}, {before} bytes before");
}
