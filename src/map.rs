//! `BTree`, the public map.

use std::borrow::Borrow;
use std::fmt;
use std::ops::{Bound, RangeBounds};

use crate::engine::background::Background;
use crate::engine::bulk;
use crate::engine::tree::{Action, Tree};
use crate::store::FileStore;
use crate::{Codec, Config, Error, Range, Report, Stats, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A concurrent ordered map. Share it by `&` or `Arc` across threads: reads
/// take no lock, and writes to different buckets never wait for each other.
///
/// Keys and values are cloned when a bucket is copied on write and when they
/// are returned, so cheap clones (integers, `Arc<str>`, `bytes::Bytes`) suit
/// it best.
///
/// Every operation returns `Result`: a tree over storage loads nodes and a
/// load can fail. A failure is always an `Err`, never a key reported absent.
/// On an in-memory tree nothing fails.
pub struct BTree<K, V> {
    tree: Arc<Tree<K, V>>,
    /// The checkpoint thread of a tree over a file.
    background: Option<Background<K, V>>,
}

/// Why [`BTree::compare_and_swap`] did not swap: the value it found, and the
/// value it was asked to store, handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareAndSwapError<V> {
    /// The value the key has (`None`: absent).
    pub current: Option<V>,
    /// The value the call would have stored (`None`: a removal).
    pub proposed: Option<V>,
}

impl<K: Ord + Clone, V: Clone> BTree<K, V> {
    /// An empty tree with the default [`Config`].
    pub fn new() -> Self {
        BTree::over(Tree::new(Config::new()))
    }

    fn over(tree: Tree<K, V>) -> Self {
        BTree { tree: Arc::new(tree), background: None }
    }

    /// An empty tree shaped by `config`. Fails if a setting is out of range.
    pub fn with_config(config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(BTree::over(Tree::new(config)))
    }

    /// A tree holding `entries`, built bottom-up with every node full: much
    /// faster than inserting one by one. The entries must be strictly
    /// increasing by key; [`Error::Unsorted`] names the first that is not.
    pub fn from_sorted(entries: impl IntoIterator<Item = (K, V)>, config: Config) -> Result<Self, Error> {
        config.validate()?;
        let (root, len) = bulk::build(entries, &config)?;
        Ok(BTree::over(Tree::from_root(root, len, config)))
    }

    /// The value of `key`, cloned.
    ///
    /// On a tree over a store this may load nodes; a failed load is an
    /// `Err`, never `Ok(None)`.
    ///
    /// The key may be any borrowed form of `K` (`&str` for `String` keys),
    /// ordered the same way, as with `std`'s `BTreeMap`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
    {
        self.get_with(key, |value| value.cloned())
    }

    /// Calls `f` with the value of `key` (or `None`) without cloning it.
    ///
    /// `f` runs while the bucket version it reads is pinned; keep it short.
    pub fn get_with<Q: Ord + ?Sized, R>(&self, key: &Q, f: impl FnOnce(Option<&V>) -> R) -> Result<R, Error>
    where
        K: Borrow<Q>,
    {
        self.tree.get_with(key, f)
    }

    /// True if `key` has a value.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
    {
        self.get_with(key, |value| value.is_some())
    }

