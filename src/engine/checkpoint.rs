//! Epoch checkpoints: `flush` writes a consistent image of the tree while
//! readers and writers go on.
//!
//! # Protocol
//!
//! - A global commit epoch. Every write operation (insert, remove, pop, with
//!   the splits it makes) registers in the current epoch for its duration
//!   and tags the versions it builds with that epoch.
//! - A checkpoint of epoch `E` announces itself (`running = E`), advances the
//!   epoch to `E + 1` and waits until no writer of `E` is left. It waits; the
//!   writers never do.
//! - It then writes, for every slot, the newest version tagged `<= E`:
//!   children before parents, each branch image naming its children's
//!   addresses and folding in splits whose separator is not posted yet, then
//!   syncs and writes the commit record naming the root.
//! - A writer of `E + 1` that replaces a version the checkpoint may still
//!   need (tagged `<= running`) keeps it in the new version's `prev`.
//!
//! So the image holds exactly the operations of epochs `<= E`: every
//! operation that completed before `flush` was called (it registered in an
//! epoch `<= E`), and none that started after `flush` returned (those
//! register in `E + 1` or later). Readers never register and never wait.
//!
//! # Orderings
//!
//! Registration, the epoch advance, `running` and the drain check are all
//! `SeqCst`, because the argument is about one total order: a writer that
//! registered in `E` and then saw the epoch still at `E` (its recheck) did so
//! before the advance, so the checkpoint's later drain check sees its count;
//! a writer that saw `E + 1` registered after the advance and, reading
//! `running` after registering, sees `E` (stored before the advance).
//!
//! # What gets rewritten
//!
//! A leaf version is written once: its image depends on nothing else, and
//! `meta.stored` remembers where it went. A branch is rewritten when its
//! version changed or a child moved. Ghosts are on the store already. The
//! walk visits every loaded node, so a checkpoint costs O(resident nodes) of
//! CPU and O(changed nodes + their ancestors) of writes.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::Backoff;

use super::cell::{Mutex, MutexGuard, lock, try_lock};
use super::format::{Commit, encode_commit};
use super::node::{Body, Branch, Node};
use super::persist::Counters;
use super::slot::{GhostView, Slot, State};
use super::striped::Striped;
use super::tree::Tree;
use crate::Error;
use crate::store::Address;

pub(crate) struct Epochs {
    /// The epoch writers register in. Starts above every stored epoch; 0 is
    /// the epoch of loaded and bulk-built versions.
    current: AtomicU64,
    /// The epoch a checkpoint is writing, or 0.
    running: AtomicU64,
    /// Writers in flight, by epoch parity.
    active: Striped<2>,
    /// One checkpoint at a time; holds the entry count of the last epoch
    /// checkpointed (written or not).
    serial: Mutex<u64>,
}

/// A writer's registration in an epoch, for one operation.
pub(crate) struct Registered<'a> {
    epochs: &'a Epochs,
    pub(crate) epoch: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.epochs.active.add_seq_cst(parity(self.epoch), -1);
    }
}

fn parity(epoch: u64) -> usize {
    (epoch & 1) as usize
}

impl Epochs {
    /// Epochs after a checkpoint of `stored` that counted `len` entries.
    pub(crate) fn new(stored: u64, len: u64) -> Epochs {
        Epochs {
            current: AtomicU64::new(stored + 1),
            running: AtomicU64::new(0),
            active: Striped::new(),
            serial: Mutex::new(len),
        }
    }

