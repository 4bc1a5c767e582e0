//! `Stats`: what a tree has been doing.

/// Counters since the tree was opened, from [`BTree::stats`](crate::BTree::stats).
/// All zero for an in-memory tree, except the byte counts.
///
/// `file_bytes - live_bytes` is the store's garbage: space of superseded
/// records waiting to be reused (a file store reuses it from the next
/// checkpoint on), and space at the end of the file no record uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Ghosts loaded from the store (one per load, however many threads
    /// missed on the node).
    pub loads: u64,
    /// Times a thread found a node being loaded by another and waited.
    pub load_waits: u64,
    /// Nodes turned back into ghosts to stay within the memory budget.
    pub evictions: u64,
    /// Checkpoints completed (by `flush`, the checkpoint thread, or writers
    /// once much was written back since the last one).
    pub checkpoints: u64,
    /// Checkpoints that failed, spills included (the store's error; the
    /// previous checkpoint stays the durable state, and the next one tries
    /// again).
    pub checkpoint_failures: u64,
    /// Times dirty nodes were written back to the store without a commit,
    /// so that they could be evicted (a *spill*: dirty bytes filled part of
    /// the budget). The next checkpoint makes them durable.
    pub spills: u64,
    /// The error of the last checkpoint, if it failed (cleared by the next
    /// one that succeeds); [`BTree::health`](crate::BTree::health) returns it.
    pub last_checkpoint_error: Option<String>,
    /// Records read from the store.
    pub store_reads: u64,
    /// Point reads answered from a ghost leaf's record without loading it
    /// (the cache was full and the leaf not read often; each is also a
    /// store read).
    pub reads_through: u64,
    /// Records appended to the store (commit records not counted).
    pub store_writes: u64,
    /// Bytes of node versions alive in memory (loaded, being replaced, or
    /// held by readers and checkpoints).
    pub resident_bytes: u64,
    /// Bytes of node versions not yet on the store.
    pub dirty_bytes: u64,
    /// Bytes of memory the store holds for its own bookkeeping (a file
    /// store: its free-space map and what it tracks since the last commit).
    /// Not bounded by the memory budget yet: a fragmented file's map can
    /// take a third of a small budget (`docs/design.md`).
    pub store_memory_bytes: u64,
    /// Bytes the store takes (a file store: the file's length).
    pub file_bytes: u64,
    /// Bytes of the records the last checkpoint names, with their framing.
    pub live_bytes: u64,
}
