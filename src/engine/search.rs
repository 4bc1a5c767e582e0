//! Searching: where a descent is headed ([`Seek`]) and where a key is in a
//! node. Pure functions of one node version; the descent itself is
//! `tree.rs`'s.
//!
//! Keys may be given in a borrowed form `Q` of the tree's `K` (`&str` for
//! `String`), as `std`'s `BTreeMap` allows; `Q` must order as `K` does.

use std::borrow::Borrow;

use super::node::{Branch, Leaf, Node};

/// Where a descent is headed.
pub(crate) enum Seek<'k, Q: ?Sized> {
    /// The leftmost node.
    First,
    /// The node whose range holds the key.
    Key(&'k Q),
    /// The node whose range holds the keys just below the bound
    /// (`low < bound <= high`).
    Before(&'k Q),
    /// The rightmost node.
    Last,
}

// By hand: derived impls would require `Q: Copy`.
impl<Q: ?Sized> Clone for Seek<'_, Q> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Q: ?Sized> Copy for Seek<'_, Q> {}

impl<Q: Ord + ?Sized> Seek<'_, Q> {
    /// True if the target lies right of `node`: follow its right link.
    pub(crate) fn is_right_of<K: Borrow<Q>, V>(self, node: &Node<K, V>) -> bool {
        match (self, &node.high) {
            (_, None) | (Seek::First, Some(_)) => false,
            (Seek::Key(key), Some(high)) => key >= high.borrow(),
            (Seek::Before(bound), Some(high)) => bound > high.borrow(),
            (Seek::Last, Some(_)) => true,
        }
    }

    /// The child of `branch` whose range holds the target.
    pub(crate) fn child<K: Borrow<Q>, V>(self, branch: &Branch<K, V>) -> usize {
        match self {
            Seek::First => 0,
            Seek::Key(key) => branch.keys.partition_point(|sep| sep.borrow() <= key),
            Seek::Before(bound) => branch.keys.partition_point(|sep| sep.borrow() < bound),
            Seek::Last => branch.children.len() - 1,
        }
    }
}

impl<K, V> Leaf<K, V> {
    /// The index of `key` (`Ok`), or where it would go (`Err`).
    #[inline]
    pub(crate) fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.keys.binary_search_by(|k| k.borrow().cmp(key))
    }

    /// The value of `key`, if the leaf holds it.
    #[inline]
    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.vals[i])
    }
}
