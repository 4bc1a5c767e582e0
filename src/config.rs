//! Tree configuration.

use std::time::Duration;

use crate::Error;

/// How a tree is shaped. Build with [`Config::new`] and the setters, then pass
/// to [`BTree::with_config`](crate::BTree::with_config).
///
/// ```
/// use ghostbtree::{BTree, Config};
///
/// let tree: BTree<u64, u64> = BTree::with_config(Config::new().leaf_capacity(32))?;
/// # Ok::<(), ghostbtree::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) leaf_capacity: usize,
    /// Set by [`Config::leaf_capacity`]; if not, a tree over a store takes
    /// [`DEFAULT_STORED_LEAF_CAPACITY`](Config::DEFAULT_STORED_LEAF_CAPACITY).
    pub(crate) leaf_capacity_set: bool,
    pub(crate) branch_capacity: usize,
    pub(crate) memory_budget: usize,
    /// `None`: the default of the way the tree is opened (see the setter).
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) flush_on_drop: bool,
}

impl Config {
    /// Most entries in one bucket (leaf) of an in-memory tree. Default 64.
    ///
    /// Every write copies its bucket, so the write cost grows with this; a
    /// lookup's depth shrinks with it. 64 is where point reads and writes
    /// balance on 1M `u64` keys (see `docs/benchmarks.md`).
    pub const DEFAULT_LEAF_CAPACITY: usize = 64;
    /// Most entries in one bucket of a tree over a store
    /// ([`BTree::open_file`](crate::BTree::open_file),
    /// [`BTree::open`](crate::BTree::open)) unless set. Default 128.
    ///
    /// A branch keeps a slot of 64 bytes per child in memory, so with
    /// smaller buckets the branches of a `u64` tree take more than a budget
    /// of a tenth of the data, and reads load branches as well as leaves:
    /// 128 made random reads 3-4x faster, and durable writes, scans and
    /// bulk loads no slower, at 1M keys and that budget (`docs/benchmarks.md`).
    pub const DEFAULT_STORED_LEAF_CAPACITY: usize = 128;
    /// Most children of one interior node. Default 128.
    ///
    /// Interior nodes change only when a child splits, so they can be wider
    /// than buckets: 128 keeps a 10M-key tree at four levels.
    pub const DEFAULT_BRANCH_CAPACITY: usize = 128;
    /// 256 MiB: a cache size that suits an embedded index on a small server
    /// (sled defaults to 1 GiB, ZODB to 400 objects).
    pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

    /// The largest node capacity: every write copies its node, so far
    /// smaller ones are faster; the bound keeps a node's count within what
    /// its stored record holds.
    pub const MAX_CAPACITY: usize = 1 << 16;

    /// 1 s: how much a crash loses at most, unflushed.
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

    /// The defaults.
    pub fn new() -> Config {
        Config {
            leaf_capacity: Self::DEFAULT_LEAF_CAPACITY,
            leaf_capacity_set: false,
            branch_capacity: Self::DEFAULT_BRANCH_CAPACITY,
            memory_budget: Self::DEFAULT_MEMORY_BUDGET,
            checkpoint_interval: None,
            flush_on_drop: true,
        }
    }

    /// How often the tree commits a checkpoint on a thread of its own, if
    /// anything changed: the most a crash loses of what was not flushed.
    /// When dirty bytes pass a quarter of the memory budget the thread
    /// writes dirty nodes back sooner, without a commit (a *spill*, so
    /// that they can be evicted), and commits once what was written back
    /// since the last commit passes the budget or half the live data.
    /// At least 1 ms. A tree over a file
    /// ([`BTree::open_file`](crate::BTree::open_file)) has that thread with
    /// a default of [`DEFAULT_CHECKPOINT_INTERVAL`](Config::DEFAULT_CHECKPOINT_INTERVAL);
    /// one over another store ([`BTree::open`](crate::BTree::open)) only
    /// if this is set. In-memory trees ignore it.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Config {
        self.checkpoint_interval = Some(interval);
        self
    }

    /// Whether dropping a tree with a checkpoint thread (see
    /// [`checkpoint_interval`](Config::checkpoint_interval)) runs a last
    /// checkpoint (default `true`; its error, if any, is lost: call
    /// [`BTree::close`](crate::BTree::close) to get it). With `false`, a
    /// drop loses the writes since the last checkpoint, as a crash does.
    pub fn flush_on_drop(mut self, flush: bool) -> Config {
        self.flush_on_drop = flush;
        self
    }

    /// Most entries per bucket; at least 2, at most [`Config::MAX_CAPACITY`].
    /// Tiny values make deep trees, which tests use to exercise splits.
    /// Unset, [`DEFAULT_LEAF_CAPACITY`](Config::DEFAULT_LEAF_CAPACITY) in
    /// memory and [`DEFAULT_STORED_LEAF_CAPACITY`](Config::DEFAULT_STORED_LEAF_CAPACITY)
    /// over a store.
    pub fn leaf_capacity(mut self, entries: usize) -> Config {
        self.leaf_capacity = entries;
        self.leaf_capacity_set = true;
        self
    }

    /// This config as a tree over a store uses it: the store's default
    /// leaf capacity unless one was set.
    pub(crate) fn for_store(mut self) -> Config {
        if !self.leaf_capacity_set {
            self.leaf_capacity = Self::DEFAULT_STORED_LEAF_CAPACITY;
        }
        self
    }

    /// Bytes of node versions a tree over a store keeps in memory before it
    /// turns cold clean nodes back into ghosts. Default 256 MiB. A branch
    /// counts its children's slots too (64 bytes each).
    ///
    /// A soft limit: it may be exceeded by what threads hold at the moment
    /// (a few nodes each) and by dirty nodes until they are written back,
    /// which writers do when dirty bytes reach three eighths of the budget,
    /// or a sixteenth once resident bytes pass it; past half the budget
    /// dirty, or nine eighths resident, they wait for the write back (random
    /// durable writes from 8 threads stayed within 1.22x the budget,
    /// `docs/benchmarks.md`). In-memory trees ignore it.
    pub fn memory_budget(mut self, bytes: usize) -> Config {
        self.memory_budget = bytes;
        self
    }

    /// Most children per interior node; at least 3, at most
    /// [`Config::MAX_CAPACITY`].
    pub fn branch_capacity(mut self, children: usize) -> Config {
        self.branch_capacity = children;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let check = |setting, value, min| {
            let max = Self::MAX_CAPACITY;
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::InvalidConfig { setting, value, min, max })
            }
        };
        check("leaf_capacity", self.leaf_capacity, 2)?;
        check("branch_capacity", self.branch_capacity, 3)?;
        if let Some(interval) = self.checkpoint_interval.filter(|&i| i < Duration::from_millis(1)) {
            let value = interval.as_micros() as usize;
            return Err(Error::InvalidConfig {
                setting: "checkpoint_interval (µs)",
                value,
                min: 1000,
                max: usize::MAX,
            });
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
