//! The engine under the public API: atomic cells, slots, node versions and
//! the B-link protocol. Each file states the invariants it owns.

pub(crate) mod account;
pub(crate) mod background;
pub(crate) mod bulk;
mod checkpoint;
mod ends;
pub(crate) mod epoch;
pub(crate) mod evict;
pub(crate) mod format;
mod load;
mod merge;
pub(crate) mod node;
pub(crate) mod os;
pub(crate) mod schedule;
pub(crate) mod search;
pub(crate) mod slot;
pub(crate) mod stored;
pub(crate) mod striped;
pub(crate) mod sync;
mod through;
pub(crate) mod tree;
pub(crate) mod wait;
