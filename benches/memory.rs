//! Memory per entry: live heap bytes held by a map of 1M `u64 -> u64`
//! entries, for `BTreeMap` and ghostbtree, filled in random and in ascending
//! order, plus the bulk loads (`BTreeMap`'s `collect`, ghostbtree's
//! `from_sorted`). A counting global allocator tracks live bytes; `peak` is
//! the most held at once while building (garbage from copy-on-write
//! included).
//!
//! Run: `cargo bench --bench memory`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ghostbtree::{BTree, Config};

const N: u64 = 1_000_000;

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new block then a freed one: the peak sees both.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Builds a map of `N` entries and prints the bytes per entry it holds and
/// peaked at while building; returns the held bytes per entry.
fn measure<T>(name: &str, build: impl FnOnce() -> T, len: impl FnOnce(&T) -> usize) -> f64 {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let map = build();
    let held = LIVE.load(Relaxed) - before;
    let peak = PEAK.load(Relaxed) - before;
    assert_eq!(len(&map), N as usize, "{name}: wrong length");
    drop(map);
    let per_entry = held as f64 / N as f64;
    println!("{name:<32} {per_entry:>8.1} {:>8.1}", peak as f64 / N as f64);
    per_entry
}

fn main() {
    let shuffled = common::shuffled_keys(N);
    let ascending: Vec<u64> = (0..N).map(|i| 2 * i).collect();
    let sorted_entries = || ascending.iter().map(|&key| (key, key));

    println!("{N} u64 -> u64 entries (16 bytes of payload each), bytes per entry:");
    println!("{:<32} {:>8} {:>8}", "map", "held", "peak");
    let btreemap_len = |map: &BTreeMap<u64, u64>| map.len();
    let ghostbtree_len = |tree: &BTree<u64, u64>| tree.len();
    let bt_random = measure("BTreeMap, random inserts", || common::btreemap_from(&shuffled), btreemap_len);
    let gb_random =
        measure("ghostbtree, random inserts", || common::ghostbtree_from(&shuffled), ghostbtree_len);
    let bt_ascending =
        measure("BTreeMap, ascending inserts", || common::btreemap_from(&ascending), btreemap_len);
    let gb_ascending =
        measure("ghostbtree, ascending inserts", || common::ghostbtree_from(&ascending), ghostbtree_len);
    let bt_bulk = measure("BTreeMap, collect (bulk)", || sorted_entries().collect(), btreemap_len);
    let gb_bulk = measure(
        "ghostbtree, from_sorted",
        || BTree::from_sorted(sorted_entries(), Config::new()).unwrap(),
        ghostbtree_len,
    );

    println!("\nghostbtree / BTreeMap, held bytes:");
    println!("  random inserts     {:.2}", gb_random / bt_random);
    println!("  ascending inserts  {:.2}", gb_ascending / bt_ascending);
    println!("  bulk loads         {:.2}", gb_bulk / bt_bulk);

    shrunk(&shuffled);
}

/// A tree that lost 90 % of its keys (random removes) against trees built
/// with the keys that are left, by random inserts and bulk loaded: nodes
/// and held bytes (issue 9: merges shrink the tree).
fn shrunk(shuffled: &[u64]) {
    let kept: Vec<u64> = shuffled.iter().copied().step_by(10).collect();
    let held = |build: &dyn Fn() -> BTree<u64, u64>| {
        let before = LIVE.load(Relaxed);
        let tree = build();
        let held = LIVE.load(Relaxed) - before;
        let report = tree.verify().unwrap();
        assert!(report.is_ok() && report.entries == kept.len(), "{report}");
        (report.nodes, held)
    };
    let removed = held(&|| {
        let tree = common::ghostbtree_from(shuffled);
        for (i, key) in shuffled.iter().enumerate() {
            if i % 10 != 0 {
                tree.remove(key).unwrap();
            }
        }
        tree
    });
    let inserted = held(&|| common::ghostbtree_from(&kept));
    let mut sorted = kept.clone();
    sorted.sort_unstable();
    let bulk = held(&|| BTree::from_sorted(sorted.iter().map(|&key| (key, key)), Config::new()).unwrap());
    println!("\n{N} keys, 90 % removed at random, against the {} keys left built anew:", kept.len());
    println!("{:<34} {:>8} {:>10} {:>8} {:>8}", "tree", "nodes", "MiB held", "nodes x", "bytes x");
    for (name, (nodes, bytes)) in [
        ("after removes", removed),
        ("random inserts of the rest", inserted),
        ("from_sorted of the rest", bulk),
    ] {
        println!(
            "{name:<34} {nodes:>8} {:>10.2} {:>8.2} {:>8.2}",
            bytes as f64 / (1 << 20) as f64,
            removed.0 as f64 / nodes as f64,
            removed.1 as f64 / bytes as f64
        );
    }
}
