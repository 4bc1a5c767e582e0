//! Slots: the stable, shared place where a node's current version lives,
//! and the state machine of a node going between memory and the store.
//!
//! Parents and right links point at slots, never at node versions, so a node
//! can be replaced (by a write or a split) without touching its parent, and a
//! parent copy made for a split keeps seeing its children's newest versions.
//!
//! # State machine
//!
//! A slot's state is one `Arc<State>` behind an atomic cell; every transition
//! is one compare-and-swap of that cell, from the exact state the thread read:
//!
//! ```text
//!            loader wins the swap          loader publishes the built node
//!   Ghost ------------------------> Loading -------------------------------> Loaded(v1)
//!     ^                               |                                        |   |
//!     |   load failed: ghost restored |                writer: v1 -> v2        |   |
//!     +-------------------------------+            (copy on write, any thread) |   |
//!     |                                                                        |   |
//!     +------------- evictor: clean node whose children are ghosts ------------+   |
//!     |                                                        Loaded(v2) <-------+
//!     |  evictor of the parent, in the same step as the parent's swap
//!     v  to Ghost: what the ghost stands for becomes `Detached` (no swap)
//!   Ghost, detached: terminal
//!
//!   Loaded(v) --freeze--> Merging(v) --parent unlinked--> Merging(v, unlinked) --absorbed--> Retired(v)
//!                            |                                                       terminal
//!                            +--- it cannot leave its parent: thawed, back to the same Loaded(v)
//!   Loaded(root with one child) --------------------------------------------------> Retired(v)
//! ```
//!
//! A merge (`merge.rs`) freezes the node it takes away: while `Merging` no
//! write lands in it, and its last version stays readable (iterators and
//! checkpoints may use it; point operations and writers help the merge
//! finish and look again). `Retired` keeps that version too, for readers
//! and checkpoints that still hold an older view of the tree; nothing
//! current links to a retired slot.
//!
//! Beside the state, under the slot's small lock, [`Stands`] says what a
//! ghost stands for: nothing while the node is loaded; a record (a *child
//! ghost* made by its parent's load, 16 bytes: bounds come from the record
//! and the right neighbour from a descent when it loads); a full
//! description (evicted in place, or the root of an opened tree); or
//! `Detached`, for good. It changes in the same critical section as the
//! swaps it goes with (to `Loaded`, to `Ghost` by eviction), so under the
//! lock the two always agree. This file is the only one that sees either.
//!
//! # Invariants
//!
//! - A `Loaded` version is built completely before the swap that publishes
//!   it (see the orderings in `sync.rs`): nobody can see a half-built node,
//!   which is the whole point (ZODB flags a ghost loaded before filling it).
//! - Only the thread that swapped `Ghost -> Loading` leaves `Loading`
//!   ([`Load`]; its drop restores the ghost if the loader panics), so one
//!   load happens per ghost however many threads miss on it; the others
//!   wait on the `Loading` state's [`Wait`] and then look again. That swap
//!   is made under the slot's lock, after checking that it is not detached,
//!   and with everything the load needs cloned before it.
//! - Writers and the evictor swap only from the `Loaded` version they read;
//!   pointer identity makes a stale swap fail harmlessly.
//! - A node has one live slot. A branch's child slots live in its version:
//!   a branch that becomes a ghost and loads again makes new ones. So a
//!   branch is evicted only when its children are all ghosts, and in the
//!   same step they become detached (see [`Slot::evict`]). A write can
//!   never land in a slot the tree has dropped. A thread that still reaches
//!   a detached slot (through an old branch version or a stale right link)
//!   finds the node's live slot by a descent to the detached one's level
//!   and `low` ([`Access::Detached`]).
//! - All ghosts of a tree share one state, its [`Sentinel`]: a ghost costs
//!   no node-sized state.

use std::ops::Deref;
use std::sync::Arc;

use super::account::{Account, Charge};
use super::node::{Node, prefetch};
use super::sync::{
    AtomicArc, AtomicBool, AtomicU16, AtomicU32, Mutex, Ordering, Snapshot, lock, snapshot_into_arc,
};
use super::wait::Wait;
use crate::Error;
use crate::store::Address;