    pub(crate) fn enter(&self) -> Registered<'_> {
        loop {
            let epoch = self.current.load(Ordering::SeqCst);
            self.active.add_seq_cst(parity(epoch), 1);
            if self.current.load(Ordering::SeqCst) == epoch {
                return Registered { epochs: self, epoch };
            }
            self.active.add_seq_cst(parity(epoch), -1); // a checkpoint moved on: retry
        }
    }

    /// Starts the checkpoint of the current epoch: announces it
    /// (`running`), moves writers on to the next epoch, and waits until no
    /// writer of the closed one is left. The checkpoint runs while the
    /// returned [`Closed`] lives; dropping it (a return, or a panic in a
    /// codec) ends it. The caller holds `serial`.
    fn close(&self) -> Closed<'_> {
        let epoch = self.current.load(Ordering::SeqCst);
        self.running.store(epoch, Ordering::SeqCst);
        self.current.store(epoch + 1, Ordering::SeqCst);
        let backoff = Backoff::new();
        while self.active.sum_seq_cst(parity(epoch)) != 0 {
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                backoff.snooze();
            }
        }
        Closed { epochs: self, epoch }
    }

    /// The epoch a checkpoint is writing, or 0. Read after registering.
    pub(crate) fn running(&self) -> u64 {
        self.running.load(Ordering::SeqCst)
    }
}

/// A checkpoint in progress (see [`Epochs::close`]).
struct Closed<'a> {
    epochs: &'a Epochs,
    /// The epoch being written.
    epoch: u64,
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.epochs.running.store(0, Ordering::SeqCst);
    }
}

/// What a checkpoint appended: each slot, the version, and its record.
type Written<K, V> = Vec<(Arc<Slot<K, V>>, Arc<State<K, V>>, Address)>;

/// The version of a loaded state that a checkpoint of `epoch` writes: the
/// state's own if it is old enough, else the one it keeps in `prev`.
fn version_at<K, V>(state: &Arc<State<K, V>>, epoch: u64) -> Option<Arc<State<K, V>>> {
    let State::Loaded(node) = &**state else { return None };
    if node.meta.epoch <= epoch { Some(Arc::clone(state)) } else { node.meta.prev() }
}

/// The node of a state `version_at` returned.
fn node_of<K, V>(state: &State<K, V>) -> &Node<K, V> {
    match state {
        State::Loaded(node) => node,
        _ => unreachable!("version_at returns loaded states only"),
    }
}

/// Where a slot stands at `epoch`, as far as the image is concerned.
enum AtEpoch<K, V> {
    /// On the store already, unchanged: a ghost (or a ghost being loaded).
    /// `high` and `right` only if asked for (`links`).
    Stored { address: Address, level: u32, high: Option<K>, right: Option<Arc<Slot<K, V>>> },
    /// In memory: this version.
    Version(Arc<State<K, V>>),
    /// The slot did not exist at `epoch` (a split of a later epoch).
    Absent,
}

