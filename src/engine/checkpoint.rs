//! Checkpoints: `flush` writes a consistent image of the tree while readers
//! and writers go on. Which operations an image holds is the epochs' part
//! (`epoch.rs`); this file is the walk that writes it.
//!
//! # Protocol
//!
//! - A checkpoint closes epoch `E` (`Epochs::close`: no writer of `E` is
//!   left, and writers of `E + 1` see it running).
//! - It then writes, for every slot, the newest version tagged `<= E`:
//!   children before parents, each branch image naming its children's
//!   addresses and folding in splits whose separator is not posted yet, then
//!   seals what it wrote and freed, and (after releasing the epochs' lock)
//!   syncs and writes the commit record naming the root ("Commits" below).
//! - A writer of `E + 1` that replaces a version the checkpoint may still
//!   need (tagged `<= running`) keeps it in the new version's `prev`.
//!
//! So the image holds exactly the operations of epochs `<= E`: every
//! operation that completed before `flush` was called (it registered in an
//! epoch `<= E`), and none that started after `flush` returned (those
//! register in `E + 1` or later). Readers never register and never wait.
//!
//! # What gets freed
//!
//! Every node carries the record the last commit names for it (`Named`,
//! shared by its versions). Before the commit, the checkpoint frees each
//! record it supersedes: the named record of every node it writes anew,
//! the named record of every node a merge retired that the image no
//! longer lists (retired in the checkpoint's epoch or before: a later
//! merge may take away a node the image still holds, under another slot
//! if its parent was evicted and loaded again during the walk), and the
//! extra root of the last image (below). The store
//! reuses that space only once the commit is durable (`Store::free`); the
//! names move on only then, so a failed checkpoint frees nothing and the
//! next one frees the same records again.
//!
//! # Spills: dirty leaves written back, not committed
//!
//! A *spill* (`Ending::Spill`, `Tree::spill`) writes back only the leaves
//! written up to `E`, with no walk and no branch: writes queue a leaf slot
//! once per slot and epoch (`Stored::dirtied`, pushed by `Tree::publish`
//! on the first write of an epoch into it, and for both halves of a
//! split), and the spill takes the entries of epochs `<= E`, writes each
//! leaf's version at `E`, and settles (`Store::settle`). The leaves written
//! count as stored, so they are clean and may be evicted; nothing is
//! durable. Writers spill when dirty bytes fill three eighths of the
//! budget (a sixteenth, once resident bytes pass it: `pressure`), so
//! random writes over a tree much larger than the budget cost no sync
//! each time that fills; `flush`, the checkpoint thread's interval,
//! the space the file cannot reuse before a commit (`Stored::commit_due`)
//! and dirty bytes a spill cannot clean (branches: `Stored::walk_due`)
//! decide when a commit follows.
//!
//! - No new atomics: the writers of epochs `<= E` are done when `E`
//!   closes, so their pushes are in the queue; entries of later epochs
//!   stay for a later checkpoint. A spill that fails queues its leaves again.
//! - A spill frees nothing. The record it supersedes (the leaf's `named`)
//!   may be what the last commit names, which the store keeps until the
//!   next commit is durable; it goes to `Superseded::spilled`, and the next
//!   commit frees it, less what its image still lists. `named` then says
//!   the spilled record, which is what the next image supersedes.
//! - A spilled leaf's parent still has a record listing the leaf's old
//!   record. The next commit rewrites every branch whose record does not
//!   list its children as they are now (`Listing`, `node.rs`), and the
//!   clock does not evict such a branch (`evict.rs`): reloaded, it would
//!   bring back the old leaf.
//!
//! A crash before the next commit comes back to the last one, which names
//! none of the spilled records (they lie in space free at that commit).