/// `repr(C)` and a small lock keep the slot at 64 bytes with its hot fields
/// (`state`, `cooling`) on the first cache line after the reference counts:
/// every access of every level reads them.
#[repr(C)]
pub(crate) struct Slot<K, V> {
    state: AtomicArc<State<K, V>>,
    /// Picked for eviction and not touched since (see `evict.rs`). Sits on
    /// the line every access reads; written only when set.
    cooling: AtomicBool,
    /// In the eviction clock's queue (at most once; see `evict.rs`).
    queued: AtomicBool,
    /// The child the evictor last found loaded (a branch's; see `evict`).
    loaded_child: AtomicU16,
    /// When a read last read this ghost through the cache, in windows of
    /// store reads, and how many reads its run holds (0: none; see
    /// [`Slot::read_again`] and `through.rs`). In the padding before
    /// `stands`: the slot stays 64 bytes.
    read_through: AtomicU32,
    stands: Mutex<Stands<K, V>>,
}

enum State<K, V> {
    Loaded(Node<K, V>),
    /// On the store only; the tree's shared sentinel.
    Ghost,
    /// A load is in flight; others wait here.
    Loading(Arc<Wait>),
    /// Frozen by a merge into its left neighbour (see `merge.rs`).
    Merging {
        /// The `Loaded` state it was frozen from (restored if it thaws).
        version: Arc<State<K, V>>,
        /// The epoch its merge's changes are tagged with, at least.
        epoch: u64,
        /// Its parent no longer lists it.
        unlinked: bool,
    },
    /// Terminal: its entries are in its left neighbour (or it was a root
    /// with one child, now the root). `version` is its last `Loaded` state.
    Retired(Arc<State<K, V>>),
}

/// What a slot stands for when its node is not loaded.
enum Stands<K, V> {
    /// The node is loaded: its version says everything.
    Node,
    /// A child ghost made by its parent's load: it ends where its parent's
    /// record says (no split of it waits to be posted), its bounds are in
    /// its record, and its right neighbour is found when it loads.
    Record { address: Address, level: u32 },
    /// Evicted in place, or the root of an opened tree: described in full.
    Ghost(Box<Description<K, V>>),
    /// Terminal: its parent went back to being a ghost. Never loaded; the
    /// description keeps what finding the live slot takes (level, `low`)
    /// and what a checkpoint still walking an old parent version reads
    /// (address, `high`); no right link, so a stale link to this slot
    /// keeps nothing else alive.
    Detached(Box<Ghost<K, V>>),
}

/// The read through a ghost leaf that loads it instead, counted in a run
/// of reads each at most a window after the one before (`through.rs`).
const LOADING_READ: u32 = 3;

/// The state every ghost slot of one tree holds.
pub(crate) struct Sentinel<K, V>(Arc<State<K, V>>);

impl<K, V> Sentinel<K, V> {
    pub(crate) fn new() -> Sentinel<K, V> {
        Sentinel(Arc::new(State::Ghost))
    }
}

/// The description a ghost slot holds (`Stands::Ghost`), charged to the
/// tree's account while held: a slot evicted in place keeps it until its
/// next load or until its parent goes, so under churn nearly every child of
/// a resident branch holds one. (Uncharged, they put the heap at 1.4x the
/// resident bytes after random reads of a tree ten times its budget.) The
/// root of an opened tree holds one uncharged: a fixed cost.
struct Description<K, V> {
    ghost: Ghost<K, V>,
    _charge: Option<Charge>,
}

impl<K, V> Deref for Description<K, V> {
    type Target = Ghost<K, V>;

    fn deref(&self) -> &Ghost<K, V> {
        &self.ghost
    }
}

/// A node that is on storage only, with what its parent knows about it.
pub(crate) struct Ghost<K, V> {
    pub(crate) address: Address,
    pub(crate) level: u32,
    pub(crate) low: Option<K>,
    pub(crate) high: Option<K>,
    /// Its right neighbour (`None`: the rightmost of its level).
    pub(crate) right: Option<Arc<Slot<K, V>>>,
}

