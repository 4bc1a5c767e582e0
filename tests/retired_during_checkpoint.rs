//! Regression: a checkpoint freed the record of a node its own image still
//! named. Found by tests/crash.rs (a reopened file whose free list held
//! live leaves; the next checkpoint wrote over them).
//!
//! A checkpoint of epoch `E` frees the records of nodes that merges
//! retired and that its image does not list, by slot identity. While its
//! walk ran, a writer of `E + 1` evicted a branch the walk had passed (and
//! the branch above), loaded it again (new child slots for the same
//! records) and merged one of those children away. The retired slot was
//! not the one the walk had listed for that record, so the checkpoint of
//! `E` freed a record its image named, and the store reused the space from
//! the next checkpoint on. Only a merge of a later epoch than the
//! checkpoint's can do that (the image of `E` still holds the node): such
//! retirements wait for the next checkpoint now.
//!
//! Here a writer churns a tree over a store with a budget so small that
//! branches are evicted and loaded all the time, while another thread
//! checkpoints back to back. The store checks every commit as it lands:
//! it opens the image just committed and reads it whole (a `MemoryStore`
//! drops freed records at the commit, so a named record freed is an error).

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hooked::{Hooked, Hooks};
use ghostbtree::{BTree, Config, MemoryStore};

/// Reads every image the store commits.
struct Checked {
    config: Config,
    commits: AtomicUsize,
    /// The first image that could not be read, and why.
    broken: Mutex<Option<String>>,
}

impl Hooks for Checked {
    fn after_commit(&self, store: &MemoryStore) {
        let commit = self.commits.fetch_add(1, Ordering::Relaxed);
        let image: BTree<u64, u64> = BTree::open(store.clone(), self.config.clone()).unwrap();
        let read: Result<Vec<(u64, u64)>, _> = image.iter().collect();
        let why = match read {
            Err(e) => Some(format!("commit {commit}: {e}")),
            Ok(entries) if entries.len() != image.len() => {
                Some(format!("commit {commit}: {} entries, len() {}", entries.len(), image.len()))
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            self.broken.lock().unwrap().get_or_insert(why);
        }
    }
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn a_checkpoint_never_frees_a_record_its_image_names() {
    // Before the fix, an image broke within two seconds (after 100 to 1500
    // commits); now some 4000 pass in these three seconds.
    let time = Duration::from_millis(if cfg!(miri) { 100 } else { 3000 });
    let keys = 1024;
    let config = Config::new().leaf_capacity(4).branch_capacity(4).memory_budget(16 << 10);
    let store = Hooked::new(Checked {
        config: config.clone(),
        commits: AtomicUsize::new(0),
        broken: Mutex::new(None),
    });
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config).unwrap();
    let store = &store.hooks;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                tree.flush().unwrap();
            }
        });
        let mut i = 0u64;
        while started.elapsed() < time && store.broken.lock().unwrap().is_none() {
            // Phases that grow and shrink the tree: splits and merges.
            let grow = (i / keys).is_multiple_of(2);
            let r = mix(i);
            let key = r % keys;
            if (r >> 40) % 100 < if grow { 85 } else { 15 } {
                tree.insert(key, r).unwrap();
            } else {
                tree.remove(&key).unwrap();
            }
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    let stats = tree.stats();
    println!("{} commits checked, {stats:?}", store.commits.load(Ordering::Relaxed));
    if let Some(why) = store.broken.lock().unwrap().take() {
        panic!("an image named a record its commit freed: {why}");
    }
    assert!(stats.evictions > 0 && stats.checkpoints > 100, "{stats:?}");
}
