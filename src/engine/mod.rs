//! The engine under the public API: atomic cells, slots, node versions and
//! the B-link protocol. Each file states the invariants it owns.

pub(crate) mod bulk;
pub(crate) mod cache;
pub(crate) mod cell;
pub(crate) mod checkpoint;
pub(crate) mod format;
mod load;
pub(crate) mod node;
pub(crate) mod persist;
pub(crate) mod slot;
pub(crate) mod striped;
pub(crate) mod tree;
pub(crate) mod wait;