    /// Sets the value of `key`, returning the value it replaced.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        self.tree.update(&key, Some(&key), |old| (Action::Put(value.clone()), old.cloned()))
    }

    /// Inserts only if `key` is absent (ZODB's `insert`). Returns `None` if it
    /// inserted, or the present value (the tree unchanged).
    pub fn try_insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        self.tree.update(&key, Some(&key), |old| match old {
            Some(old) => (Action::Keep, Some(old.clone())),
            None => (Action::Put(value.clone()), None),
        })
    }

    /// Removes `key` (or a borrowed form of it), returning its value.
    pub fn remove<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
    {
        let decide =
            |old: Option<&V>| (if old.is_some() { Action::Remove } else { Action::Keep }, old.cloned());
        self.tree.update(key, None, decide)
    }

    /// Atomically sets `key` to `new` if its value is `expected` (`None`
    /// meaning absent; a `new` of `None` removes). On a mismatch nothing
    /// changes and the error holds the value found.
    pub fn compare_and_swap(
        &self,
        key: K,
        expected: Option<&V>,
        new: Option<V>,
    ) -> Result<Result<(), CompareAndSwapError<V>>, Error>
    where
        V: PartialEq,
    {
        self.tree.update(&key, Some(&key), |current| {
            if current != expected {
                let error = CompareAndSwapError { current: current.cloned(), proposed: new.clone() };
                return (Action::Keep, Err(error));
            }
            match &new {
                Some(value) => (Action::Put(value.clone()), Ok(())),
                None => (Action::Remove, Ok(())),
            }
        })
    }

    /// Iterates over the entries with keys in `range`, in key order (`.rev()`
    /// for descending). Any bounds work, both ends excluded too; a start
    /// beyond the end yields nothing (where `std`'s `BTreeMap` panics).
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Range<'_, K, V> {
        Range::new(&self.tree, range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Iterates over all entries in key order.
    pub fn iter(&self) -> Range<'_, K, V> {
        Range::new(&self.tree, Bound::Unbounded, Bound::Unbounded)
    }

    /// The entry with the smallest key.
    pub fn first_key_value(&self) -> Result<Option<(K, V)>, Error> {
        self.iter().next().transpose()
    }

    /// The entry with the largest key.
    pub fn last_key_value(&self) -> Result<Option<(K, V)>, Error> {
        self.iter().next_back().transpose()
    }

    /// Removes and returns the entry with the smallest key (ZODB's
    /// `popitem`); `None` if the tree is empty.
    ///
    /// Linearizable, like `insert` and `remove`: the entry removed is the
    /// smallest at the moment the pop takes effect (one swap on the
    /// leftmost bucket, whose range reaches minus infinity), and `None`
    /// means the tree was empty at a moment during the call. A key
    /// inserted below it after that moment is not removed. Two pops never
    /// return the same entry. O(log n): emptied buckets are merged away.
    pub fn pop_first(&self) -> Result<Option<(K, V)>, Error> {
        self.tree.pop(false)
    }

    /// Removes and returns the entry with the largest key; the mirror of
    /// [`pop_first`](BTree::pop_first), with the same guarantee.
    pub fn pop_last(&self) -> Result<Option<(K, V)>, Error> {
        self.tree.pop(true)
    }

    /// Inserts every entry, in order; stops at the first error.
    pub fn extend(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<(), Error> {
        entries.into_iter().try_for_each(|(key, value)| self.insert(key, value).map(drop))
    }

    /// Checks every structural invariant and reports each violation. Meant
    /// for tests and repair tools; run it when no writes are in flight.
    pub fn verify(&self) -> Result<Report, Error>
    where
        K: fmt::Debug,
    {
        crate::verify::verify(&self.tree)
    }
}

impl<K, V> BTree<K, V>
where
    K: Ord + Clone + Codec + Send + Sync + 'static,
    V: Clone + Codec + Send + Sync + 'static,
{
    /// The tree stored in `store`, or an empty one if `store` holds none.
    ///
    /// Reads only the store's commit record, whatever the tree's size: every
    /// node starts as a ghost and is loaded on first touch (one store read
    /// per node, however many threads touch it at once). Checkpoints are
    /// up to the caller ([`flush`](BTree::flush), and writers once they
    /// have written much back since the last one), unless [`Config::checkpoint_interval`] is set: then a
    /// thread the tree owns checkpoints on that schedule too.
    pub fn open(store: impl Store + 'static, config: Config) -> Result<Self, Error> {
        config.validate()?;
        let interval = config.checkpoint_interval;
        BTree::started(Tree::open(Arc::new(store), config)?, interval)
    }

    /// A tree over a store, with its checkpoint thread if `interval` is set.
    fn started(tree: Tree<K, V>, interval: Option<Duration>) -> Result<Self, Error> {
        let tree = Arc::new(tree);
        let background = match interval {
            Some(interval) => Some(
                Background::start(&tree, interval)
                    .map_err(|e| Error::io("starting the checkpoint thread", None, e))?,
            ),
            None => None,
        };
        Ok(BTree { tree, background })
    }

    /// The tree in the file at `path`, created if it does not exist: an
    /// embedded, durable index.
    ///
    /// ```
    /// use ghostbtree::{BTree, Config};
    ///
    /// let dir = std::env::temp_dir().join(format!("ghostbtree-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("index.gbt");
    /// {
    ///     let tree = BTree::open_file(&path, Config::new())?;
    ///     tree.insert(1u64, 10u64)?;
    ///     tree.close()?; // a last checkpoint, its error reported
    /// }
    /// let tree: BTree<u64, u64> = BTree::open_file(&path, Config::new())?;
    /// assert_eq!(tree.get(&1)?, Some(10));
    /// # drop(tree);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Opening reads the file's header and superblocks only, whatever the
    /// tree's size: nodes load on first touch. The file is locked while the
    /// tree is open: a second open of it, here or in another process, fails.
    ///
    /// Durability: [`flush`](BTree::flush) returns once everything before
    /// it is on disk. A thread the tree owns checkpoints every
    /// [`Config::checkpoint_interval`] (and sooner under many writes); a
    /// crash loses at most the writes since the last checkpoint, never
    /// what a checkpoint holds, and never leaves a mix. Dropping the tree
    /// runs a last checkpoint ([`Config::flush_on_drop`]); [`close`](BTree::close)
    /// does too and reports its error. See `docs/format.md` for the file.
    ///
    /// Fails with [`Error::Io`] naming the path and the problem if the path
    /// is a directory or its directory does not exist, the file cannot be
    /// written or is open already, or it is not a ghostbtree file, or a
    /// damaged, truncated or newer one.
    pub fn open_file(path: impl AsRef<Path>, config: Config) -> Result<Self, Error> {
        config.validate()?;
        let store = FileStore::open(path).map_err(|e| Error::io("opening the file", None, e))?;
        let interval = config.checkpoint_interval.unwrap_or(Config::DEFAULT_CHECKPOINT_INTERVAL);
        BTree::started(Tree::open(Arc::new(store), config)?, Some(interval))
    }
}

