//! Single-thread latency of one operation on a map of 1M `u64` keys:
//! ghostbtree against `BTreeMap`, unsynchronized and behind `std` /
//! `parking_lot` locks.
//!
//! Run: `cargo bench --bench ops` (append `-- --quick` for a fast pass, or
//! `-- get` for one group).
//!
//! Every map holds the even keys below 2M, inserted in one random order (the
//! shape a tree has in use); `ghostbtree_from_sorted` is the same keys bulk
//! loaded by `BTree::from_sorted` (full leaves), for comparison. The maps are
//! built once and shared by all groups; the write groups undo their change
//! in the same iteration, so the maps stay at 1M keys. Per iteration:
//!
//! - `get`: a lookup of a random present key.
//! - `insert`: inserting a random absent (odd) key, then removing it: one
//!   insert plus one remove.
//! - `remove`: removing a random present key, then re-inserting it: one
//!   remove plus one insert.
//! - `range`: a scan of 100 entries from a random start, summing the values.
//!
//! Locks are taken once per operation and never contended: the figures are
//! the price of the lock alone (contention is in the `throughput` bench).
//! Results are checked, so a wrong answer panics the bench.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

use common::{Lock, SplitMix64};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use ghostbtree::{BTree, Config};

/// Keys in each map.
const N: u64 = 1_000_000;
/// Entries per range scan.
const SCAN: usize = 100;

/// The operations measured, on `u64` keys with value = key. Writes take
/// `&mut self` only so that an unsynchronized `BTreeMap` fits.
trait Map {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&mut self, key: u64) -> Option<u64>;
    fn remove(&mut self, key: u64) -> Option<u64>;
    /// The sum of the values of the first `SCAN` entries from `start` on.
    fn scan(&self, start: u64) -> u64;
}

impl Map for BTree<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        BTree::get(self, &key).unwrap()
    }
    fn insert(&mut self, key: u64) -> Option<u64> {
        BTree::insert(self, key, key).unwrap()
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        BTree::remove(self, &key).unwrap()
    }
    fn scan(&self, start: u64) -> u64 {
        self.range(start..).take(SCAN).map(|entry| entry.unwrap().1).sum()
    }
}

impl Map for BTreeMap<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        BTreeMap::get(self, &key).copied()
    }
    fn insert(&mut self, key: u64) -> Option<u64> {
        BTreeMap::insert(self, key, key)
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        BTreeMap::remove(self, &key)
    }
    fn scan(&self, start: u64) -> u64 {
        self.range(start..).take(SCAN).map(|(_, value)| value).sum()
    }
}

/// Locked maps take their lock for every operation (never `get_mut`).
impl<L: Lock> Map for L {
    fn get(&self, key: u64) -> Option<u64> {
        Map::get(&*self.read(), key)
    }
    fn insert(&mut self, key: u64) -> Option<u64> {
        Map::insert(&mut *self.write(), key)
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        Map::remove(&mut *self.write(), key)
    }
    fn scan(&self, start: u64) -> u64 {
        Map::scan(&*self.read(), start)
    }
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Insert,
    Remove,
    Range,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Insert => "insert",
            Op::Remove => "remove",
            Op::Range => "range",
        }
    }

    /// One iteration of this group on `map`.
    fn run(self, map: &mut impl Map, rng: &mut SplitMix64) -> u64 {
        match self {
            Op::Get => map.get(2 * rng.below(N)).expect("present key"),
            Op::Insert => {
                let key = 2 * rng.below(N) + 1;
                assert_eq!(map.insert(key), None, "odd keys are absent");
                map.remove(key).expect("just inserted")
            }
            Op::Remove => {
                let key = 2 * rng.below(N);
                let value = map.remove(key).expect("present key");
                assert_eq!(map.insert(key), None, "just removed");
                value
            }
            Op::Range => map.scan(2 * rng.below(N - SCAN as u64)),
        }
    }
}

/// The contenders, all holding the same keys.
struct Maps {
    ghostbtree: BTree<u64, u64>,
    ghostbtree_from_sorted: BTree<u64, u64>,
    btreemap: BTreeMap<u64, u64>,
    std_rwlock: std::sync::RwLock<BTreeMap<u64, u64>>,
    parking_lot_rwlock: parking_lot::RwLock<BTreeMap<u64, u64>>,
    std_mutex: Mutex<BTreeMap<u64, u64>>,
}

impl Maps {
    fn build() -> Maps {
        // Each map is built by its own inserts (a clone would lay its nodes
        // out in key order, which makes scans markedly faster).
        let keys = common::shuffled_keys(N);
        let btreemap = || common::btreemap_from(&keys);
        let sorted = (0..N).map(|i| (2 * i, 2 * i));
        Maps {
            ghostbtree: common::ghostbtree_from(&keys),
            ghostbtree_from_sorted: BTree::from_sorted(sorted, Config::new()).unwrap(),
            btreemap: btreemap(),
            std_rwlock: std::sync::RwLock::new(btreemap()),
            parking_lot_rwlock: parking_lot::RwLock::new(btreemap()),
            std_mutex: Mutex::new(btreemap()),
        }
    }
}

fn bench_group(c: &mut Criterion, maps: &mut Maps, op: Op) {
    let mut group = c.benchmark_group(op.name());
    member(&mut group, "ghostbtree", &mut maps.ghostbtree, op);
    member(&mut group, "ghostbtree_from_sorted", &mut maps.ghostbtree_from_sorted, op);
    member(&mut group, "BTreeMap", &mut maps.btreemap, op);
    member(&mut group, "std_RwLock", &mut maps.std_rwlock, op);
    member(&mut group, "parking_lot_RwLock", &mut maps.parking_lot_rwlock, op);
    member(&mut group, "std_Mutex", &mut maps.std_mutex, op);
    group.finish();
}

/// Every member draws the same key sequence.
fn member(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, map: &mut impl Map, op: Op) {
    let mut rng = SplitMix64::new(1);
    group.bench_function(name, |b| b.iter(|| black_box(op.run(map, &mut rng))));
}

fn main() {
    let mut maps = Maps::build();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for op in [Op::Get, Op::Insert, Op::Remove, Op::Range] {
        bench_group(&mut c, &mut maps, op);
    }
    c.final_summary();
}