// By hand: derived, it would require `V: Clone`.
impl<K: Clone, V> Clone for Ghost<K, V> {
    fn clone(&self) -> Self {
        let Ghost { address, level, low, high, right } = self;
        Ghost { address: *address, level: *level, low: low.clone(), high: high.clone(), right: right.clone() }
    }
}

/// What loading a ghost reads.
pub(crate) enum Target<K, V> {
    /// A described ghost: check the record against the description, which
    /// also gives the right neighbour.
    Described(Ghost<K, V>),
    /// A child ghost: bounds from the record, the right neighbour from the
    /// tree (the child after it in the level above).
    Child { address: Address, level: u32 },
}

impl<K, V> Target<K, V> {
    pub(crate) fn address(&self) -> Address {
        match self {
            Target::Described(ghost) => ghost.address,
            Target::Child { address, .. } => *address,
        }
    }
}

/// What [`Slot::access`] found.
pub(crate) enum Access<'a, K, V> {
    Loaded(NodeRef<K, V>),
    /// Another thread is loading the node: wait, then access again.
    Wait(Arc<Wait>),
    /// This thread loads it.
    Load(Load<'a, K, V>),
    /// The slot is detached: the node's live slot is the one on `level`
    /// starting at `low`.
    Detached {
        level: u32,
        low: Option<K>,
    },
    /// Merging or retired: no current version here.
    Frozen(Frozen<K, V>),
}

/// A slot's frozen state (merging or retired), as read: its last version,
/// and where its merge stands.
pub(crate) struct Frozen<K, V>(Arc<State<K, V>>);

/// Where a merge stands (see `merge.rs`).
#[derive(Clone, Copy)]
pub(crate) struct MergeStep {
    pub(crate) epoch: u64,
    pub(crate) unlinked: bool,
}

impl<K, V> Frozen<K, V> {
    /// The last version the slot held.
    pub(crate) fn version(&self) -> NodeArc<K, V> {
        match &*self.0 {
            State::Merging { version, .. } | State::Retired(version) => NodeArc(Arc::clone(version)),
            _ => unreachable!("a Frozen is made from Merging and Retired states only"),
        }
    }

    /// Where the merge stands; `None` once retired.
    pub(crate) fn merge(&self) -> Option<MergeStep> {
        match &*self.0 {
            State::Merging { epoch, unlinked, .. } => Some(MergeStep { epoch: *epoch, unlinked: *unlinked }),
            _ => None,
        }
    }
}

/// A ghost as a checkpoint sees it.
pub(crate) enum GhostView<'a, K, V> {
    /// Described in full (evicted in place, the root, or detached).
    Described(&'a Ghost<K, V>),
    /// A child ghost: it ends where its parent's record says.
    Child { address: Address, level: u32 },
}

/// What [`Slot::evict`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Evicted {
    Yes,
    /// Not now, nor later: the version was replaced.
    No,
    /// A branch with children that are not ghosts yet.
    NotYet,
    /// A branch whose record lists a child at another record (a spill
    /// wrote the child anew): not until a commit rewrites the branch,
    /// which queues it again.
    Stale,
}

impl<K, V> Slot<K, V> {
    pub(crate) fn new(node: Node<K, V>) -> Arc<Slot<K, V>> {
        Slot::with(Arc::new(State::Loaded(node)), Stands::Node)
    }

    /// A described ghost (the root of an opened tree).
    pub(crate) fn ghost(ghost: Ghost<K, V>, sentinel: &Sentinel<K, V>) -> Arc<Slot<K, V>> {
        Slot::with(Arc::clone(&sentinel.0), Stands::Ghost(Box::new(Description { ghost, _charge: None })))
    }

    /// A child ghost made by its parent's load.
    pub(crate) fn child(address: Address, level: u32, sentinel: &Sentinel<K, V>) -> Arc<Slot<K, V>> {
        Slot::with(Arc::clone(&sentinel.0), Stands::Record { address, level })
    }

    fn with(state: Arc<State<K, V>>, stands: Stands<K, V>) -> Arc<Slot<K, V>> {
        Arc::new(Slot {
            state: AtomicArc::new(state),
            cooling: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            loaded_child: AtomicU16::new(0),
            read_through: AtomicU32::new(0),
            stands: Mutex::new(stands),
        })
    }