impl<K: Ord + Clone, V: Clone> BTree<K, V> {
    /// Writes a checkpoint and returns once it is durable: every operation
    /// that completed before the call is in it, none that started after the
    /// call returned. Readers go on meanwhile and writers only register.
    /// A no-op for a tree without a store, and when nothing was written
    /// since the last checkpoint, which succeeded: that one is on disk
    /// already (so a session that only reads never writes to its file).
    pub fn flush(&self) -> Result<(), Error> {
        self.tree.checkpoint()
    }

    /// Writes a last checkpoint, stops the checkpoint thread and releases
    /// the store, returning the checkpoint's error if it failed (a drop
    /// cannot). For a tree without a store, just a drop.
    pub fn close(mut self) -> Result<(), Error> {
        let flushed = self.flush();
        drop(self.background.take());
        flushed
    }

    /// `Ok` unless the last checkpoint failed (a background one, say):
    /// then its error, until a checkpoint succeeds. Reads and writes go on
    /// meanwhile; the tree tries again at the next checkpoint.
    pub fn health(&self) -> Result<(), Error> {
        self.tree.stored.as_ref().map_or(Ok(()), |stored| stored.health())
    }

    /// Evicts the node on `level` (0: leaves) whose range holds `key`, if
    /// it is clean and its children are ghosts. Only in the loom model
    /// build, whose tests need an evictor at a chosen point.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn evict_node_of(&self, key: &K, level: u32) -> Result<bool, Error> {
        self.tree.evict_node_of(key, level)
    }

    /// Writes the dirty nodes back without a commit (a spill, as writers do
    /// when dirty bytes fill three eighths of the budget). Only in the loom
    /// model build.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn spill(&self) -> Result<(), Error> {
        self.tree.write_back(crate::engine::stored::Ending::Spill)
    }

    /// `get`, reading a ghost leaf through the cache whatever the budget
    /// (for the loom models).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn get_through(&self, key: &K) -> Result<Option<V>, Error> {
        self.tree.get_through(key)
    }

    /// `iter`, reading every ghost leaf it meets moving right through the
    /// cache whatever the budget (for the loom models).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn iter_through(&self) -> Range<'_, K, V> {
        Range::new(&self.tree, Bound::Unbounded, Bound::Unbounded).always_through()
    }

    /// What the tree has done since it was opened.
    pub fn stats(&self) -> Stats {
        self.tree.stats()
    }
}

impl<K, V> BTree<K, V> {
    /// The number of entries: exact when no write is in flight. O(stripes),
    /// not O(n); writers never share a counter.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True if the tree holds no entry (when no write is in flight).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configuration the tree was built with.
    pub fn config(&self) -> &Config {
        self.tree.config()
    }
}

impl<K: Ord + Clone, V: Clone> Default for BTree<K, V> {
    fn default() -> Self {
        BTree::new()
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for BTree<K, V> {
    /// Sorts the entries (the last value wins for a repeated key) and
    /// bulk-loads them.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut entries: Vec<(K, V)> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep their order
        let mut unique: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => unique.push(entry),
            }
        }
        let (root, len) = bulk::build(unique, &Config::new()).expect("sorted and deduplicated above");
        BTree::over(Tree::from_root(root, len, Config::new()))
    }
}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for BTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in self.iter() {
            match entry {
                Ok((key, value)) => map.entry(&key, &value),
                Err(error) => map.entry(&"<error>", &error),
            };
        }
        map.finish()
    }
}
