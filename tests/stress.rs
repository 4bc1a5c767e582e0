//! Multi-thread stress with a checker.
//!
//! Writers, scanners and readers share one tree with tiny nodes (so splits
//! and root growth race constantly). Key classes make the end state checkable
//! exactly:
//!
//! - *stable* keys (`k % 10 == 0`) are present from the start to the end;
//!   one thread keeps overwriting their values. Every get must find them and
//!   every scan must return each one in its range exactly once.
//! - *owned* keys (`k % 10 == 1..=6`) belong to one writer each, which mixes
//!   inserts, removes, `try_insert` and `compare_and_swap` on them and keeps
//!   its own model: at the end the tree must equal the union of the models.
//! - *hot* keys (`k % 10 == 7`, a few of them) are counters that every writer
//!   increments with a `compare_and_swap` loop: at the end each must equal the
//!   number of successful increments (no lost update).
//!
//! Scans run forward, backward and from both ends at once, and must yield
//! keys strictly in order with no duplicates.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::rng::Rng;
use ghostbtree::{BTree, Config, MemoryStore};

const KEYS: u64 = 20_000;
const WRITERS: u64 = 6;
const HOT: [u64; 3] = [7, 5_007, 19_997];

fn ops_per_writer() -> u64 {
    if cfg!(miri) { 200 } else { 40_000 }
}

fn is_stable(key: u64) -> bool {
    key.is_multiple_of(10)
}

/// One writer: random ops on its own keys (class `1 + id`), and increments
/// of the hot counters. Returns its model and how many increments it made.
fn writer(tree: &BTree<u64, u64>, id: u64) -> (BTreeMap<u64, u64>, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1));
    let mut model = BTreeMap::new();
    let mut increments = 0;
    for i in 0..ops_per_writer() {
        let key = rng.below(KEYS / 10) * 10 + 1 + id;
        let value = rng.next();
        match rng.below(10) {
            0..=3 => assert_eq!(tree.insert(key, value).unwrap(), model.insert(key, value)),
            4..=5 => assert_eq!(tree.remove(&key).unwrap(), model.remove(&key)),
            6 => {
                let got = tree.try_insert(key, value).unwrap();
                assert_eq!(got, model.get(&key).copied());
                model.entry(key).or_insert(value);
            }
            7 => {
                let expected = model.get(&key).copied();
                tree.compare_and_swap(key, expected.as_ref(), Some(value)).unwrap().unwrap();
                model.insert(key, value);
            }
            8 => assert_eq!(tree.get(&key).unwrap(), model.get(&key).copied()),
            _ => {
                let hot = HOT[(i % 3) as usize];
                loop {
                    let current = tree.get(&hot).unwrap();
                    let next = current.unwrap_or(0) + 1;
                    if tree.compare_and_swap(hot, current.as_ref(), Some(next)).unwrap().is_ok() {
                        break;
                    }
                }
                increments += 1;
            }
        }
    }
    (model, increments)
}

/// Checks one scan: strictly ordered (ascending, or descending if
/// `descending`), and holding every stable key in `[start, end)`.
fn check_scan(keys: &[u64], start: u64, end: u64, descending: bool) {
    for pair in keys.windows(2) {
        let ordered = if descending { pair[0] > pair[1] } else { pair[0] < pair[1] };
        assert!(ordered, "scan out of order or repeated: {} then {}", pair[0], pair[1]);
    }
    let stable = keys.iter().filter(|k| is_stable(**k)).count() as u64;
    let expected = (start..end.min(KEYS)).filter(|k| is_stable(*k)).count() as u64;
    assert_eq!(stable, expected, "scan of [{start}, {end}) missed stable keys");
    assert!(keys.iter().all(|k| (start..end).contains(k)), "scan left its range");
}

/// One scanner: random ranges, in all three directions, until `stop`.
fn scanner(tree: &BTree<u64, u64>, id: u64, stop: &AtomicBool) -> u64 {
    let mut rng = Rng(0x1234_5678 + id);
    let mut scans = 0;
    // Relaxed: the flag carries no data; `scope` joins the threads.
    while !stop.load(Ordering::Relaxed) || scans < 20 {
        let start = rng.below(KEYS);
        let end = start + rng.below(KEYS / 4);
        let range = (Bound::Included(start), Bound::Excluded(end));
        let unwrap = |entry: Result<(u64, u64), ghostbtree::Error>| entry.unwrap().0;
        match scans % 3 {
            0 => check_scan(&tree.range(range).map(unwrap).collect::<Vec<_>>(), start, end, false),
            1 => check_scan(&tree.range(range).rev().map(unwrap).collect::<Vec<_>>(), start, end, true),
            _ => {
                // Both ends at once: fronts ascend, backs descend, and they
                // never cross.
                let mut iter = tree.range(range);
                let (mut front, mut back) = (Vec::new(), Vec::new());
                loop {
                    let next = if rng.below(2) == 0 {
                        iter.next().map(|e| (e, true))
                    } else {
                        iter.next_back().map(|e| (e, false))
                    };
                    match next {
                        Some((entry, true)) => front.push(unwrap(entry)),
                        Some((entry, false)) => back.push(unwrap(entry)),
                        None => break,
                    }
                }
                front.extend(back.iter().rev());
                check_scan(&front, start, end, false);
            }
        }
        let key = rng.below(KEYS / 10) * 10;
        assert!(tree.get(&key).unwrap().is_some(), "stable key {key} not found");
        scans += 1;
    }
    scans
}

