//! `verify`: a full structural check that reports every violation, as ZODB's
//! `BTrees.check` does.
//!
//! It walks each level twice over, along the right links and through the
//! parents' child lists, and checks that the two agree with each other and
//! with the node invariants of `engine/node.rs`. Run it when no writes are in
//! flight: under concurrent writes it may report states that were never
//! wrong at any one moment (a length that lags, for instance). Eviction is
//! paused while it runs: it loads the whole tree.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::Error;
use crate::engine::node::{Body, Misfit, Node, misfits};
use crate::engine::slot::{NodeArc, Slot};
use crate::engine::tree::{Held, Tree};

/// What [`BTree::verify`](crate::BTree::verify) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Levels above the leaves (0 for a tree that is one leaf).
    pub height: u32,
    /// Nodes on all levels.
    pub nodes: usize,
    /// Entries in all leaves.
    pub entries: usize,
    /// Nodes reachable only through a right link because their separator
    /// has not been posted to the level above. Legal in a B-link tree (they
    /// are found by moving right) but, when no write is in flight, a sign
    /// that a split's second step was interrupted.
    pub unposted: usize,
    /// Merges found in progress and finished by `verify` before it looked
    /// (see `docs/design.md`, "Merges"): legal, and finished by the next
    /// thread that meets one anyway; zero when no write is in flight,
    /// unless a panic (in a key's `Clone` or `Ord`) broke a merge off.
    pub merging: usize,
    /// Leaves with no entry beside others: merges take them out, so zero
    /// when no write is in flight, unless a panic broke a merge off or a
    /// merge could not read its neighbour from the store (the next write
    /// to the leaf tries again). A leaf loaded empty from a store and not
    /// written since is not counted.
    pub empty: usize,
    /// Every broken invariant, one line each.
    pub violations: Vec<String>,
}

impl Report {
    /// True if no invariant is broken.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// True if no structural work is pending: every separator posted, no
    /// merge in progress, no empty leaf beside others. Holds when no write
    /// is in flight and none was broken off by a panic.
    pub fn is_settled(&self) -> bool {
        self.unposted == 0 && self.merging == 0 && self.empty == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "height {}, {} nodes, {} entries, {} unposted separators, {} merging, {} empty leaves, {} violations",
            self.height,
            self.nodes,
            self.entries,
            self.unposted,
            self.merging,
            self.empty,
            self.violations.len()
        )?;
        for violation in &self.violations {
            write!(f, "\n  {violation}")?;
        }
        Ok(())
    }
}

/// One level of the tree in key order, as the right links give it.
struct Level<K, V> {
    slots: Vec<Arc<Slot<K, V>>>,
    nodes: Vec<NodeArc<K, V>>,
    /// Positions of the nodes frozen by a merge in progress.
    frozen: Vec<usize>,
    /// The right links lead back to a node of the level.
    cycle: bool,
}

