//! A concurrent, lazily loaded B+tree for many threads sharing one ordered
//! index.
//!
//! ```
//! use ghostbtree::BTree;
//!
//! let tree = BTree::new();
//! std::thread::scope(|s| {
//!     for t in 0..4u64 {
//!         let tree = &tree;
//!         s.spawn(move || {
//!             for i in 0..1000 {
//!                 tree.insert(i * 4 + t, i).unwrap();
//!             }
//!         });
//!     }
//! });
//! assert_eq!(tree.len(), 4000);
//! assert_eq!(tree.get(&13)?, Some(3));
//! let keys: Vec<u64> = tree.range(10..14).map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, [10, 11, 12, 13]);
//! # Ok::<(), ghostbtree::Error>(())
//! ```
//!
//! # The model
//!
//! Every node (bucket or interior node) lives in a *slot*, an atomic cell
//! holding the node's current version. Versions are immutable: a write copies
//! its bucket, changes the copy and swaps it into the slot with a
//! compare-and-swap, retrying if another write won. A reader therefore sees
//! one complete version or another, never one being built, and takes no
//! lock. Writes to different buckets touch different slots and never wait
//! for each other.
//!
//! Splits follow the B-link tree of Lehman and Yao: each version carries a
//! high key and a link to its right neighbour's slot. A split publishes the
//! left half (pointing at a new slot with the right half) in one swap, then
//! posts the separator to the parent; in between, anyone looking for a key at
//! or past the high key moves right. Parents point at slots, not versions,
//! so a parent never needs copying when a child changes.
//!
//! # Over a store
//!
//! [`BTree::open`] puts a tree over a [`Store`] (the bundled [`MemoryStore`],
//! or your own: append a record, read one, sync, and keep a commit record).
//! Opening reads only the commit record; every node starts as a *ghost*, a
//! placeholder holding its record's address. The first touch loads it: one
//! thread reads and decodes the record while any others that need the same
//! node wait, and the node is published complete by one swap. This is where
//! ZODB's BTrees, which flag a ghost loaded before filling it in, show other
//! threads empty buckets; here that cannot happen. A failed load is an
//! `Err` for every thread that wanted the node, never a key reported absent,
//! and the node stays a ghost for the next try.
//!
//! [`BTree::flush`] writes a checkpoint: every operation that completed before
//! the call, none that started after it returned, while readers go on and
//! writers only register in an epoch. Clean leaves that go untouched for a
//! while turn back into ghosts when the tree holds more than
//! [`Config::memory_budget`] bytes; [`BTree::stats`] tells what happened.
//!
//! # Guarantees
//!
//! - Every single-key operation (`get`, `insert`, `remove`, `try_insert`,
//!   `compare_and_swap`) is atomic and linearizable.
//! - Iteration under concurrent writes yields keys strictly in order, never
//!   twice, and every key present for the whole iteration (see [`Range`]).
//! - [`BTree::len`] is exact when no write is in flight and costs no shared
//!   counter on writes.
//! - `pop_first` / `pop_last` are linearizable too: they remove the smallest
//!   / largest entry at the moment they take effect.
//! - A panic in a key's `Ord` or `Clone` during an operation propagates to
//!   the caller and leaves the tree as it was before a write or as the write
//!   left it, never in between: versions are built aside and published
//!   whole, and the entry count is taken at that swap. A panic after it
//!   (while posting a split's separator to the parent) leaves the separator
//!   unposted, which is legal and posted by a later write. Other threads
//!   carry on, and a panicking load or checkpoint leaves the node a ghost
//!   and the previous checkpoint whole.
//!
//! `BTree<K, V>` is `Send + Sync`, and its iterators `Send`, when `K` and `V`
//! are `Send + Sync`; a key type that is not, such as `Rc`, makes the tree
//! stay on its thread:
//!
//! ```compile_fail
//! let tree = ghostbtree::BTree::<std::rc::Rc<u32>, u32>::new();
//! std::thread::spawn(move || drop(tree));
//! ```
//!
//! ```
//! let tree = ghostbtree::BTree::<std::sync::Arc<u32>, u32>::new();
//! std::thread::spawn(move || drop(tree)).join().unwrap();
//! ```
//!
//! Deletes shrink the tree: an emptied or small bucket merges with a
//! neighbour, interior nodes that lose children shrink the same way, and
//! the tree's height drops when its root has one child, all while readers
//! and writers go on. A queue (append at the end, `pop_first` at the front)
//! stays O(log n) per operation however long it runs.
//!
//! See `docs/design.md` for the protocol, the invariants and the orderings,
//! and `docs/benchmarks.md` for measured costs.

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
// Three allowed places, each with its `SAFETY` line: the prefetch hint in
// `engine/node.rs`, and the account pointer's reborrow and free in
// `engine/account.rs`.
#![deny(unsafe_code)]

mod codec;
mod config;
mod engine;
mod error;
mod iter;
mod map;
mod stats;
mod store;
mod verify;

#[cfg(feature = "serde")]
pub use codec::Serde;
pub use codec::{Codec, DecodeError};
pub use config::Config;
pub use error::Error;
pub use iter::Range;
pub use map::{BTree, CompareAndSwapError};
pub use stats::Stats;
pub use store::{Address, FileStore, MemoryStore, Store, Usage};
pub use verify::Report;

/// Entry points for the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// Runs every decoder of the file store's layout (header, superblock,
    /// record frames, free list) on `bytes`: errors are fine, panics not.
    pub fn decode_file_layout(bytes: &[u8]) {
        crate::store::file::layout::decode_all(bytes);
    }
}

/// The README's examples, run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
