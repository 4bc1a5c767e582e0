//! Merges: deletes that shrink the tree. An emptied or small node is merged
//! with a neighbour under the same parent, parents that lose children shrink
//! the same way, and a root with one child gives its place to the child, so
//! every cost stays proportional to the live keys (a queue's `pop_first`
//! does not walk the leaves its earlier pops emptied).
//!
//! # Protocol
//!
//! A merge takes a node `R` out of the tree and moves its entries into its
//! left neighbour `L` (the node whose right link is `R`), in four steps, each
//! one compare-and-swap, each idempotent and doable by any thread:
//!
//! 1. **Freeze** `R`: its slot goes from `Loaded(r)` to `Merging(r)`. No write
//!    lands in `R` from here on (a writer's swap from `r` fails), so `r` holds
//!    every entry of `R`'s range until step 3.
//! 2. **Unlink** `R` from its parent: a new parent version without `R`'s
//!    separator `s` (`R`'s `low`) and without `R`. The parent then routes
//!    `[s, ..)` to `L`, which reaches `R` by its right link: `R` looks like a
//!    split not yet posted, which is legal. Marked in `R`'s state
//!    (`unlinked`). If `R` cannot leave its parent (it became the parent's
//!    first child: a parent split right at `s`, and a node's `low` never
//!    changes), `R` is *thawed* instead: back to the very `Loaded(r)` it was.
//! 3. **Absorb**: `L` gets a new version holding its entries and `r`'s, ending
//!    where `R` did (`r`'s `high` and right link); over capacity, it splits
//!    into pieces as any write does. From here `L` covers `R`'s range.
//! 4. **Retire** `R`: `Merging(r)` becomes `Retired(r)`, for good.
//!
//! Who meets a frozen slot: a writer or a point lookup (a descent) helps the
//! merge to its end and starts again from the root; nothing current leads
//! to a retired slot, so the second look does not meet it. An iterator
//! moving right may read `r` itself: it holds every key present in `R`'s
//! range since the freeze, which is what iteration promises (keys present
//! throughout). A checkpoint reads `r` as `R`'s version.
//!
//! Nothing may link to a frozen slot anew: a separator is posted only if the
//! slot it leads to is not frozen, checked after reading the parent version
//! the post swaps from (`Tree::try_post_split`). Unlinking needs `R`
//! frozen first, so a post that read the parent before the unlink fails its
//! swap, and one that read it after sees `R` frozen. Nor to a detached slot:
//! merges help posts they find missing through right links, which may be
//! stale, and a detached slot was posted in the parent whose eviction
//! detached it.
//!
//! Helpers race: each step's "done already" is read off the tree, not the
//! slot's mark, which its doer sets after the step. An unlink finds the
//! separator gone, or leading to another slot (the absorber split right
//! there), or the level above gone (the parent shrank away).
//!
//! # When
//!
//! After a removal leaves a node with at most half its capacity
//! ([`merge_at`]; a leaf looks at every sixteenth of its capacity below
//! that, and at zero), it merges with a neighbour under the same parent if
//! the two together hold at most seven eighths of a node ([`merge_into`]).
//! The gaps are the hysteresis that keeps a remove/insert workload at the
//! boundary from thrashing: a merged node takes an eighth of a node of
//! inserts to split again, and the halves of a split (half a node each)
//! three sixteenths of a node of removes to merge again (with 64 entries:
//! 9 inserts, 12 removes). Three quarters instead of seven eighths left a
//! tree that lost 90 % of its keys at random with 1.75x the nodes of one
//! built from the rest by random inserts (1.24x now), and looking only at
//! powers of two, 1.45x. An empty leaf, or a branch with one child, merges
//! whatever the sizes (the result splits if it must), and its parent goes
//! first if it is the parent's only child.
//!
//! # Epochs
//!
//! A merge is a write: each step's version is tagged with the later of the
//! helper's epoch, its base versions', and the merge's own (recorded in the
//! frozen state, raised by the unlink): the absorb is never tagged earlier
//! than the unlink, so a checkpoint never holds `L` grown over `R`'s range
//! while its parent still routes that range to `R`. A checkpoint that holds
//! the unlink but not the absorb finds `R` by `L`'s right link and folds it
//! back into the parent's image, as it does any split not posted.
//!
//! # Invariants
//!
//! - A frozen node's version is final: it changes only into `Retired` or
//!   back into the same `Loaded` version.
//! - A node is unlinked only when frozen, and absorbed only when unlinked;
//!   it is retired only once absorbed.
//! - Nothing current (a parent's version, a left neighbour's version, the
//!   root cell) links to a retired slot.