//! # Commits: sealed, then synced beside spills
//!
//! A commit walks the tree (the protocol above) and ends with a seal
//! (`Store::seal`) instead of a settle: its nodes are marked stored, its names move on, and the store
//! knows that what was appended and freed up to the seal is this commit's.
//! Then the epochs' lock is released and the commit syncs and writes its
//! record (`Stored::commit`), two `fdatasync`s, while writers that fill the
//! dirty share spill beside it: their appends and frees come after the seal,
//! so they belong to the next commit (a spill frees the records this commit
//! names, which the store must keep until the next commit is durable). A
//! commit turn (taken by `Stored::seal`, held to the commit record) keeps
//! commits in the order of their images; a second commit's walk may run
//! while the first syncs.
//!
//! A failed sync or commit record leaves what was sealed to the next commit,
//! as after a spill (the store's part); the error is the checkpoint's. A
//! failure before the seal abandons the attempt as always (`Attempt`), and
//! nothing after the seal abandons: a spill beside it may be appending.
//!
//! # What gets rewritten
//!
//! A leaf version is written once: its image depends on nothing else, and
//! `meta.stored` remembers where it went. A branch is rewritten when its
//! version changed or a child moved (its `Listing` does not list the
//! children's records as the walk finds them). Ghosts are on the store
//! already. A commit's walk visits every loaded node, so it costs
//! O(resident nodes) of CPU and O(changed nodes + their ancestors) of
//! writes; a spill costs O(dirty leaves) of both.

use std::sync::Arc;

use super::account::Account;
use super::epoch::Closed;
use super::format::{Commit, encode_commit};
use super::node::{Body, Branch, Node};
use super::search::Seek;
use super::slot::{GhostView, NodeArc, Slot};
use super::stored::{Counters, Ending, Sealed, Stored};
use super::sync::count_call;
use super::tree::Tree;
use crate::Error;
use crate::store::{Address, Store};

/// What a checkpoint appended: each slot, the version, its record,
/// whether the version counts as stored at it (see `write_slot`), and a
/// branch's child records.
type Written<K, V> = Vec<(Arc<Slot<K, V>>, NodeArc<K, V>, Address, bool, Option<Arc<[Address]>>)>;

/// A child as an image lists it, with its record if it is a child ghost
/// (`Slot::child_record`: nothing more to look at).
type Child<K, V> = (Arc<Slot<K, V>>, Option<Address>);

/// What an image lists: its slots, by identity, and every record it names
/// (sorted once the walk is done, then searched: cheaper than hashing
/// every child of every loaded branch; and sorted only if a retired node
/// must be looked up, which is rare: a spill's walk of a large tree lists
/// ten thousand children for a few hundred nodes written).
struct Listed<K, V> {
    slots: Vec<*const Slot<K, V>>,
    records: Vec<Address>,
}

impl<K, V> Listed<K, V> {
    fn sort(&mut self) {
        self.slots.sort_unstable();
        self.records.sort_unstable();
    }

    fn has_slot(&self, slot: *const Slot<K, V>) -> bool {
        self.slots.binary_search(&slot).is_ok()
    }

    fn has_record(&self, address: &Address) -> bool {
        self.records.binary_search(address).is_ok()
    }
}

/// The version a checkpoint of `epoch` writes of a loaded node: its own if
/// it is old enough, else the one it keeps in `prev`.
fn version_at<K, V>(version: NodeArc<K, V>, epoch: u64) -> Option<NodeArc<K, V>> {
    if version.meta.epoch <= epoch { Some(version) } else { version.meta.prev() }
}

/// Where a slot stands at `epoch`, as far as the image is concerned.
enum AtEpoch<K, V> {
    /// On the store already, unchanged: a ghost (or a ghost being loaded).
    /// `high` and `right` only if asked for (`links`).
    Stored { address: Address, level: u32, high: Option<K>, right: Option<Arc<Slot<K, V>>> },
    /// In memory: this version.
    Version(NodeArc<K, V>),
    /// The slot did not exist at `epoch` (a split of a later epoch).
    Absent,
}