    /// The current version if it is loaded (the fast path of every access):
    /// prefetched, and the slot marked touched.
    #[inline(always)]
    pub(crate) fn loaded(&self) -> Option<NodeRef<K, V>> {
        let state = self.state.load();
        // Header and inline leaf arrays in one batch of misses, before the
        // header is read (see `Node::prefetch`).
        prefetch(std::slice::from_ref::<State<K, V>>(&state));
        let node = NodeRef::loaded(state).ok()?;
        self.touch();
        Some(node)
    }

    /// Marks the slot touched: not cold.
    #[inline(always)]
    pub(crate) fn touch(&self) {
        // Relaxed: an eviction hint, written only when set, so hot reads
        // write nothing shared.
        if self.cooling.load(Ordering::Relaxed) {
            self.cooling.store(false, Ordering::Relaxed);
        }
    }

    /// The current version if it is loaded, neither prefetched nor marked
    /// touched (for the evictor, which looks at many slots and reads few,
    /// and for the end hints' check, which most writes by key fail).
    pub(crate) fn peek(&self) -> Option<NodeRef<K, V>> {
        NodeRef::loaded(self.state.load()).ok()
    }

    /// What accessing the slot takes: its loaded version, a wait for the
    /// load in flight, this thread's load, or the live slot.
    #[cold]
    pub(crate) fn access(&self) -> Access<'_, K, V>
    where
        K: Clone,
    {
        loop {
            let state = match NodeRef::loaded(self.state.load()) {
                Ok(node) => return Access::Loaded(node),
                Err(state) => snapshot_into_arc(state), // owned: no guard held past here
            };
            let wait = match &*state {
                State::Loading(wait) => return Access::Wait(Arc::clone(wait)),
                State::Merging { .. } | State::Retired(_) => return Access::Frozen(Frozen(state)),
                State::Loaded(_) | State::Ghost => Arc::new(Wait::new()),
            };
            let stands = lock(&self.stands);
            // Cloned before the swap: a panic in `K::clone` after it would
            // leave the slot `Loading` with nobody loading it.
            let target = match &*stands {
                Stands::Detached(ghost) => {
                    return Access::Detached { level: ghost.level, low: ghost.low.clone() };
                }
                Stands::Ghost(held) => Target::Described(held.ghost.clone()),
                Stands::Record { address, level } => Target::Child { address: *address, level: *level },
                Stands::Node => continue, // loaded since `state` was read
            };
            let loading = Arc::new(State::Loading(Arc::clone(&wait)));
            if self.state.compare_exchange(&state, Arc::clone(&loading)) {
                drop(stands);
                return Access::Load(Load { slot: self, ghost: state, loading, wait, target, landed: false });
            }
        }
    }

