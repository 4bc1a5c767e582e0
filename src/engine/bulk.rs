//! Bulk loading: a tree built bottom-up from sorted entries, every node full
//! (the last node of a level takes what is left).

use std::sync::Arc;

use super::node::{Body, Branch, Entries, Leaf, Node};
use super::slot::Slot;
use crate::{Config, Error};

/// The root slot and entry count of a tree holding `entries`, which must be
/// strictly increasing by key.
pub(crate) fn build<K: Ord + Clone, V>(
    entries: impl IntoIterator<Item = (K, V)>,
    config: &Config,
) -> Result<(Arc<Slot<K, V>>, usize), Error> {
    let mut leaves: Vec<(Option<K>, Body<K, V>)> = Vec::new();
    let mut leaf = Leaf { keys: Entries::new(), vals: Entries::new() };
    let mut len = 0;
    for (key, value) in entries {
        // A full leaf is flushed only after this check, so `leaf` holds the
        // previous key (unless this is the first).
        if leaf.keys.last().is_some_and(|last| *last >= key) {
            return Err(Error::Unsorted { index: len });
        }
        if leaf.keys.len() == config.leaf_capacity {
            let full = std::mem::replace(&mut leaf, Leaf { keys: Entries::new(), vals: Entries::new() });
            leaves.push((low_of(&leaves, &full.keys[0]), Body::Leaf(full)));
        }
        leaf.keys.push(key);
        leaf.vals.push(value);
        len += 1;
    }
    let low = leaf.keys.first().and_then(|first| low_of(&leaves, first));
    leaf.keys.shrink_to_fit();
    leaf.vals.shrink_to_fit();
    leaves.push((low, Body::Leaf(leaf)));

    let mut level = link(leaves);
    let mut height = 0;
    while level.len() > 1 {
        height += 1;
        let mut branches = Vec::with_capacity(level.len().div_ceil(config.branch_capacity));
        let mut children = level.into_iter().peekable();
        while children.peek().is_some() {
            let group: Vec<_> = children.by_ref().take(config.branch_capacity).collect();
            let low = group[0].0.clone();
            let keys = group[1..]
                .iter()
                .map(|(low, _)| low.clone().expect("only the first node of a level is unbounded below"))
                .collect();
            let children = group.into_iter().map(|(_, slot)| slot).collect();
            branches.push((low, Body::Branch(Branch { level: height, keys, children })));
        }
        level = link(branches);
    }
    let (_, root) = level.pop().expect("a level has at least one node");
    Ok((root, len))
}

/// The `low` of a new node starting at `first`: unbounded for the first node.
fn low_of<K: Clone, V>(before: &[(Option<K>, Body<K, V>)], first: &K) -> Option<K> {
    (!before.is_empty()).then(|| first.clone())
}

/// A node's `low` and the slot it was put in.
type Linked<K, V> = (Option<K>, Arc<Slot<K, V>>);

/// Puts one level's bodies into slots, right to left so each node can name
/// its right neighbour, and returns `(low, slot)` pairs in key order.
fn link<K: Clone, V>(bodies: Vec<(Option<K>, Body<K, V>)>) -> Vec<Linked<K, V>> {
    let mut high: Option<K> = None;
    let mut right: Option<Arc<Slot<K, V>>> = None;
    let mut slots: Vec<_> = bodies
        .into_iter()
        .rev()
        .map(|(low, body)| {
            let slot = Slot::new(Node::new(low.clone(), high.take(), right.take(), body));
            high = low.clone();
            right = Some(Arc::clone(&slot));
            (low, slot)
        })
        .collect();
    slots.reverse();
    slots
}