/// Where `slot` stands at `epoch`; with `links`, a ghost's `high` and right
/// neighbour too (cloned, so asked for only where needed: a checkpoint
/// looks at every ghost child of every loaded branch).
fn at_epoch<K: Clone, V>(slot: &Slot<K, V>, epoch: u64, links: bool) -> AtEpoch<K, V> {
    let ghost = |ghost: GhostView<'_, K, V>| match ghost {
        GhostView::Described(ghost) => {
            let (high, right) = if links { (ghost.high.clone(), ghost.right.clone()) } else { (None, None) };
            AtEpoch::Stored { address: ghost.address, level: ghost.level, high, right }
        }
        // It ends at its parent's separator: no unposted split, which is
        // what "no high, no right" tells a chain walk.
        GhostView::Child { address, level } => AtEpoch::Stored { address, level, high: None, right: None },
    };
    match slot.version_or(ghost) {
        Ok(version) => version_at(version, epoch).map_or(AtEpoch::Absent, AtEpoch::Version),
        Err(stored) => stored,
    }
}

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// Writes a checkpoint (see the module docs). A no-op without a store,
    /// and when nothing was written since the last commit, which succeeded:
    /// that commit is the tree, so a read-only session's flush or close
    /// writes nothing (at 10M keys, such a commit's listing and the file
    /// store's free-space map, loaded for it, took ~10 MB for an instant).
    pub(crate) fn checkpoint(&self) -> Result<(), Error> {
        let Some(stored) = &self.stored else { return Ok(()) };
        let closed = stored.epochs.close();
        // After the close: every write of the closed epoch is done and seen
        // (its charges, its spills' appends), and no checkpoint is running.
        if !stored.uncommitted() && stored.health().is_ok() {
            return Ok(());
        }
        self.checkpoint_closed(stored, closed, Ending::Commit)
    }

    /// Writes a checkpoint, or with `Ending::Spill` only writes the dirty
    /// nodes back. A no-op without a store.
    pub(crate) fn write_back(&self, ending: Ending) -> Result<(), Error> {
        let Some(stored) = &self.stored else { return Ok(()) };
        self.checkpoint_closed(stored, stored.epochs.close(), ending)
    }

    /// Keeps dirty bytes (which cannot be evicted) within the budget, then
    /// evicts if resident bytes exceed it. Past a quarter of the budget the
    /// checkpoint thread is nudged (it spills); further on (`pressure`) the
    /// writer writes back itself (a spill, or a commit when one is due),
    /// and further still waits for the write back running and looks again
    /// (backpressure: writers cannot outrun the store). Writers keep
    /// writing beside a running write back until then: waiting from the
    /// first threshold on took the quickstart's writers (beside readers
    /// that keep the tree at its budget) from 7-9k inserts/s to 5k, where
    /// its resident bytes stayed within 1.01x either way.
    /// Called by writers after their operation, so never while registered
    /// in an epoch; looks every 4th write of a thread (every 32nd let 8
    /// writers take dirty bytes to 0.7x the budget between looks). An error
    /// here is not the write's: the write took effect, and `flush`, `stats`
    /// and `health` report the store's trouble.
    pub(crate) fn checkpoint_if_dirty(&self) {
        let Some(stored) = &self.stored else { return };
        let call = count_call();
        if !call.is_multiple_of(4) {
            return;
        }
        let account = stored.account();
        if account.dirty() > account.budget() / 4 {
            stored.schedule.nudge();
        }
        let mut wrote_back = false;
        loop {
            let pressure = pressure(account);
            if pressure == Pressure::Low {
                break;
            }
            if let Some(closed) = stored.epochs.try_close() {
                let ending = stored.write_back_ending();
                // One per writer: under a failing store, dirty bytes stay.
                let _ = self.checkpoint_closed(stored, closed, ending);
                wrote_back = true;
                break;
            }
            if pressure == Pressure::WriteBack {
                break; // the running one will do
            }
            stored.epochs.wait_idle();
        }
        // Writes grow the tree too (splits), and a write back makes leaves
        // evictable. Every 32nd write otherwise, not at every look: a turn
        // of the clock takes up to 512 steps, and loads turn it too.
        if wrote_back || call.is_multiple_of(32) {
            stored.evict_if_over_budget();
        }
    }

    fn checkpoint_closed(
        &self,
        stored: &Stored<K, V>,
        closed: Closed<'_>,
        ending: Ending,
    ) -> Result<(), Error> {
        // A failed (or panicking) image names none of what it appended.
        let attempt = Attempt(&*stored.store);
        let imaged = match ending {
            Ending::Commit => self.write_image(stored, closed.epoch, closed.len).map(Some),
            Ending::Spill => self.spill(stored, closed.epoch).map(|()| None),
        };
        if imaged.is_ok() {
            std::mem::forget(attempt);
        } else {
            drop(attempt);
        }
        // Settled or sealed (or abandoned): the next spill may run, and
        // write while this commit syncs ("Commits" in the module docs).
        drop(closed);
        match imaged {
            // Records its own outcome, within its turn.
            Ok(Some(sealed)) => stored.commit(sealed),
            imaged => {
                let result = imaged.map(drop);
                stored.checkpointed(&result, ending);
                result
            }
        }
    }

    /// A spill (module docs): the leaves writes queued up to `epoch`, and
    /// nothing else, settled. Frees nothing: the records it supersedes go
    /// to the next commit (`Stored::superseded_by_spill`).
    fn spill(&self, stored: &Stored<K, V>, epoch: u64) -> Result<(), Error> {
        let dirty = stored.account().dirty();
        let mut queued = stored.take_dirtied(epoch);
        // A slot queued in two epochs is written once, in queue order (an
        // order by address would differ from run to run, under loom too).
        let mut seen = std::collections::HashSet::with_capacity(queued.len());
        queued.retain(|slot| seen.insert(Arc::as_ptr(slot)));
        let mut written = Vec::with_capacity(queued.len());
        let mut merging = Vec::new();
        let appended = (|| {
            for slot in &queued {
                // A ghost was stored before it was evicted; a leaf of a
                // later epoch only is queued for that epoch.
                let AtEpoch::Version(version) = at_epoch(slot, epoch, false) else { continue };
                let Body::Leaf(leaf) = &version.body else { continue };
                if version.meta.stored.get().is_some() {
                    continue;
                }
                if let Some(frozen) = slot.frozen() {
                    // Retired: the commit writes or frees it. Merging: a
                    // thaw makes it a leaf again, to be spilled later.
                    if frozen.merge().is_some() {
                        merging.push(Arc::clone(slot));
                    }
                    continue;
                }
                let (low, high) = (version.low.as_ref(), version.high.as_ref());
                let record = (stored.codecs.encode_leaf)(low, high, &leaf.keys, &leaf.vals)
                    .map_err(|what| Error::Internal { what })?;
                let address = append(stored, &record)?;
                written.push((Arc::clone(slot), version.clone(), address));
            }
            stored.store.settle().map_err(|e| Error::io("writing nodes back (a spill)", None, e))
        })();
        if let Err(e) = appended {
            // Still dirty: the next spill looks again.
            stored.requeue(queued, epoch);
            return Err(e);
        }
        stored.requeue(merging, epoch);
        // Settled: the records are the nodes' now (see `write_image`).
        let mut cleaned = 0;
        for (slot, version, address) in written {
            if let Some(named) = version.meta.named.get() {
                stored.superseded_by_spill(named);
            }
            version.meta.named.set(Some(address));
            cleaned += mark_stored(stored, &slot, &version, address);
        }
        stored.spilled(cleaned, dirty);
        Ok(())
    }

    /// A commit's walk, its frees and its seal; the commit is returned to
    /// be synced and written.
    fn write_image<'s>(&self, stored: &'s Stored<K, V>, epoch: u64, len: u64) -> Result<Sealed<'s>, Error> {
        let (root, level) = self.root_at(epoch)?;
        // The root may have split without a new root above it yet: then the
        // image gets a root over the whole top level.
        let above = Node::new(
            None,
            None,
            None,
            Body::Branch(Branch { level: level + 1, keys: Vec::new(), children: vec![root] }),
        );
        let (keys, top) = self.posted(stored, &above, epoch)?;
        let mut written = Vec::new();
        let mut listed = Listed { slots: Vec::new(), records: Vec::new() };
        let (address, level, extra_root) = if let [root] = &top[..] {
            (self.write_child(stored, root, epoch, &mut written, &mut listed)?, level, None)
        } else {
            let mut addresses = Vec::with_capacity(top.len());
            for child in &top {
                addresses.push(self.write_child(stored, child, epoch, &mut written, &mut listed)?);
            }
            let record = (stored.codecs.encode_branch)(level + 1, None, None, &keys, &addresses)
                .map_err(|what| Error::Internal { what })?;
            let address = append(stored, &record)?;
            (address, level + 1, Some(address))
        };
        // The records this image supersedes (module docs). Never one it
        // names: a record may be reached through two slots (a detached one
        // through a stale link, and the node's live one), so slot identity
        // alone does not tell.
        let mut sorted = false;
        let retired = stored.retired_unlisted(epoch, |slot, named| {
            if !std::mem::replace(&mut sorted, true) {
                listed.sort();
            }
            listed.has_slot(slot) || named.get().as_ref().is_some_and(|a| listed.has_record(a))
        });
        // The few records the written nodes had and those spills wrote
        // anew, less those the image still names: looked up for every
        // record listed, not the other way round.
        let mut superseded: Vec<Address> =
            written.iter().filter_map(|(_, version, ..)| version.meta.named.get()).collect();
        superseded.extend(stored.spilled_records());
        superseded.sort_unstable();
        let mut still_named = vec![false; superseded.len()];
        for address in &listed.records {
            let at = superseded.partition_point(|a| a < address);
            for i in (at..superseded.len()).take_while(|&i| superseded[i] == *address) {
                still_named[i] = true;
            }
        }
        let superseded = superseded.iter().zip(&still_named).filter(|(_, named)| !**named).map(|(a, _)| *a);
        let gone = retired.iter().filter_map(|named| named.get());
        let store = &stored.store;
        for address in superseded.chain(gone).chain(stored.extra_root()) {
            store.free(address).map_err(|e| Error::io("freeing a superseded record", Some(address), e))?;
        }
        let record = encode_commit(&Commit { root: address, level, epoch, len })
            .map_err(|what| Error::Internal { what })?;
        let sealed = stored.seal(record)?;
        stored.imaged(extra_root, &retired);
        // Every leaf queued up to `epoch` is in the image.
        drop(stored.take_dirtied(epoch));
        // Only now are the records part of the stored tree (settled or
        // sealed: no failed attempt takes them back, and a failed commit
        // leaves them to the next). Marked before, a failure after them
        // would let the next checkpoint reuse a child's new record under a
        // parent whose old record it never rewrote.
        // Parents first: a child still unmarked is dirty, so it cannot be a
        // ghost, so its parent cannot be evicted with a record naming the
        // child's new address before the child is evictable from it.
        for (slot, version, address, mark, children) in written.into_iter().rev() {
            version.meta.named.set(Some(address));
            if !mark {
                continue;
            }
            // The listing first: an evictor that reads the new record from
            // `stored` still takes record and children from it.
            if let Some(children) = children {
                version.meta.listing.set(address, children);
            }
            mark_stored(stored, &slot, &version, address);
        }
        Ok(sealed)
    }

    /// The root at `epoch` and its level: the topmost slot on the leftmost
    /// path that existed then (roots grown later are skipped).
    fn root_at(&self, epoch: u64) -> Result<(Arc<Slot<K, V>>, u32), Error> {
        let mut slot = self.root();
        loop {
            match at_epoch(&slot, epoch, false) {
                AtEpoch::Stored { level, .. } => return Ok((slot, level)),
                AtEpoch::Version(version) => return Ok((slot, version.level())),
                AtEpoch::Absent => {
                    let node = self.version(&slot)?;
                    let Some(first) = node.as_branch().map(|branch| Arc::clone(&branch.children[0])) else {
                        return Err(Error::Internal {
                            what: "a leaf root created after the checkpoint's epoch",
                        });
                    };
                    drop(node);
                    slot = first;
                }
            }
        }
    }

    /// Writes what the image of `slot` at `epoch` needs written, children
    /// first, noting each version written in `written`. Returns the image's
    /// address. A version counts as stored (reused by
    /// later checkpoints, evictable) only once the commit succeeded.
    fn write_slot(
        &self,
        stored: &Stored<K, V>,
        slot: &Arc<Slot<K, V>>,
        epoch: u64,
        written: &mut Written<K, V>,
        listed: &mut Listed<K, V>,
    ) -> Result<Address, Error> {
        listed.slots.push(Arc::as_ptr(slot));
        let address = self.write_version(stored, slot, epoch, written, listed)?;
        listed.records.push(address);
        Ok(address)
    }

    /// [`write_slot`](Tree::write_slot) of a child as `posted` found it.
    fn write_child(
        &self,
        stored: &Stored<K, V>,
        (slot, record): &Child<K, V>,
        epoch: u64,
        written: &mut Written<K, V>,
        listed: &mut Listed<K, V>,
    ) -> Result<Address, Error> {
        let Some(address) = *record else { return self.write_slot(stored, slot, epoch, written, listed) };
        listed.slots.push(Arc::as_ptr(slot));
        listed.records.push(address);
        Ok(address)
    }

    /// [`write_slot`](Tree::write_slot) but for the listing.
    fn write_version(
        &self,
        stored: &Stored<K, V>,
        slot: &Arc<Slot<K, V>>,
        epoch: u64,
        written: &mut Written<K, V>,
        listed: &mut Listed<K, V>,
    ) -> Result<Address, Error> {
        let version = match at_epoch(slot, epoch, false) {
            AtEpoch::Stored { address, .. } => return Ok(address),
            AtEpoch::Version(version) => version,
            AtEpoch::Absent => {
                return Err(Error::Internal { what: "a child that did not exist at its parent's epoch" });
            }
        };
        let node = &*version;
        // A branch image may list a node its version does not: one a merge
        // took out of the branch (frozen, not yet absorbed by its left
        // neighbour), folded back in because its keys are there at this
        // epoch. Such a version is not marked stored at that image (loaded
        // again, it would bring the merged node back): it stays dirty, and
        // a later checkpoint writes it anew.
        let mut mark = true;
        let mut listing = None;
        let record = match &node.body {
            Body::Leaf(leaf) => {
                if let Some(at) = node.meta.stored.get() {
                    return Ok(at);
                }
                (stored.codecs.encode_leaf)(node.low.as_ref(), node.high.as_ref(), &leaf.keys, &leaf.vals)
                    .map_err(|what| Error::Internal { what })?
            }
            Body::Branch(branch) => {
                let (keys, children) = self.posted(stored, node, epoch)?;
                mark = !children.iter().any(|(child, record)| record.is_none() && child.is_frozen());
                let mut addresses = Vec::with_capacity(children.len());
                for child in &children {
                    addresses.push(self.write_child(stored, child, epoch, written, listed)?);
                }
                // Stored, and every child where its record says: a child a
                // spill wrote anew, or this walk, is not.
                if let Some(at) = node.meta.listing.lists(&addresses) {
                    return Ok(at);
                }
                let (low, high) = (node.low.as_ref(), node.high.as_ref());
                let record = (stored.codecs.encode_branch)(branch.level, low, high, &keys, &addresses)
                    .map_err(|what| Error::Internal { what })?;
                listing = Some(addresses.into());
                record
            }
        };
        let address = append(stored, &record)?;
        written.push((Arc::clone(slot), version.clone(), address, mark, listing));
        Ok(address)
    }

    /// A branch version's children as the image lists them: its own, plus
    /// the nodes right of a child that split without posting yet (reached
    /// through right links, at `epoch`), each with its `low` as separator.
    #[allow(clippy::type_complexity)]
    fn posted(
        &self,
        stored: &Stored<K, V>,
        node: &Node<K, V>,
        epoch: u64,
    ) -> Result<(Vec<K>, Vec<Child<K, V>>), Error> {
        let branch = node.as_branch().expect("called on branches");
        let mut keys = Vec::with_capacity(branch.keys.len());
        let mut children = Vec::with_capacity(branch.children.len());
        for (i, child) in branch.children.iter().enumerate() {
            if i > 0 {
                keys.push(branch.keys[i - 1].clone());
            }
            let bound = branch.keys.get(i).or(node.high.as_ref());
            // Most children of a branch in a large tree: a ghost that ends
            // at this separator, with its record. Loaded since, it is the
            // same record (a version loaded from it; one written since
            // keeps that one for this epoch, `version_at`).
            if let Some(record) = child.child_record(bound) {
                children.push((Arc::clone(child), Some(record)));
                continue;
            }
            let child = self.live(stored, Arc::clone(child), epoch)?;
            children.push((Arc::clone(&child), None));
            let mut current = child;
            loop {
                let (high, right) = match at_epoch(&current, epoch, true) {
                    AtEpoch::Stored { high, right, .. } => (high, right),
                    AtEpoch::Version(version) => (version.high.clone(), version.right.clone()),
                    AtEpoch::Absent => {
                        return Err(Error::Internal { what: "a right link to a node of a later epoch" });
                    }
                };
                let unposted = match (&high, bound) {
                    (Some(high), Some(bound)) => high < bound,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let (true, Some(high)) = (unposted, high) else { break };
                // A node ending before its bound has a right neighbour; an
                // image without it would lose that neighbour's keys.
                let Some(right) = right else {
                    return Err(Error::Internal {
                        what: "a node ends before its parent's bound, with no right link",
                    });
                };
                let right = self.live(stored, right, epoch)?;
                keys.push(high);
                children.push((Arc::clone(&right), None));
                current = right;
            }
        }
        Ok((keys, children))
    }

    /// The live slot of `slot`: itself, or if it is detached (its parent
    /// was evicted; an old version of a branch or of a left neighbour still
    /// leads to it), the slot now on its level starting at its `low`. A
    /// detached slot's description is of its node when it was detached:
    /// the node may have been loaded again and written since, under its
    /// live slot, and the description has no right link (`Slot::evict`).
    ///
    /// If that node was merged into its left neighbour after `epoch`, no
    /// descent finds it: its slot is among the retired ones.
    fn live(
        &self,
        stored: &Stored<K, V>,
        slot: Arc<Slot<K, V>>,
        epoch: u64,
    ) -> Result<Arc<Slot<K, V>>, Error> {
        let Some((level, low)) = slot.detached() else { return Ok(slot) };
        let found = self.descend::<true, K>(low.as_ref().map_or(Seek::First, Seek::Key), level)?;
        if found.node.low == low {
            return Ok(Arc::clone(found.slot.arc()));
        }
        drop(found);
        stored
            .retired_after(epoch, level, low.as_ref())
            .ok_or(Error::Internal { what: "a link to a node merged away, found neither live nor retired" })
    }
}