    /// The loaded version, or `view` of the ghost under the slot's lock
    /// (nothing cloned unless `view` clones). A node being loaded is still
    /// the ghost it was.
    pub(crate) fn version_or<R>(
        &self,
        view: impl FnOnce(GhostView<'_, K, V>) -> R,
    ) -> Result<NodeArc<K, V>, R> {
        let mut view = Some(view);
        loop {
            if let Some(node) = self.peek() {
                return Ok(node.into_arc());
            }
            if let Some(frozen) = self.frozen() {
                return Ok(frozen.version());
            }
            let stands = lock(&self.stands);
            let ghost = match &*stands {
                Stands::Ghost(held) => GhostView::Described(&held.ghost),
                Stands::Detached(ghost) => GhostView::Described(ghost),
                Stands::Record { address, level } => GhostView::Child { address: *address, level: *level },
                Stands::Node => continue, // loaded meanwhile: look again
            };
            return Err(view.take().expect("called once: every other arm loops or returns")(ghost));
        }
    }

    /// Turns the slot into a ghost described by `ghost()` (charged to
    /// `account`) if `current` is still its version, and detaches the
    /// children of a branch, whose record lists `listed`.
    ///
    /// A branch is evicted only if each child is a ghost at the record
    /// `listed` names for it, that ends where its separator says (no split
    /// of it is waiting to be posted), checked
    /// and detached under the children's locks: no child load can start
    /// meanwhile (loads start under that lock), so nobody ever loads a
    /// child of a branch that is gone, and nobody ever sees a detached
    /// child of a live one. Lock order: children, then the slot itself;
    /// every other caller holds one slot lock at a time.
    pub(crate) fn evict(
        &self,
        current: &NodeRef<K, V>,
        listed: &[Address],
        ghost: impl FnOnce() -> Ghost<K, V>,
        sentinel: &Sentinel<K, V>,
        account: Option<&'static Account>,
    ) -> Evicted
    where
        K: PartialEq + Clone,
    {
        let (keys, children) = match current.as_branch() {
            Some(branch) => (&branch.keys[..], &branch.children[..]),
            None => (&[][..], &[][..]),
        };
        // A first look without locks, from the child found loaded last
        // time: usually a child is still loaded, often that one.
        let hint = usize::from(self.loaded_child.load(Ordering::Relaxed)).min(children.len());
        let (head, tail) = children.split_at(hint);
        if let Some(i) = tail.iter().chain(head).position(|child| !child.state.holds(&sentinel.0)) {
            let i = (hint + i) % children.len();
            // Relaxed: a hint, read and written by the one evictor at a time.
            self.loaded_child.store(u16::try_from(i).unwrap_or(0), Ordering::Relaxed);
            return Evicted::NotYet;
        }
        if listed.len() != children.len() {
            return Evicted::NotYet; // a record folding in a split not posted then
        }
        let held: Vec<_> = children.iter().map(|child| lock(&child.stands)).collect();
        for (i, (child, stands)) in children.iter().zip(&held).enumerate() {
            let high = keys.get(i).or(current.high.as_ref());
            let (at, ends) = match &**stands {
                Stands::Ghost(ghost) => (ghost.address, ghost.high.as_ref() == high),
                Stands::Record { address, .. } => (*address, true), // ends at its separator
                Stands::Node | Stands::Detached(_) => return Evicted::NotYet,
            };
            // A child at another record: a spill wrote it anew since this
            // record was; the next commit rewrites the record.
            if at != listed[i] {
                return Evicted::Stale;
            }
            if !(ends && child.state.holds(&sentinel.0)) {
                return Evicted::NotYet;
            }
        }
        // Every description is built before the swap: they clone keys, and
        // a panic in `K::clone` must find the node still loaded, not a ghost
        // that nothing describes.
        let ghost = Box::new(Description {
            ghost: ghost(),
            _charge: account.map(|account| account.charge(size_of::<Description<K, V>>(), false)),
        });
        let detached: Vec<Stands<K, V>> = held
            .iter()
            .enumerate()
            .map(|(i, stands)| match &**stands {
                Stands::Record { address, level } => Stands::Detached(Box::new(Ghost {
                    address: *address,
                    level: *level,
                    low: if i == 0 { current.low.clone() } else { Some(keys[i - 1].clone()) },
                    high: keys.get(i).or(current.high.as_ref()).cloned(),
                    right: None,
                })),
                _ => Stands::Node, // a described ghost: its own description is moved
            })
            .collect();
        let mut stands = lock(&self.stands);
        if !self.state.compare_exchange(&current.0, Arc::clone(&sentinel.0)) {
            return Evicted::No;
        }
        *stands = Stands::Ghost(ghost);
        for (mut held, detached) in held.into_iter().zip(detached) {
            *held = match std::mem::replace(&mut *held, Stands::Node) {
                // A stale right link to this slot must not keep its old
                // siblings alive; finding the live slot needs level and low.
                // Detached, it is garbage soon (only stale links hold it):
                // uncharged, as before a load.
                Stands::Ghost(held) => {
                    let Description { mut ghost, .. } = *held;
                    ghost.right = None;
                    Stands::Detached(Box::new(ghost))
                }
                _ => detached,
            };
        }
        Evicted::Yes
    }

    /// The slot's frozen state, if it is merging or retired.
    pub(crate) fn frozen(&self) -> Option<Frozen<K, V>> {
        let state = self.state.load();
        let current: &State<K, V> = &state;
        match current {
            State::Merging { .. } | State::Retired(_) => Some(Frozen(snapshot_into_arc(state))),
            _ => None,
        }
    }

    /// True if the slot is merging or retired: nothing may link to it anew.
    pub(crate) fn is_frozen(&self) -> bool {
        let state = self.state.load();
        let current: &State<K, V> = &state;
        matches!(current, State::Merging { .. } | State::Retired(_))
    }

    /// True if the slot is detached (its parent was evicted; terminal).
    pub(crate) fn is_detached(&self) -> bool {
        matches!(&*lock(&self.stands), Stands::Detached(_))
    }

    /// Notes a read through this ghost in window `now` of store reads
    /// (`through.rs`); true on the [`LOADING_READ`]th read of a run in
    /// which each read came at most a window after the one before: the
    /// node is read often enough to be worth loading.
    pub(crate) fn read_again(&self, now: u64) -> bool {
        // Packed: the window of the run's last read (truncated: windows
        // wrap, and a comparison of neighbours still holds), then the
        // run's length, at least 1, so 0 is "no run".
        const RUN: u32 = 2;
        const WINDOW: u32 = u32::MAX >> RUN;
        const _: () = assert!(LOADING_READ < 1 << RUN, "a run shorter than LOADING_READ fits its bits");
        let now = now as u32 & WINDOW;
        // Relaxed: a hint choosing between loading the node and reading
        // its record; either gives the right answer, so a read lost to a
        // race between two readers costs nothing but a shorter run.
        let last = self.read_through.load(Ordering::Relaxed);
        let run = if last != 0 && now.wrapping_sub(last >> RUN) & WINDOW <= 1 {
            (last & ((1 << RUN) - 1)) + 1
        } else {
            1
        };
        if run >= LOADING_READ {
            self.read_through.store(0, Ordering::Relaxed);
            return true;
        }
        self.read_through.store(now << RUN | run, Ordering::Relaxed);
        false
    }

    /// Runs `read` on the address and level of the record this slot stands
    /// for, and its description if it has one (evicted in place: with its
    /// bounds and right link), if it is a ghost (not loaded, loading, frozen
    /// or detached), holding the slot's lock. A ghost leaves that state only by a load,
    /// which starts under this lock (`access`): so until `read` returns the
    /// node is not written, no checkpoint supersedes the record, and its
    /// space is not freed for reuse. `None` if the slot is not such a ghost.
    pub(crate) fn with_record<R>(
        &self,
        sentinel: &Sentinel<K, V>,
        read: impl FnOnce(Address, u32, Option<&Ghost<K, V>>) -> R,
    ) -> Option<R> {
        let stands = lock(&self.stands);
        if !self.state.holds(&sentinel.0) {
            return None;
        }
        match &*stands {
            Stands::Ghost(ghost) => Some(read(ghost.address, ghost.level, Some(ghost))),
            Stands::Record { address, level } => Some(read(*address, *level, None)),
            Stands::Node | Stands::Detached(_) => None,
        }
    }

    /// The record of a ghost that ends at `bound` (its parent's next
    /// separator: no split of it waits to be posted): a child ghost made by
    /// its parent's load, or one evicted in place that ends there. `None`
    /// if the slot is anything else. One lock, no state load: what a
    /// checkpoint asks of most children of a loaded branch.
    pub(crate) fn child_record(&self, bound: Option<&K>) -> Option<Address>
    where
        K: PartialEq,
    {
        match &*lock(&self.stands) {
            Stands::Record { address, .. } => Some(*address),
            Stands::Ghost(ghost) if ghost.high.as_ref() == bound => Some(ghost.address),
            _ => None,
        }
    }

    /// Where the live slot of a detached one is: the node on `level`
    /// starting at `low`. `None` if the slot is not detached.
    pub(crate) fn detached(&self) -> Option<(u32, Option<K>)>
    where
        K: Clone,
    {
        match &*lock(&self.stands) {
            Stands::Detached(ghost) => Some((ghost.level, ghost.low.clone())),
            _ => None,
        }
    }

    /// Freezes `current` for a merge into the left neighbour whose changes
    /// are tagged `epoch` or later; false if it is no longer the version.
    pub(crate) fn freeze(&self, current: &NodeRef<K, V>, epoch: u64) -> bool {
        let version = Arc::clone(&current.0);
        let merging = State::Merging { version, epoch, unlinked: false };
        self.state.compare_exchange(&current.0, Arc::new(merging))
    }

    /// The merge's node left its parent, with changes tagged `epoch`.
    /// False if another thread moved the merge on first.
    pub(crate) fn unlinked(&self, frozen: &Frozen<K, V>, epoch: u64) -> bool {
        let State::Merging { version, .. } = &*frozen.0 else { return false };
        let unlinked = State::Merging { version: Arc::clone(version), epoch, unlinked: true };
        self.state.compare_exchange(&frozen.0, Arc::new(unlinked))
    }

    /// The merge is done: its node is in the left neighbour.
    pub(crate) fn retire(&self, frozen: &Frozen<K, V>) -> bool {
        let State::Merging { version, .. } = &*frozen.0 else { return false };
        self.state.compare_exchange(&frozen.0, Arc::new(State::Retired(Arc::clone(version))))
    }

    /// The merge cannot go on: the node is back, the very version it was
    /// (so a write that read it before the freeze still lands).
    pub(crate) fn thaw(&self, frozen: &Frozen<K, V>) -> bool {
        let State::Merging { version, .. } = &*frozen.0 else { return false };
        self.state.compare_exchange(&frozen.0, Arc::clone(version))
    }

    /// Retires a root with one child, which takes its place.
    pub(crate) fn retire_root(&self, current: &NodeRef<K, V>) -> bool {
        self.state.compare_exchange(&current.0, Arc::new(State::Retired(Arc::clone(&current.0))))
    }

    /// Publishes `new` if `current` is still the slot's version; says whether
    /// it did. A `false` means another write won the race: reread the slot.
    #[inline]
    pub(crate) fn replace(&self, current: &NodeRef<K, V>, new: Node<K, V>) -> bool {
        self.install(current, Fresh::new(new))
    }

    /// [`replace`](Slot::replace) with a version built in place.
    #[inline]
    pub(crate) fn install(&self, current: &NodeRef<K, V>, new: Fresh<K, V>) -> bool {
        self.state.compare_exchange(&current.0, new.0)
    }

    /// Marks the slot cooling (see `evict.rs`); true if it already was, and
    /// so was not touched for a whole turn of the clock.
    pub(crate) fn cool(&self) -> bool {
        // Relaxed: a hint, like every use of `cooling`.
        self.cooling.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn uncool(&self) {
        self.cooling.store(false, Ordering::Relaxed);
    }

    /// Marks the slot queued in the clock; false if it already was.
    /// Called under the clock's lock, which orders it (so `Relaxed`).
    pub(crate) fn enqueue(&self) -> bool {
        !self.queued.swap(true, Ordering::Relaxed)
    }

    /// The slot left the clock's queue (under the clock's lock).
    pub(crate) fn dequeued(&self) {
        self.queued.store(false, Ordering::Relaxed);
    }
}

/// A version filled where its slot will hold it: in the state allocation
/// itself. A leaf is a kilobyte of inline arrays; filled on the stack, it
/// was moved five times on its way into the slot (a fifth of a write's
/// time). Made empty (whose bytes the compiler still copies in, twice, as
/// there is no placement construction), filled through
/// [`node_mut`](Fresh::node_mut) while nobody else can see it, then
/// [installed](Slot::install).
pub(crate) struct Fresh<K, V>(Arc<State<K, V>>);

impl<K, V> Fresh<K, V> {
    #[inline]
    pub(crate) fn new(node: Node<K, V>) -> Self {
        Fresh(Arc::new(State::Loaded(node)))
    }

    #[inline]
    pub(crate) fn node_mut(&mut self) -> &mut Node<K, V> {
        match Arc::get_mut(&mut self.0) {
            Some(State::Loaded(node)) => node,
            _ => unreachable!("a fresh version is loaded and not shared yet"),
        }
    }
}

/// A load in flight: the thread that won the swap `Ghost -> Loading` reads
/// [`target`](Load::target) and [`land`](Load::land)s the result, which
/// publishes the node or restores the ghost, and wakes the waiters. If the
/// loader panics instead (a decoder of the key or value type), dropping it
/// restores the ghost and tells the waiters.
pub(crate) struct Load<'a, K, V> {
    slot: &'a Slot<K, V>,
    /// The tree's ghost state, to put back on failure.
    ghost: Arc<State<K, V>>,
    loading: Arc<State<K, V>>,
    wait: Arc<Wait>,
    target: Target<K, V>,
    landed: bool,
}

impl<K, V> Load<'_, K, V> {
    pub(crate) fn target(&self) -> &Target<K, V> {
        &self.target
    }