/// Where `slot` stands at `epoch`; with `links`, a ghost's `high` and right
/// neighbour too (cloned, so asked for only where needed: a checkpoint
/// looks at every ghost child of every loaded branch).
fn at_epoch<K: Clone, V>(slot: &Slot<K, V>, epoch: u64, links: bool) -> AtEpoch<K, V> {
    loop {
        let state = super::cell::snapshot_into_arc(slot.state());
        if let State::Loaded(_) = &*state {
            return version_at(&state, epoch).map_or(AtEpoch::Absent, AtEpoch::Version);
        }
        // A ghost, or being loaded: described until the load lands. If it
        // just landed, look again.
        let stored = slot.with_ghost(|ghost| match ghost {
            GhostView::Described(ghost) => {
                let (high, right) =
                    if links { (ghost.high.clone(), ghost.right.clone()) } else { (None, None) };
                AtEpoch::Stored { address: ghost.address, level: ghost.level, high, right }
            }
            // It ends at its parent's separator: no unposted split, which
            // is what "no high, no right" tells a chain walk.
            GhostView::Child { address, level } => {
                AtEpoch::Stored { address, level, high: None, right: None }
            }
        });
        if let Some(stored) = stored {
            return stored;
        }
    }
}

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// Writes a checkpoint (see the module docs). A no-op without a store.
    pub(crate) fn checkpoint(&self) -> Result<(), Error> {
        let Some(persist) = &self.persist else { return Ok(()) };
        let len = lock(&persist.epochs.serial);
        self.checkpoint_locked(len)
    }

    /// Checkpoints when dirty bytes fill half the budget (dirty leaves cannot
    /// be evicted), then evicts if resident bytes exceed the budget. Called by writers after their operation, so never while
    /// registered in an epoch; looks at the count every 32nd write of a
    /// thread, and leaves it to a checkpoint already running. An error here
    /// is not the write's: the write took effect, and the next `flush`
    /// reports the store's trouble.
    pub(crate) fn checkpoint_if_dirty(&self) {
        thread_local! {
            static WRITES: Cell<u32> = const { Cell::new(0) };
        }
        let (Some(persist), Some(account)) = (&self.persist, self.account()) else { return };
        let writes = WRITES.with(|writes| {
            writes.set(writes.get().wrapping_add(1));
            writes.get()
        });
        if !writes.is_multiple_of(32) {
            return;
        }
        if account.dirty() > account.budget() / 2
            && let Some(len) = try_lock(&persist.epochs.serial)
        {
            let _ = self.checkpoint_locked(len);
        }
        // Writes grow the tree too (splits), and a checkpoint makes leaves
        // evictable.
        self.evict_if_over_budget();
    }

    fn checkpoint_locked(&self, mut len: MutexGuard<'_, u64>) -> Result<(), Error> {
        let persist = self.persist.as_ref().expect("checked by the callers");
        let closed = persist.epochs.close();
        // Every writer of the closed epoch is done: its count changes are final.
        *len = len.saturating_add_signed(self.take_epoch_count(closed.epoch) as i64);
        let written = self.write_image(closed.epoch, *len);
        drop(closed);
        if written.is_ok() {
            Counters::bump(&persist.counters.checkpoints);
        }
        written
    }

    fn write_image(&self, epoch: u64, len: u64) -> Result<(), Error> {
        let persist = self.persist.as_ref().expect("checked by the caller");
        let (root, level) = self.root_at(epoch)?;
        // The root may have split without a new root above it yet: then the
        // image gets a root over the whole top level.
        let above = Node::new(
            None,
            None,
            None,
            Body::Branch(Branch { level: level + 1, keys: Vec::new(), children: vec![root] }),
        );
        let (keys, top) = self.posted(&above, epoch)?;
        let mut written = Vec::new();
        let (address, level) = if let [root] = &top[..] {
            (self.write_slot(root, epoch, &mut written)?.0, level)
        } else {
            let mut addresses = Vec::with_capacity(top.len());
            for slot in &top {
                addresses.push(self.write_slot(slot, epoch, &mut written)?.0);
            }
            let record = (persist.codecs.encode_branch)(level + 1, None, None, &keys, &addresses)
                .map_err(|what| Error::Internal { what })?;
            (self.append(&record)?, level + 1)
        };
        let store = &persist.store;
        store.sync().map_err(|e| Error::io("syncing a checkpoint", None, e))?;
        let commit = encode_commit(&Commit { root: address, level, epoch, len })
            .map_err(|what| Error::Internal { what })?;
        store.write_commit(&commit).map_err(|e| Error::io("writing the commit record", None, e))?;
        // Only now are the records part of the stored tree. Marked before,
        // a failure after them would let the next checkpoint reuse a child's
        // new record under a parent whose old record it never rewrote.
        // Parents first: a child still unmarked is dirty, so it cannot be a
        // ghost, so its parent cannot be evicted with a record naming the
        // child's new address before the child is evictable from it.
        for (slot, version, address) in written.into_iter().rev() {
            let node = node_of(&version);
            // Release: whoever reads the address (the evictor) finds the record.
            node.meta.stored.store(address.0, Ordering::Release);
            if let Some(charge) = &node.meta.charge {
                charge.clean();
            }
            // Stored: what it kept was for an older, finished checkpoint.
            node.meta.forget_prev();
            self.track_resident(&slot);
        }
        Ok(())
    }

    /// The root at `epoch` and its level: the topmost slot on the leftmost
    /// path that existed then (roots grown later are skipped).
    fn root_at(&self, epoch: u64) -> Result<(Arc<Slot<K, V>>, u32), Error> {
        let mut slot = self.root();
        loop {
            match at_epoch(&slot, epoch, false) {
                AtEpoch::Stored { level, .. } => return Ok((slot, level)),
                AtEpoch::Version(version) => {
                    let level = node_of(&version).level();
                    return Ok((slot, level));
                }
                AtEpoch::Absent => {
                    let node = self.node(&slot)?;
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
    /// address and whether it is new. A version counts as stored (reused by
    /// later checkpoints, evictable) only once the commit succeeded.
    fn write_slot(
        &self,
        slot: &Arc<Slot<K, V>>,
        epoch: u64,
        written: &mut Written<K, V>,
    ) -> Result<(Address, bool), Error> {
        let version = match at_epoch(slot, epoch, false) {
            AtEpoch::Stored { address, .. } => return Ok((address, false)),
            AtEpoch::Version(version) => version,
            AtEpoch::Absent => {
                return Err(Error::Internal { what: "a child that did not exist at its parent's epoch" });
            }
        };
        let node = node_of(&version);
        let stored = node.meta.stored.load(Ordering::Acquire);
        let persist = self.persist.as_ref().expect("checkpoints run over a store");
        let record = match &node.body {
            Body::Leaf(leaf) => {
                if stored != 0 {
                    return Ok((Address(stored), false));
                }
                (persist.codecs.encode_leaf)(node.low.as_ref(), node.high.as_ref(), &leaf.keys, &leaf.vals)
                    .map_err(|what| Error::Internal { what })?
            }
            Body::Branch(branch) => {
                let (keys, children) = self.posted(node, epoch)?;
                let mut changed = children.len() != branch.children.len();
                let mut addresses = Vec::with_capacity(children.len());
                for child in &children {
                    let (address, new) = self.write_slot(child, epoch, written)?;
                    changed |= new;
                    addresses.push(address);
                }
                if stored != 0 && !changed {
                    return Ok((Address(stored), false));
                }
                let (low, high) = (node.low.as_ref(), node.high.as_ref());
                (persist.codecs.encode_branch)(branch.level, low, high, &keys, &addresses)
                    .map_err(|what| Error::Internal { what })?
            }
        };
        let address = self.append(&record)?;
        written.push((Arc::clone(slot), Arc::clone(&version), address));
        Ok((address, true))
    }

    fn append(&self, record: &[u8]) -> Result<Address, Error> {
        let persist = self.persist.as_ref().expect("checkpoints run over a store");
        let address = persist.store.append(record).map_err(|e| Error::io("writing a node", None, e))?;
        Counters::bump(&persist.counters.store_writes);
        Ok(address)
    }

    /// A branch version's children as the image lists them: its own, plus
    /// the nodes right of a child that split without posting yet (reached
    /// through right links, at `epoch`), each with its `low` as separator.
    #[allow(clippy::type_complexity)]
    fn posted(&self, node: &Node<K, V>, epoch: u64) -> Result<(Vec<K>, Vec<Arc<Slot<K, V>>>), Error> {
        let branch = node.as_branch().expect("called on branches");
        let mut keys = Vec::with_capacity(branch.keys.len());
        let mut children = Vec::with_capacity(branch.children.len());
        for (i, child) in branch.children.iter().enumerate() {
            if i > 0 {
                keys.push(branch.keys[i - 1].clone());
            }
            children.push(Arc::clone(child));
            let bound = branch.keys.get(i).or(node.high.as_ref());
            let mut current = Arc::clone(child);
            loop {
                let (high, right) = match at_epoch(&current, epoch, true) {
                    AtEpoch::Stored { high, right, .. } => (high, right),
                    AtEpoch::Version(version) => {
                        let node = node_of(&version);
                        (node.high.clone(), node.right.clone())
                    }
                    AtEpoch::Absent => {
                        return Err(Error::Internal { what: "a right link to a node of a later epoch" });
                    }
                };
                let unposted = match (&high, bound) {
                    (Some(high), Some(bound)) => high < bound,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let (true, Some(high), Some(right)) = (unposted, high, right) else { break };
                keys.push(high);
                children.push(Arc::clone(&right));
                current = right;
            }
        }
        Ok((keys, children))
    }
}
