//! `Stats`: what a tree has been doing.

/// Counters since the tree was opened, from [`BTree::stats`](crate::BTree::stats).
/// All zero for an in-memory tree, except the byte counts.
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
    /// Checkpoints completed (by `flush` or because dirty bytes filled the
    /// budget).
    pub checkpoints: u64,
    /// Records read from the store.
    pub store_reads: u64,
    /// Records appended to the store (commit records not counted).
    pub store_writes: u64,
    /// Bytes of node versions alive in memory (loaded, being replaced, or
    /// held by readers and checkpoints).
    pub resident_bytes: u64,
    /// Bytes of node versions not yet on the store.
    pub dirty_bytes: u64,
}