    pub(crate) fn land(mut self, loaded: Result<Node<K, V>, Error>) -> Result<(), Error> {
        self.landed = true;
        // Only the loader leaves `Loading`, so these swaps cannot fail.
        let outcome = match loaded {
            Ok(node) => {
                let mut stands = lock(&self.slot.stands);
                self.slot.state.compare_exchange(&self.loading, Arc::new(State::Loaded(node)));
                *stands = Stands::Node;
                Ok(())
            }
            Err(error) => {
                self.slot.state.compare_exchange(&self.loading, Arc::clone(&self.ghost));
                Err(error)
            }
        };
        self.wait.finish(outcome.clone());
        outcome
    }
}

impl<K, V> Drop for Load<'_, K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.slot.state.compare_exchange(&self.loading, Arc::clone(&self.ghost));
            self.wait.finish(Err(Error::LoadPanicked { address: self.target.address() }));
        }
    }
}

/// A loaded version held by a guard (cheap, not for long holds).
pub(crate) struct NodeRef<K, V>(Snapshot<State<K, V>>);

impl<K, V> NodeRef<K, V> {
    /// The snapshot as a `NodeRef` if it is a loaded version.
    #[inline]
    fn loaded(state: Snapshot<State<K, V>>) -> Result<NodeRef<K, V>, Snapshot<State<K, V>>> {
        let current: &State<K, V> = &state;
        match current {
            State::Loaded(_) => Ok(NodeRef(state)),
            _ => Err(state),
        }
    }

