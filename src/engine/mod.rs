//! The engine under the public API: atomic cells, slots, node versions and
//! the B-link protocol. Each file states the invariants it owns.

pub(crate) mod bulk;
pub(crate) mod cell;
pub(crate) mod length;
pub(crate) mod node;
pub(crate) mod slot;
pub(crate) mod tree;