pub(crate) fn verify<K, V>(tree: &Tree<K, V>) -> Result<Report, Error>
where
    K: Ord + Clone + fmt::Debug,
    V: Clone,
{
    // Children are matched to the level below by slot identity, and an
    // evicted branch's children get new slots when it loads again.
    let _paused = tree.pause_eviction();
    // Merges broken off (by a panic) are finished first: the walk below
    // finds the live slot of a detached one by a descent, and descents
    // help merges, so a merge left pending would change the tree halfway
    // through the walk, and the report would mix two states.
    let mut report = Report { merging: settle(tree)?, ..Report::default() };
    let mut bad = |what: String| report.violations.push(what);
    let config = tree.config().clone();
    let mut level = chain(tree, tree.root())?;
    let height = level.nodes[0].level();
    let (mut nodes, mut entries, mut unposted, mut merging, mut empty) = (0, 0, level.nodes.len() - 1, 0, 0);
    for depth in (0..=height).rev() {
        nodes += level.nodes.len();
        merging += level.frozen.len();
        check_level(&level, depth, &mut bad);
        for (i, node) in level.nodes.iter().enumerate() {
            let frozen = level.frozen.contains(&i);
            let at = || format!("level {depth} node {i} [{:?}, {:?})", node.low, node.high);
            // A version loaded from the store may be over capacity (a
            // checkpoint folds splits not posted yet into their parent's
            // image) or an empty leaf (an image taken before a merge): its
            // next write mends it.
            let loaded = node.meta.epoch == 0 && node.meta.stored.get().is_some();
            let capacity = match &node.body {
                Body::Leaf(leaf) => {
                    entries += leaf.keys.len();
                    if leaf.keys.is_empty() && level.nodes.len() > 1 && !loaded && !frozen {
                        empty += 1;
                    }
                    if leaf.keys.len() != leaf.vals.len() {
                        bad(format!("{}: {} keys but {} values", at(), leaf.keys.len(), leaf.vals.len()));
                    }
                    check_keys(&leaf.keys, node, false, &at, &mut bad);
                    config.leaf_capacity
                }
                Body::Branch(branch) => {
                    if branch.children.len() != branch.keys.len() + 1 {
                        bad(format!(
                            "{}: {} keys but {} children",
                            at(),
                            branch.keys.len(),
                            branch.children.len()
                        ));
                    }
                    check_keys(&branch.keys, node, true, &at, &mut bad);
                    config.branch_capacity
                }
            };
            if node.len() > capacity && !loaded {
                bad(format!("{}: {} entries, over the capacity {capacity}", at(), node.len()));
            }
        }
        // Merges keep nodes at least a quarter full on average (a small
        // node merges when it and its neighbour fit in seven eighths of
        // one): a level holds at most four times the nodes its items need,
        // plus the small last piece an ascending split leaves. Nodes loaded
        // and not written since are not counted: they were shaped by the
        // capacities of the tree that stored them.
        let items: usize = level.nodes.iter().map(|node| node.len()).sum();
        let written = level.nodes.iter().enumerate().filter(|(i, node)| {
            !level.frozen.contains(i) && (node.meta.epoch != 0 || node.meta.stored.get().is_none())
        });
        let (written, capacity) =
            (written.count(), if depth == 0 { config.leaf_capacity } else { config.branch_capacity });
        let bound = 4 * items.div_ceil(capacity) + 2;
        if written > bound {
            bad(format!(
                "level {depth}: {written} nodes for {items} entries, more than the {bound} merges allow"
            ));
        }
        if depth == 0 {
            break;
        }
        let Some(first_child) = level.nodes[0].as_branch().and_then(|b| b.children.first()) else {
            break; // reported by check_level
        };
        let below = chain(tree, Arc::clone(first_child))?;
        unposted += check_children(&level, &below, depth, &mut bad);
        level = below;
    }
    if entries != tree.len() {
        bad(format!("len() is {} but the leaves hold {entries} entries", tree.len()));
    }
    if merging != 0 {
        bad(format!("{merging} nodes still frozen by a merge after finishing every merge found"));
    }
    (report.height, report.nodes, report.entries, report.unposted, report.empty) =
        (height, nodes, entries, unposted, empty);
    Ok(report)
}

/// Finishes every merge in progress, level by level from the top, until a
/// walk finds none; returns how many it finished.
fn settle<K: Ord + Clone, V: Clone>(tree: &Tree<K, V>) -> Result<usize, Error> {
    let mut finished = 0;
    loop {
        let mut frozen = Vec::new();
        let mut first = Some(tree.root());
        while let Some(slot) = first {
            let level = chain(tree, slot)?;
            let merging = level.frozen.iter().map(|&i| &level.slots[i]);
            frozen.extend(merging.filter(|slot| slot.frozen().is_some_and(|f| f.merge().is_some())).cloned());
            first = level.nodes[0].as_branch().and_then(|b| b.children.first()).cloned();
        }
        if frozen.is_empty() {
            return Ok(finished);
        }
        for slot in &frozen {
            tree.complete_merge(slot)?;
            finished += 1;
        }
        if finished > 1 << 20 {
            return Err(Error::Internal { what: "merges that do not finish" });
        }
    }
}

/// The level that starts at `first`, along the right links.
fn chain<K: Ord + Clone, V: Clone>(tree: &Tree<K, V>, first: Arc<Slot<K, V>>) -> Result<Level<K, V>, Error> {
    let mut level = Level { slots: Vec::new(), nodes: Vec::new(), frozen: Vec::new(), cycle: false };
    let mut next = Some(first);
    let mut seen = std::collections::HashSet::new();
    while let Some(slot) = next {
        if !seen.insert(Arc::as_ptr(&slot)) {
            // A cycle of right links: the level ends here (`check_level`
            // reports the ranges that do not follow on).
            level.cycle = true;
            break;
        }
        // A right link may lead to a detached slot (see `engine/slot.rs`):
        // the level is made of the live ones.
        let mut slot = Held::Shared(slot);
        let (node, frozen) = tree.visit(&mut slot)?;
        if frozen {
            level.frozen.push(level.nodes.len());
        }
        next = node.right.clone();
        level.slots.push(Arc::clone(slot.arc()));
        level.nodes.push(node);
    }
    Ok(level)
}