use std::sync::Arc;

use super::node::{Body, End};
use super::search::Seek;
use super::slot::{NodeArc, Slot};
use super::tree::{Found, Held, Tree};
use crate::Error;

/// A node with at most this many entries (children) after a removal looks
/// for a neighbour to merge with.
pub(crate) fn merge_at(capacity: usize) -> usize {
    capacity / 2
}

/// Two neighbours merge when together they hold at most this many.
fn merge_into(capacity: usize) -> usize {
    capacity * 7 / 8
}

/// Looks a merge makes before giving up on a node that others keep changing.
const ATTEMPTS: usize = 16;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// After a removal left `left` entries in the leaf of `slot`: merges it
    /// with a neighbour if it is small. The removal took effect; a failure
    /// here (a load) leaves a small leaf, which is legal.
    ///
    /// A leaf shrinking one entry at a time looks for a partner at every
    /// sixteenth of its capacity below half and when empty, not at every
    /// removal: a queue's pops drain the leftmost leaf while its neighbour
    /// is full, and each look is a descent to the parent.
    pub(crate) fn after_remove(&self, slot: &Arc<Slot<K, V>>, left: usize, epoch: u64) {
        let capacity = self.config().leaf_capacity;
        if left <= merge_at(capacity) && left.is_multiple_of((capacity / 16).max(1)) {
            let _ = self.merge_small(0, slot, epoch);
        }
    }

    /// Merges the node of `slot`, on `level`, with a neighbour under the same
    /// parent if it is small (see the module docs), then its parent if that
    /// became small. `epoch` is the caller's registration (0 if none).
    pub(crate) fn merge_small(&self, level: u32, slot: &Arc<Slot<K, V>>, epoch: u64) -> Result<(), Error> {
        let capacity = if level == 0 { self.config().leaf_capacity } else { self.config().branch_capacity };
        for _ in 0..ATTEMPTS {
            let mut held = Held::Shared(Arc::clone(slot));
            let Some(node) = self.node_in(&mut held)? else {
                return Ok(()); // merging (helped to its end) or retired
            };
            let len = node.len();
            if len > merge_at(capacity) {
                return Ok(());
            }
            // An empty leaf, a branch with one child.
            let forced = len <= usize::from(level > 0);
            let (low, high, right) = (node.low.clone(), node.high.clone(), node.right.clone());
            drop(node);
            let to = low.as_ref().map_or(Seek::First, Seek::Key);
            let Found { slot: parent_slot, node: parent, .. } = self.descend::<true, K>(to, level + 1)?;
            if parent.level() != level + 1 {
                // On the top level. Several nodes there wait for the root to
                // grow over them (help it: a grow broken off by a panic is
                // done by nobody else); one with one child is the root,
                // which gives way to its child.
                drop((parent, parent_slot));
                if let (Some(high), Some(right)) = (high, right) {
                    self.help_right(level, high, &right, epoch)?;
                    continue;
                }
                if let Some(low) = low {
                    self.post_split(level, low, Arc::clone(held.arc()), epoch);
                    continue;
                }
                if level > 0 && len == 1 {
                    self.shrink_root()?;
                }
                return Ok(());
            }
            let branch = parent.as_branch().expect("nodes above level 0 are branches");
            let Some(i) = branch.children.iter().position(|child| Arc::ptr_eq(child, held.arc())) else {
                // Not in its parent: a split not posted yet. Post it and look
                // again (the leftmost child is always listed).
                drop((parent, parent_slot));
                match low {
                    Some(low) => self.post_split(level, low, Arc::clone(held.arc()), epoch),
                    None => return Ok(()),
                }
                continue;
            };
            if high.as_ref() != branch.keys.get(i).or(parent.high.as_ref()) {
                // Its right neighbour is not the parent's next child: a
                // split not posted (its own post was broken off: post it),
                // or a node a merge took out of the parent and has not
                // absorbed yet (finish that merge). Then look again.
                drop((parent, parent_slot));
                if let (Some(high), Some(right)) = (high, right) {
                    self.help_right(level, high, &right, epoch)?;
                }
                continue;
            }
            let pair = match i {
                0 if branch.children.len() == 1 => {
                    // The parent's only child: the parent merges first.
                    let parent_slot = Arc::clone(parent_slot.arc());
                    drop(parent);
                    if !forced {
                        return Ok(());
                    }
                    self.merge_small(level + 1, &parent_slot, epoch)?;
                    continue;
                }
                0 => 0,
                i => i - 1,
            };
            let left = Arc::clone(&branch.children[pair]);
            let mut right = Held::Shared(Arc::clone(&branch.children[pair + 1]));
            let parent_slot = Arc::clone(parent_slot.arc());
            drop(parent);
            let Some(r) = self.node_in(&mut right)? else { continue };
            if !forced {
                let Some(l) = self.node_in(&mut Held::Shared(left))? else { continue };
                if l.len() + r.len() > merge_into(capacity) {
                    return Ok(());
                }
            }
            let tag = epoch.max(r.meta.epoch);
            if !right.freeze(&r, tag) {
                continue; // written meanwhile: look again
            }
            drop(r);
            self.complete_merge(right.arc())?;
            // The parent lost a child: it may be small now, or a root with
            // one child.
            return self.merge_small(level + 1, &parent_slot, epoch);
        }
        Ok(())
    }

    /// Helps the right neighbour `right` (starting at `high`, on `level`)
    /// into the parent a node sees it should be in: posts its split, or
    /// finishes the merge taking it out (a merge broken off by a panic may
    /// leave it waiting, even after the root shrank over its parent).
    fn help_right(&self, level: u32, high: K, right: &Arc<Slot<K, V>>, epoch: u64) -> Result<(), Error> {
        if right.is_frozen() {
            self.complete_merge(right)
        } else {
            self.post_split(level, high, Arc::clone(right), epoch);
            Ok(())
        }
    }

    /// Takes the merge of the frozen node in `slot` to its end (or thaws it
    /// if it cannot leave its parent). Any thread may call it, any number
    /// of times.
    pub(crate) fn complete_merge(&self, slot: &Arc<Slot<K, V>>) -> Result<(), Error> {
        loop {
            let Some(frozen) = slot.frozen() else { return Ok(()) }; // thawed
            let Some(step) = frozen.merge() else { return Ok(()) }; // retired: done
            let r = frozen.version();
            let Some(separator) = r.low.clone() else {
                return Err(Error::Internal { what: "a merging node without a left neighbour" });
            };
            if !step.unlinked {
                match self.unlink(slot, &r, &separator, step.epoch)? {
                    Some(epoch) => slot.unlinked(&frozen, epoch),
                    None => slot.thaw(&frozen),
                };
                continue; // whoever won, look at the state again
            }
            self.absorb(slot, &r, &separator, step.epoch)?;
            if slot.retire(&frozen)
                && let Some(stored) = &self.stored
            {
                stored.retired(slot, &r.meta.named);
            }
        }
    }

    /// Step 2: takes the frozen node (its version `r`, starting at
    /// `separator`) out of its parent. Returns the epoch the merge's later
    /// changes must be tagged with at least, or `None` if the node cannot
    /// leave its parent: it is its parent's first child.
    fn unlink(
        &self,
        slot: &Arc<Slot<K, V>>,
        r: &NodeArc<K, V>,
        separator: &K,
        epoch: u64,
    ) -> Result<Option<u64>, Error> {
        let level = r.level();
        self.link_left(slot, separator, level, epoch)?;
        loop {
            // The node was in a parent when it froze, and a level goes only
            // when its last node but one has left it: with no level above,
            // it is unlinked already, by a helper that has not marked it
            // yet. (A thaw would bring back a node no parent lists. And the
            // descent below would walk the node's own level, meet it frozen
            // and help it: this very call again, until the stack ran out.)
            let (_, root) = self.root_node()?;
            if root.level() <= level {
                return Ok(Some(epoch.max(root.meta.epoch)));
            }
            drop(root);
            let Found { slot: parent_slot, node: parent, .. } =
                self.descend::<true, K>(Seek::Key(separator), level + 1)?;
            if parent.level() != level + 1 {
                return Ok(Some(epoch.max(parent.meta.epoch))); // as above
            }
            if parent.low.as_ref() == Some(separator) {
                return Ok(None);
            }
            let branch = parent.as_branch().expect("nodes above level 0 are branches");
            let Ok(k) = branch.keys.binary_search(separator) else {
                // Unlinked already, by a version tagged at most this one's.
                return Ok(Some(epoch.max(parent.meta.epoch)));
            };
            if !Arc::ptr_eq(&branch.children[k + 1], slot) {
                // Another node starts there now: helpers faster than this
                // one unlinked the node and absorbed it, and the absorber
                // split right at the separator and posted its new piece.
                return Ok(Some(epoch.max(parent.meta.epoch)));
            }
            let body = Body::Branch(branch.without_child(k + 1));
            if let Some(tag) = self.publish(parent_slot.arc(), &parent, body, None, false, epoch, 0) {
                return Ok(Some(epoch.max(tag)));
            }
        }
    }

    /// Before the unlink: makes the frozen node's left neighbour loaded and
    /// linked to `slot` itself. Once the parent no longer lists the frozen
    /// node, that link is the only way to it, and two kinds of link go
    /// through the parent instead: a right link to a detached slot that
    /// stood for it (its live slot is found by a descent, which would come
    /// back to the same link), and the right neighbour of a child ghost,
    /// found when it loads (which would find the neighbour itself). A left
    /// neighbour loaded now (while the parent lists the frozen node) links
    /// to it for good: evicted, it becomes a described ghost that keeps the
    /// link; its parent stays loaded while it is dirty.
    fn link_left(&self, slot: &Arc<Slot<K, V>>, separator: &K, level: u32, epoch: u64) -> Result<(), Error> {
        loop {
            let Found { slot: left_slot, node: left, .. } =
                self.descend::<true, K>(Seek::Before(separator), level)?;
            let linked = left.right.as_ref().is_some_and(|right| Arc::ptr_eq(right, slot));
            if linked || left.level() != level || left.high.as_ref() != Some(separator) {
                return Ok(());
            }
            // A stale link: the same entries, linked to the live slot.
            let end = End { high: left.high.clone(), right: Some(Arc::clone(slot)) };
            if self.publish(left_slot.arc(), &left, left.body.clone(), Some(end), false, epoch, 0).is_some() {
                return Ok(());
            }
        }
    }

    /// Step 3: the frozen node's left neighbour takes its entries, and ends
    /// where it ended.
    fn absorb(
        &self,
        slot: &Arc<Slot<K, V>>,
        r: &NodeArc<K, V>,
        separator: &K,
        epoch: u64,
    ) -> Result<(), Error> {
        let level = r.level();
        loop {
            let Found { slot: left_slot, node: left, .. } =
                self.descend::<true, K>(Seek::Before(separator), level)?;
            if left.level() != level {
                return Err(Error::Internal { what: "a merging node without a left neighbour on its level" });
            }
            // Not absorbed yet exactly while the left neighbour links to the
            // frozen slot: `link_left` made it so before the unlink, and
            // only the absorb changes it (a split of the left neighbour
            // passes the link on to its right piece). Its `high` alone
            // would not tell: the node that absorbed may have split again
            // right at the separator, and absorbing twice duplicates.
            let linked = left.right.as_ref().is_some_and(|right| Arc::ptr_eq(right, slot));
            if left.high.as_ref() != Some(separator) || !linked {
                return Ok(()); // absorbed already
            }
            let Some(body) = left.body.absorbing(separator, &r.body) else {
                return Err(Error::Internal { what: "a merge of nodes of different levels" });
            };
            let end = End { high: r.high.clone(), right: r.right.clone() };
            let epoch = epoch.max(r.meta.epoch);
            if self.publish(left_slot.arc(), &left, body, Some(end), false, epoch, 0).is_some() {
                return Ok(());
            }
        }
    }

    /// A root branch with one child gives its place to the child: the root
    /// slot is retired (no write lands in it any more), then the root cell
    /// is handed on ([`hand_on_root`](Tree::hand_on_root), which any thread
    /// that meets the retired root does too).
    pub(crate) fn shrink_root(&self) -> Result<(), Error> {
        loop {
            let (root, node) = self.root_node()?;
            let only_child =
                node.as_branch().is_some_and(|branch| branch.children.len() == 1) && node.high.is_none();
            if !only_child {
                return Ok(());
            }
            let root = Arc::clone(root.arc());
            if root.retire_root(&node) {
                if let Some(stored) = &self.stored {
                    stored.retired(&root, &node.meta.named);
                }
                drop(node);
                self.hand_on_root(&root);
            }
        }
    }

    /// The root slot `root` is retired: the root cell goes to its only child.
    pub(crate) fn hand_on_root(&self, root: &Arc<Slot<K, V>>) {
        let Some(frozen) = root.frozen() else { return };
        let version = frozen.version();
        if let Some([child]) = version.as_branch().map(|branch| &branch.children[..]) {
            self.replace_root(root, Arc::clone(child));
        }
    }
}