    /// Keeps this version beyond the guard's short life.
    pub(crate) fn into_arc(self) -> NodeArc<K, V> {
        NodeArc(snapshot_into_arc(self.0))
    }

    /// This version, held by an `Arc` too.
    pub(crate) fn to_arc(&self) -> NodeArc<K, V> {
        NodeArc(Arc::clone(&self.0))
    }
}

impl<K, V> Deref for NodeRef<K, V> {
    type Target = Node<K, V>;

    #[inline]
    fn deref(&self) -> &Node<K, V> {
        loaded_node(&self.0)
    }
}

/// A loaded version held by an `Arc`: `Send`, and fine to keep.
pub(crate) struct NodeArc<K, V>(Arc<State<K, V>>);

impl<K, V> NodeArc<K, V> {
    /// A version no slot holds: a leaf a scan read through (`through.rs`).
    pub(crate) fn unshared(node: Node<K, V>) -> NodeArc<K, V> {
        NodeArc(Arc::new(State::Loaded(node)))
    }
}

impl<K, V> Clone for NodeArc<K, V> {
    fn clone(&self) -> Self {
        NodeArc(Arc::clone(&self.0))
    }
}

impl<K, V> Deref for NodeArc<K, V> {
    type Target = Node<K, V>;

    fn deref(&self) -> &Node<K, V> {
        loaded_node(&self.0)
    }
}

/// The node of a state that `NodeRef::loaded` accepted.
#[inline]
fn loaded_node<K, V>(state: &State<K, V>) -> &Node<K, V> {
    match state {
        State::Loaded(node) => node,
        _ => unreachable!("NodeRef and NodeArc are built from loaded states only"),
    }
}

/// The memory a version takes besides its heap arrays: its state and the
/// `Arc`'s counts; and what a ghost child slot takes, with its `Arc`.
pub(crate) const fn version_overhead<K, V>() -> (usize, usize) {
    let arc = 2 * size_of::<usize>();
    (size_of::<State<K, V>>() + arc, size_of::<Slot<K, V>>() + arc)
}