/// A checkpoint's commit in the making: dropped before the commit is
/// written (an error, a panic), it tells the store the commit will not
/// come (`Store::abandon`).
struct Attempt<'a>(&'a dyn Store);

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// Appends a record, which must not be at the address no record has.
fn append<K, V>(stored: &Stored<K, V>, record: &[u8]) -> Result<Address, Error> {
    let address = stored.store.append(record).map_err(|e| Error::io("writing a node", None, e))?;
    if address == Address::NONE {
        return Err(Error::Internal {
            what: "the store put a record at address 0, which the Store trait reserves",
        });
    }
    Counters::bump(&stored.counters.store_writes);
    stored.appended(record.len());
    Ok(address)
}

/// Marks `version` of `slot` stored at `address`: clean, keeping no older
/// version (what it kept was for an older, finished checkpoint), and
/// evictable. Returns the bytes it uncounted as dirty.
fn mark_stored<K, V>(
    stored: &Stored<K, V>,
    slot: &Arc<Slot<K, V>>,
    version: &NodeArc<K, V>,
    address: Address,
) -> usize {
    version.meta.stored.set(address);
    let cleaned = version.meta.charge.as_ref().map_or(0, |charge| charge.clean());
    version.meta.forget_prev();
    stored.track(slot);
    cleaned
}