fn stable() -> impl Iterator<Item = (u64, u64)> {
    (0..KEYS).step_by(10).map(|k| (k, k))
}

/// Runs the workload on `tree` (holding the stable keys), with a thread
/// that checkpoints in a loop if `flushes`.
fn stress(tree: &BTree<u64, u64>, flushes: bool) {
    let stop = AtomicBool::new(false);
    let (models, increments) = std::thread::scope(|s| {
        if flushes {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    tree.flush().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
        }
        let scanners: Vec<_> = (0..2)
            .map(|id| {
                s.spawn({
                    let (tree, stop) = (&tree, &stop);
                    move || scanner(tree, id, stop)
                })
            })
            .collect();
        let overwriter = s.spawn(|| {
            let mut rng = Rng(77);
            while !stop.load(Ordering::Relaxed) {
                let key = rng.below(KEYS / 10) * 10;
                assert!(tree.insert(key, rng.next()).unwrap().is_some(), "stable key {key} was absent");
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                s.spawn({
                    let tree = &tree;
                    move || writer(tree, id)
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        overwriter.join().unwrap();
        for scanner in scanners {
            assert!(scanner.join().unwrap() >= 20);
        }
        results.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
    });

    let report = tree.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.is_settled(), "{report}");

    let hot_total: u64 = HOT.iter().map(|k| tree.get(k).unwrap().unwrap_or(0)).sum();
    assert_eq!(hot_total, increments.iter().sum::<u64>(), "lost counter increments");
    let mut expected: BTreeMap<u64, u64> = models.into_iter().flatten().collect();
    let entries: Vec<(u64, u64)> = tree.iter().collect::<Result<_, _>>().unwrap();
    let mut stable_seen = 0;
    for (key, value) in &entries {
        if is_stable(*key) {
            stable_seen += 1;
        } else if !HOT.contains(key) {
            assert_eq!(
                expected.remove(key),
                Some(*value),
                "owned key {key} has a value its writer never left"
            );
        }
    }
    assert!(expected.is_empty(), "owned keys lost: {:?}", expected.keys().take(10).collect::<Vec<_>>());
    assert_eq!(stable_seen, KEYS / 10);
    assert_eq!(tree.len(), entries.len());
}

#[test]
fn stress_tiny_nodes() {
    stress(&BTree::from_sorted(stable(), Config::new().leaf_capacity(4).branch_capacity(4)).unwrap(), false);
}

#[test]
fn stress_default_nodes() {
    stress(&BTree::from_sorted(stable(), Config::new()).unwrap(), false);
}

/// The same over a store with a budget of a few dozen leaves, so leaves are
/// evicted and reloaded under the writers and scanners, while another thread
/// checkpoints in a loop. Afterwards a reopen holds exactly the live tree.
#[test]
fn stress_over_a_store_with_a_tiny_budget() {
    let store = MemoryStore::new();
    let config = Config::new().leaf_capacity(16).branch_capacity(16).memory_budget(64 << 10);
    let tree = BTree::open(store.clone(), config.clone()).unwrap();
    tree.extend(stable()).unwrap();
    stress(&tree, true);
    let stats = tree.stats();
    assert!(stats.evictions > 0 && stats.loads > 0 && stats.checkpoints > 0, "{stats:?}");
    tree.flush().unwrap();
    let live: Vec<(u64, u64)> = tree.iter().collect::<Result<_, _>>().unwrap();
    let reopened: BTree<u64, u64> = BTree::open(store, config).unwrap();
    let stored: Vec<(u64, u64)> = reopened.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(live, stored);
    assert_eq!(reopened.len(), live.len());
}

/// Concurrent `pop_first`, `pop_last` and inserts: every key leaves exactly
/// once, and nothing is left behind.
#[test]
fn concurrent_pops_take_each_key_once() {
    let n: u64 = if cfg!(miri) { 200 } else { 8_000 };
    let tree = BTree::with_config(Config::new().leaf_capacity(4).branch_capacity(4)).unwrap();
    tree.extend((0..n).map(|k| (k, k))).unwrap();
    let inserted = AtomicBool::new(false);
    let popped: Vec<Vec<u64>> = std::thread::scope(|s| {
        let inserter = s.spawn(|| {
            tree.extend((n..2 * n).map(|k| (k, k))).unwrap();
            // Relaxed is enough: a popper that sees it only stops earlier or
            // later; what is left is counted after the join.
            inserted.store(true, Ordering::Relaxed);
        });
        let poppers: Vec<_> = (0..4u64)
            .map(|t| {
                let (tree, inserted) = (&tree, &inserted);
                s.spawn(move || {
                    let mut keys = Vec::new();
                    loop {
                        let entry = if t % 2 == 0 { tree.pop_first() } else { tree.pop_last() };
                        match entry.unwrap() {
                            Some((key, value)) => {
                                assert_eq!(key, value);
                                keys.push(key);
                            }
                            None if inserted.load(Ordering::Relaxed) => break,
                            None => std::thread::yield_now(),
                        }
                    }
                    keys
                })
            })
            .collect();
        inserter.join().unwrap();
        poppers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = popped.into_iter().flatten().collect();
    let mut rest: Vec<u64> = tree.iter().map(|e| e.unwrap().0).collect();
    all.append(&mut rest);
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..2 * n), "a key was popped twice or lost");
    assert!(tree.verify().unwrap().is_ok());
}

/// Queue workers (append at the end, `pop_first` at the front: the shape
/// of a job queue) beside readers of stable keys and range scans, with the
/// tree shrinking under them all the time (`src/engine/merge.rs`). Stable
/// keys live above every queue key, so pops never reach them. Every popped
/// key is popped once, nothing appended is lost, every scan is strictly
/// ordered and holds every stable key, and the tree ends verified, with no
/// empty leaf beside others.
fn queue(tree: &BTree<u64, u64>) {
    const STABLE_FROM: u64 = 1 << 40;
    const WORKERS: u64 = 4;
    const QUEUED: u64 = 2_000;
    let ops = if cfg!(miri) { 100 } else { 20_000 };
    let stable: Vec<u64> = (0..200).map(|i| STABLE_FROM + i * 7).collect();
    for &key in &stable {
        tree.insert(key, key).unwrap();
    }
    for key in 0..QUEUED {
        tree.insert(key, key).unwrap();
    }
    let next = AtomicU64::new(QUEUED);
    let stop = AtomicBool::new(false);
    let popped: Vec<Vec<u64>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u64)
            .map(|id| {
                let (stable, stop) = (&stable, &stop);
                s.spawn(move || {
                    let mut rng = Rng(77 + id);
                    // Relaxed: the flag carries no data; `scope` joins.
                    while !stop.load(Ordering::Relaxed) {
                        let key = stable[rng.below(stable.len() as u64) as usize];
                        assert_eq!(tree.get(&key).unwrap(), Some(key), "stable key {key} not found");
                        let (all, rev) = if rng.below(2) == 0 {
                            (tree.iter().map(|e| e.unwrap().0).collect::<Vec<_>>(), false)
                        } else {
                            (tree.iter().rev().map(|e| e.unwrap().0).collect::<Vec<_>>(), true)
                        };
                        let mut all = all;
                        if rev {
                            all.reverse();
                        }
                        assert!(all.windows(2).all(|w| w[0] < w[1]), "a scan out of order or repeated");
                        let seen = all.iter().filter(|k| **k >= STABLE_FROM).count();
                        assert_eq!(seen, stable.len(), "a scan missed stable keys");
                    }
                })
            })
            .collect();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut popped = Vec::with_capacity(ops);
                    for _ in 0..ops {
                        // Relaxed: the counter only hands out distinct keys.
                        let key = next.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(tree.insert(key, key).unwrap(), None);
                        let (key, value) = tree.pop_first().unwrap().expect("the queue is never empty");
                        assert!(key < STABLE_FROM, "pop_first reached a stable key: the queue was empty");
                        assert_eq!(key, value);
                        popped.push(key);
                    }
                    popped
                })
            })
            .collect();
        let popped = workers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        popped
    });
    let mut popped: Vec<u64> = popped.into_iter().flatten().collect();
    popped.sort_unstable();
    let pops = popped.len();
    popped.dedup();
    assert_eq!(popped.len(), pops, "a key was popped twice");
    let appended = next.load(Ordering::Relaxed);
    let left: Vec<u64> = tree.range(..STABLE_FROM).map(|e| e.unwrap().0).collect();
    let mut all: Vec<u64> = popped.iter().chain(&left).copied().collect();
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..appended), "a queued key was lost or popped and left");
    assert_eq!(left.len() as u64, QUEUED, "the queue holds what was queued and not popped");
    let report = tree.verify().unwrap();
    assert!(report.is_ok() && report.is_settled(), "{report}");
}

#[test]
fn queue_workers_beside_readers_and_scans() {
    queue(&BTree::with_config(Config::new().leaf_capacity(4).branch_capacity(4)).unwrap());
    queue(&BTree::new());
}

#[test]
fn queue_workers_over_a_store_with_a_tiny_budget() {
    let config = Config::new().leaf_capacity(4).branch_capacity(4).memory_budget(16 << 10);
    queue(&BTree::open(MemoryStore::new(), config).unwrap());
}
