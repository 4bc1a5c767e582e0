//! Helpers shared by the benches: a cheap PRNG, the key set, the map builders
//! and `Lock`, which lets the locked `BTreeMap`s share one implementation.
//!
//! Every bench map holds the even keys `0, 2, .., 2n - 2` (value = key), so
//! odd keys are known absent and `2 * rng.below(n)` is a known hit.

// Each bench uses a different part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::time::Duration;

use ghostbtree::{BTree, Config};

/// What a timed bench runs, from the environment: `GB_SECS` per
/// measurement (default 1), `GB_KEYS` in the tree (default 1M), and
/// `GB_THREADS`, a comma-separated list of thread counts.
pub struct Settings {
    pub duration: Duration,
    pub keys: u64,
    pub threads: Vec<usize>,
}

impl Settings {
    /// The settings, with `threads` (`"1,2"`) unless `GB_THREADS` is set.
    pub fn from_env(threads: &str) -> Settings {
        Settings {
            duration: Duration::from_secs_f64(parse("GB_SECS", &var("GB_SECS", "1"))),
            keys: parse("GB_KEYS", &var("GB_KEYS", "1000000")),
            threads: var("GB_THREADS", threads).split(',').map(|t| parse("GB_THREADS", t)).collect(),
        }
    }
}

/// The environment variable `name`, or `default` if it is unset.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `text`, parsed, or a panic that names the variable it came from.
pub fn parse<T: FromStr>(name: &str, text: &str) -> T {
    text.trim().parse().unwrap_or_else(|_| panic!("{name}: cannot parse {text:?}"))
}

/// SplitMix64: a few instructions per number, so it costs every contender
/// the same negligible time, and each thread can own one.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift, no division).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The even keys `0..2n`, in a fixed random order.
pub fn shuffled_keys(n: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..n).map(|i| 2 * i).collect();
    let mut rng = SplitMix64::new(0x5EED);
    for i in (1..keys.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        keys.swap(i, j);
    }
    keys
}

/// The tree shape: the defaults, or `GB_LEAF` / `GB_BRANCH` (node
/// capacities) from the environment, to compare node sizes.
pub fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let mut config = Config::new();
    if let Some(leaf) = env("GB_LEAF") {
        config = config.leaf_capacity(leaf);
    }
    if let Some(branch) = env("GB_BRANCH") {
        config = config.branch_capacity(branch);
    }
    config
}

/// A ghostbtree filled by inserting `keys` in the order given.
pub fn ghostbtree_from(keys: &[u64]) -> BTree<u64, u64> {
    let tree = BTree::with_config(config()).expect("GB_LEAF / GB_BRANCH in range");
    for &key in keys {
        tree.insert(key, key).expect("in-memory insert");
    }
    tree
}

/// A `BTreeMap` filled by inserting `keys` in the order given.
pub fn btreemap_from(keys: &[u64]) -> BTreeMap<u64, u64> {
    let mut map = BTreeMap::new();
    for &key in keys {
        map.insert(key, key);
    }
    map
}

/// A `BTreeMap` behind a lock: the locked contenders differ only in how they
/// take it.
pub trait Lock {
    fn read(&self) -> impl Deref<Target = BTreeMap<u64, u64>>;
    fn write(&self) -> impl DerefMut<Target = BTreeMap<u64, u64>>;
}

impl Lock for std::sync::RwLock<BTreeMap<u64, u64>> {
    fn read(&self) -> impl Deref<Target = BTreeMap<u64, u64>> {
        std::sync::RwLock::read(self).unwrap()
    }
    fn write(&self) -> impl DerefMut<Target = BTreeMap<u64, u64>> {
        std::sync::RwLock::write(self).unwrap()
    }
}

impl Lock for parking_lot::RwLock<BTreeMap<u64, u64>> {
    fn read(&self) -> impl Deref<Target = BTreeMap<u64, u64>> {
        parking_lot::RwLock::read(self)
    }
    fn write(&self) -> impl DerefMut<Target = BTreeMap<u64, u64>> {
        parking_lot::RwLock::write(self)
    }
}

/// A mutex has one mode: reads lock it exclusively too.
impl Lock for std::sync::Mutex<BTreeMap<u64, u64>> {
    fn read(&self) -> impl Deref<Target = BTreeMap<u64, u64>> {
        self.lock().unwrap()
    }
    fn write(&self) -> impl DerefMut<Target = BTreeMap<u64, u64>> {
        self.lock().unwrap()
    }
}