/// How far writers are ahead of the store (`Tree::checkpoint_if_dirty`).
#[derive(PartialEq, Eq)]
enum Pressure {
    Low,
    /// Write back, unless a write back is running.
    WriteBack,
    /// Write back, or wait for the one running.
    Wait,
}

/// Past three eighths of the budget dirty, a write back; past half, a wait.
/// Over the budget, the clock may have nothing left to evict (branches,
/// dirty leaves, and while a write back runs the versions the leaves
/// written meanwhile replaced, `Meta::prev`): then past a sixteenth dirty a
/// write back, and past nine eighths resident a wait, when writing back
/// (which makes the dirty leaves and the versions they replaced evictable)
/// would bring resident bytes within the budget. Not when the branches
/// alone fill it: write backs that frequent would only add commits.
fn pressure(account: &Account) -> Pressure {
    let (dirty, budget) = (account.dirty(), account.budget());
    if dirty > budget / 2 {
        return Pressure::Wait;
    }
    let resident = account.resident();
    let helps = resident.saturating_sub(2 * dirty) <= budget && dirty > budget / 16;
    if helps && resident > budget + budget / 8 {
        Pressure::Wait
    } else if dirty > budget / 8 * 3 || (helps && resident > budget) {
        Pressure::WriteBack
    } else {
        Pressure::Low
    }
}
