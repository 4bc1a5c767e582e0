//! What a tree over a store carries besides its nodes: the store, the codecs
//! of its key and value types, and the counters behind `stats()`.
//!
//! The codecs are captured as function pointers when the tree is opened (the
//! only place that requires `K: Codec, V: Codec`), so the engine's methods
//! need no codec bounds and an in-memory tree carries none of this.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::cell::Mutex;

use super::cache::AccountBox;
use super::checkpoint::Epochs;
use super::format::Commit;
use super::format::{self, Decoded, Expected, TooLarge};
use super::node::{Body, Entries, Leaf, Node};
use super::slot::{Ghost, Slot, State};
use super::tree::Tree;
use crate::store::{Address, Store};
use crate::{Codec, Config, Error, Stats};

pub(crate) struct Persist<K, V> {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) codecs: Codecs<K, V>,
    pub(crate) counters: Counters,
    pub(crate) epochs: Epochs,
    /// Clean resident nodes in the order they became so: the eviction
    /// clock (see `cache.rs`).
    pub(crate) clock: Mutex<VecDeque<Arc<Slot<K, V>>>>,
    /// The state every ghost slot of this tree holds (see `slot.rs`).
    pub(crate) ghost: Arc<State<K, V>>,
    /// Callers that need slots to stay put (`verify`): no eviction while
    /// non-zero (see `cache.rs`).
    pub(crate) pauses: AtomicUsize,
}

/// The encoders and decoder for one `(K, V)` (signatures in `format.rs`).
pub(crate) struct Codecs<K, V> {
    pub(crate) decode: DecodeNode<K, V>,
    pub(crate) encode_leaf: EncodeLeaf<K, V>,
    pub(crate) encode_branch: EncodeBranch<K>,
}

type DecodeNode<K, V> = fn(&[u8], &Expected<'_, K>) -> Result<Decoded<K, V>, String>;
type EncodeLeaf<K, V> = fn(Option<&K>, Option<&K>, &[K], &[V]) -> Result<Vec<u8>, TooLarge>;
type EncodeBranch<K> = fn(u32, Option<&K>, Option<&K>, &[K], &[Address]) -> Result<Vec<u8>, TooLarge>;

impl<K: Codec + Ord, V: Codec> Codecs<K, V> {
    pub(crate) fn new() -> Codecs<K, V> {
        Codecs {
            decode: format::decode_node::<K, V>,
            encode_leaf: format::encode_leaf::<K, V>,
            encode_branch: format::encode_branch::<K>,
        }
    }
}

/// Event counters. `Relaxed` throughout: they are statistics, each counted
/// once by the thread that did the work, and publish nothing.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) loads: AtomicU64,
    pub(crate) load_waits: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) store_reads: AtomicU64,
    pub(crate) store_writes: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            loads: get(&self.loads),
            load_waits: get(&self.load_waits),
            evictions: get(&self.evictions),
            checkpoints: get(&self.checkpoints),
            store_reads: get(&self.store_reads),
            store_writes: get(&self.store_writes),
            ..Stats::default()
        }
    }
}

impl<K, V> Tree<K, V> {
    pub(crate) fn stats(&self) -> Stats {
        let mut stats =
            self.persist.as_ref().map_or_else(Stats::default, |persist| persist.counters.snapshot());
        if let Some(account) = self.account() {
            stats.resident_bytes = account.resident() as u64;
            stats.dirty_bytes = account.dirty() as u64;
        }
        stats
    }
}

impl<K: Ord + Clone + Codec, V: Clone + Codec> Tree<K, V> {
    /// The tree the store's commit record names, every node a ghost (reads
    /// only the commit record); an empty tree if the store has none.
    pub(crate) fn open(store: Arc<dyn Store>, config: Config) -> Result<Tree<K, V>, Error> {
        let sentinel = Arc::new(State::Ghost);
        let commit = store.read_commit().map_err(|e| Error::io("reading the commit record", None, e))?;
        let (root, commit) = match commit {
            None => {
                let empty = Node::new(
                    None,
                    None,
                    None,
                    Body::Leaf(Leaf { keys: Entries::new(), vals: Entries::new() }),
                );
                (Slot::new(empty), Commit { root: Address(0), level: 0, epoch: 0, len: 0 })
            }
            Some(record) => {
                let commit =
                    format::decode_commit(&record).map_err(|what| Error::Corrupt { address: None, what })?;
                let ghost = Ghost {
                    address: commit.root,
                    level: commit.level,
                    low: None,
                    high: None,
                    right: None,
                    detached: false,
                };
                (Slot::ghost(ghost, &sentinel), commit)
            }
        };
        let len = usize::try_from(commit.len).unwrap_or(usize::MAX);
        let mut tree = Tree::from_root(root, len, config);
        tree.persist = Some(Persist {
            store,
            codecs: Codecs::new(),
            counters: Counters::default(),
            epochs: Epochs::new(commit.epoch, commit.len),
            clock: Mutex::new(VecDeque::new()),
            ghost: sentinel,
            pauses: AtomicUsize::new(0),
        });
        tree.account = Some(AccountBox::new(tree.config().memory_budget));
        Ok(tree)
    }
}