/// Right links and ranges: the level tiles the key space in order, and every
/// node is on level `depth`.
fn check_level<K: Ord + fmt::Debug, V>(level: &Level<K, V>, depth: u32, bad: &mut impl FnMut(String)) {
    let nodes = &level.nodes;
    if level.cycle {
        bad(format!("level {depth}: the right links go round in a cycle after {} nodes", nodes.len()));
    }
    if let Some(low) = &nodes[0].low {
        bad(format!("level {depth}: the leftmost node starts at {low:?}, not minus infinity"));
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.level() != depth {
            bad(format!("level {depth} node {i}: on level {}, heights differ", node.level()));
        }
        if node.high.is_some() != node.right.is_some() {
            bad(format!(
                "level {depth} node {i}: high {:?} but right link {}",
                node.high,
                node.right.is_some()
            ));
        }
        if let (Some(low), Some(high)) = (&node.low, &node.high)
            && low >= high
        {
            bad(format!("level {depth} node {i}: empty range [{low:?}, {high:?})"));
        }
        if let Some(next) = nodes.get(i + 1)
            && next.low != node.high
        {
            bad(format!(
                "level {depth} node {i}: high {:?} but the right neighbour starts at {:?}",
                node.high, next.low
            ));
        }
    }
}

/// Keys strictly increasing and inside the node's range (strictly above
/// `low` for a branch: its first child starts at `low`).
fn check_keys<K: Ord + fmt::Debug, V>(
    keys: &[K],
    node: &Node<K, V>,
    branch: bool,
    at: &dyn Fn() -> String,
    bad: &mut impl FnMut(String),
) {
    for misfit in misfits(keys, node.low.as_ref(), node.high.as_ref(), branch) {
        bad(match misfit {
            Misfit::OutOfOrder(a, b) => format!("{}: keys {a:?} and {b:?} out of order", at()),
            Misfit::Below(first) => format!("{}: key {first:?} below the node's range", at()),
            Misfit::Above(last) => format!("{}: key {last:?} at or above the node's high key", at()),
        });
    }
}

/// The parents' child lists against the level below: children appear on the
/// level in order, each starts where its separator says, and the run of
/// right links from a child ends where the next separator begins. Returns
/// how many nodes below are reachable only by right links (unposted).
fn check_children<K: Ord + fmt::Debug, V>(
    parents: &Level<K, V>,
    below: &Level<K, V>,
    depth: u32,
    bad: &mut impl FnMut(String),
) -> usize {
    let position: HashMap<*const Slot<K, V>, usize> =
        below.slots.iter().enumerate().map(|(i, slot)| (Arc::as_ptr(slot), i)).collect();
    // (label, position below, expected low, expected high at the run's end)
    let mut children = Vec::new();
    for (p, parent) in parents.nodes.iter().enumerate() {
        let Some(branch) = parent.as_branch() else {
            continue;
        };
        for (c, child) in branch.children.iter().enumerate() {
            let at = format!("level {depth} node {p} child {c}");
            let Some(&i) = position.get(&Arc::as_ptr(child)) else {
                bad(format!("{at}: not on the right-link chain of level {}", depth - 1));
                continue;
            };
            let low = if c == 0 { parent.low.as_ref() } else { branch.keys.get(c - 1) };
            let high = branch.keys.get(c).or(parent.high.as_ref());
            children.push((at, i, low, high));
        }
    }
    for (k, (at, i, low, high)) in children.iter().enumerate() {
        let run_end = children.get(k + 1).map_or(below.nodes.len(), |next| next.1);
        if run_end <= *i || (k == 0 && *i != 0) {
            bad(format!("{at}: out of order on level {} (position {i})", depth - 1));
            continue;
        }
        if below.nodes[*i].low.as_ref() != *low {
            bad(format!("{at}: starts at {:?}, its separator says {low:?}", below.nodes[*i].low));
        }
        if below.nodes[run_end - 1].high.as_ref() != *high {
            bad(format!(
                "{at}: its run ends at {:?}, the parent says {high:?}",
                below.nodes[run_end - 1].high
            ));
        }
    }
    below.nodes.len().saturating_sub(children.len())
}
