//! Slots: the stable, shared place where a node's current version lives.
//!
//! Parents and right links point at slots, never at node versions, so a node
//! can be replaced (by a write or a split) without touching its parent, and a
//! parent copy made for a split keeps seeing its children's newest versions.
//!
//! # State machine
//!
//! A slot holds one [`State`] behind an atomic cell; every transition is one
//! compare-and-swap of that cell:
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
//!     v  to Ghost: the description is marked detached (no swap)
//!   Ghost, detached (for good)
//! ```
//!
//! - A ghost's state is the tree's one shared `Ghost` sentinel, not a
//!   node-sized state. A *child ghost* made by its parent's load keeps just
//!   its record's address and level in the slot (`Slot::record`); any other
//!   ghost has a description in `Slot::ghost` (address, bounds, right
//!   neighbour), written under the slot's `ghost` lock in the same critical
//!   section as the swap to `Ghost` (eviction), and cleared in the one of
//!   the swap to `Loaded`, so it is present exactly when the state is
//!   `Ghost` or `Loading` (a detached child ghost gets one, for good).
//! - Only the thread that swapped `Ghost -> Loading` leaves `Loading`, so
//!   one load happens per ghost however many threads miss on it; the others
//!   wait on the `Loading` state's [`Wait`] and then read the slot again.
//!   That swap is made under the description's lock, after checking that
//!   the ghost is not detached.
//! - A `Loaded` version is built completely before the swap that publishes
//!   it (see the orderings in `cell.rs`): nobody can see a half-built node,
//!   which is the whole point (ZODB flags a ghost loaded before filling it).
//! - Writers and the evictor swap only from the `Loaded` version they read;
//!   pointer identity makes a stale swap fail harmlessly.
//! - A branch's child slots live in its version: a branch that becomes a
//!   ghost and loads again gets new ones. So a branch is evicted only when
//!   its children are all ghosts, and in the same step they are marked
//!   detached, for good (see [`Slot::evict`] for how that is one step). A
//!   node never has two live slots, and a write can never land in a slot
//!   the tree has dropped. A thread that still reaches a detached slot
//!   (through an old branch version or a stale right link) finds the
//!   node's live slot by a descent to the detached one's level and `low`,
//!   which its description keeps (`Tree::node_in`).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use super::cell::{AtomicArc, Mutex, Snapshot, lock, snapshot_into_arc};
use super::node::{Node, prefetch};
use super::wait::Wait;
use crate::store::Address;

/// `repr(C)` and a boxed description keep the slot small and its hot fields
/// (`state`, `cooling`) on the first cache line after the reference counts:
/// every access of every level reads them.
#[repr(C)]
pub(crate) struct Slot<K, V> {
    state: AtomicArc<State<K, V>>,
    /// Picked for eviction and not touched since (see `cache.rs`). Sits
    /// on the line every access reads; written only when set.
    pub(crate) cooling: AtomicBool,
    /// In the eviction clock's queue (at most once; see `cache.rs`).
    pub(crate) in_clock: AtomicBool,
    /// The child the evictor last found loaded (a branch's; see `evict`).
    loaded_child: AtomicU16,
    /// The level of `record` (for a child ghost; see below).
    record_level: u8,
    /// What the slot's ghost stands for, while it is one, if it was
    /// described (see above).
    ghost: Mutex<Option<Box<Ghost<K, V>>>>,
    /// For a slot made as a child ghost by its parent's load: its record's
    /// address (`0`: not made so). Such a ghost has no description: its
    /// parent's record says the rest, and finding its right neighbour waits
    /// until it loads. That keeps a loaded branch's children at a slot each
    /// (64 bytes), where a description would more than double it.
    record: u64,
}

pub(crate) enum State<K, V> {
    Loaded(Node<K, V>),
    /// On the store only; the tree's shared sentinel (see above).
    Ghost,
    /// A load is in flight; others wait here.
    Loading(Arc<Wait>),
}

/// What [`Slot::start_load`] found.
pub(crate) enum Start<K, V> {
    /// The load is this thread's: here is what to load.
    Load(Ghost<K, V>),
    /// The load of a child ghost is this thread's (see `Slot::record`).
    LoadChild { address: Address, level: u32 },
    /// Not the ghost read any more: read the slot again.
    Again,
    /// A detached ghost: find the live slot.
    Detached,
}

/// What [`Slot::evict`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Evicted {
    Yes,
    /// Not now, nor later: the version was replaced.
    No,
    /// A branch with children that are not ghosts yet.
    NotYet,
}

/// A node that is on storage only, with what its parent knows about it.
#[derive(Clone)]
pub(crate) struct Ghost<K, V> {
    pub(crate) address: Address,
    pub(crate) level: u32,
    pub(crate) low: Option<K>,
    pub(crate) high: Option<K>,
    /// Its right neighbour (`None`: the rightmost of its level, or unknown
    /// in a detached ghost, which is never loaded).
    pub(crate) right: Option<Arc<Slot<K, V>>>,
    /// Its parent went back to being a ghost: this slot is dead (see above).
    pub(crate) detached: bool,
}

/// A ghost as [`Slot::with_ghost`] shows it.
pub(crate) enum GhostView<'a, K, V> {
    /// Described in full: evicted in place, detached, or the root.
    Described(&'a Ghost<K, V>),
    /// A child ghost (see `Slot::record`): it ends where its parent's
    /// record says, so no split of it waits to be posted.
    Child { address: Address, level: u32 },
}

impl<K, V> Slot<K, V> {
    pub(crate) fn new(node: Node<K, V>) -> Arc<Slot<K, V>> {
        Slot::with_state(Arc::new(State::Loaded(node)), None)
    }

    /// A ghost slot; `sentinel` is the tree's shared `Ghost` state.
    pub(crate) fn ghost(ghost: Ghost<K, V>, sentinel: &Arc<State<K, V>>) -> Arc<Slot<K, V>> {
        Slot::with_state(Arc::clone(sentinel), Some(ghost))
    }

    /// A child ghost made by its parent's load (see `Slot::record`).
    pub(crate) fn child(address: Address, level: u32, sentinel: &Arc<State<K, V>>) -> Arc<Slot<K, V>> {
        Arc::new(Slot {
            state: AtomicArc::new(Arc::clone(sentinel)),
            ghost: Mutex::new(None),
            cooling: AtomicBool::new(false),
            in_clock: AtomicBool::new(false),
            loaded_child: AtomicU16::new(0),
            record_level: u8::try_from(level).unwrap_or(u8::MAX),
            record: address.0,
        })
    }

    fn with_state(state: Arc<State<K, V>>, ghost: Option<Ghost<K, V>>) -> Arc<Slot<K, V>> {
        Arc::new(Slot {
            state: AtomicArc::new(state),
            ghost: Mutex::new(ghost.map(Box::new)),
            cooling: AtomicBool::new(false),
            in_clock: AtomicBool::new(false),
            loaded_child: AtomicU16::new(0),
            record_level: 0,
            record: 0,
        })
    }

    /// `f` of what the ghost stands for, if the slot is a ghost (or being
    /// loaded), under the description's lock: nothing is cloned.
    pub(crate) fn with_ghost<R>(&self, f: impl FnOnce(GhostView<'_, K, V>) -> R) -> Option<R> {
        let ghost = lock(&self.ghost);
        match ghost.as_deref() {
            Some(ghost) => Some(f(GhostView::Described(ghost))),
            // Landing happens under this lock, so this is stable while held.
            None if self.record != 0 && NodeRef::loaded(self.state.load()).is_err() => {
                Some(f(GhostView::Child { address: Address(self.record), level: self.record_level.into() }))
            }
            None => None,
        }
    }

    /// Publishes a loaded node in place of `loading` and drops the ghost's
    /// description, in one critical section. Only the loader calls it.
    pub(crate) fn land(&self, loading: &Arc<State<K, V>>, node: Node<K, V>) -> bool {
        let mut ghost = lock(&self.ghost);
        let landed = self.state.compare_exchange(loading, Arc::new(State::Loaded(node)));
        if landed {
            *ghost = None;
        }
        landed
    }

    /// Starts the load of a ghost: swaps `ghost` (the state read) for
    /// `loading` and returns the ghost's description, in one critical
    /// section of the description's lock, which an evictor of the parent
    /// holds while it detaches the children (see `evict`).
    pub(crate) fn start_load(&self, ghost: &Arc<State<K, V>>, loading: Arc<State<K, V>>) -> Start<K, V>
    where
        K: Clone,
        V: Clone,
    {
        let description = lock(&self.ghost);
        let start = match description.as_deref() {
            Some(description) if description.detached => return Start::Detached,
            // Cloned before the swap: a panic in `K::clone` after it would
            // leave the slot `Loading` with nobody loading it.
            Some(description) => Start::Load(description.clone()),
            // No description: a child ghost, or loaded since `ghost` was
            // read (then the swap fails).
            None => Start::LoadChild { address: Address(self.record), level: self.record_level.into() },
        };
        if self.state.compare_exchange(ghost, loading) { start } else { Start::Again }
    }

    /// Turns the slot into a ghost described by `ghost()` if `current` is
    /// still its version, and detaches the children of a branch.
    ///
    /// A branch is evicted only if each child is a ghost that ends where
    /// its separator says (no split of it is waiting to be posted), checked
    /// and marked detached under the children's description locks: no child
    /// load can start meanwhile (loads start under that lock), so nobody
    /// ever loads a child of a branch that is gone, and nobody ever sees a
    /// detached child of a live one. Lock order: children, then the slot
    /// itself; every other caller holds one description lock at a time.
    pub(crate) fn evict(
        &self,
        current: &NodeRef<K, V>,
        ghost: impl FnOnce() -> Ghost<K, V>,
        sentinel: &Arc<State<K, V>>,
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
        if let Some(i) = tail.iter().chain(head).position(|child| !child.state.holds(sentinel)) {
            let i = (hint + i) % children.len();
            // Relaxed: a hint, read and written by the one evictor at a time.
            self.loaded_child.store(u16::try_from(i).unwrap_or(0), Ordering::Relaxed);
            return Evicted::NotYet;
        }
        let mut held = Vec::with_capacity(children.len());
        for child in children {
            held.push(lock(&child.ghost));
        }
        for (i, (child, description)) in children.iter().zip(&held).enumerate() {
            let high = keys.get(i).or(current.high.as_ref());
            let ready = child.state.holds(sentinel)
                && match description.as_deref() {
                    Some(d) => !d.detached && d.high.as_ref() == high,
                    None => child.record != 0, // a child ghost ends at its separator
                };
            if !ready {
                return Evicted::NotYet;
            }
        }
        // Every description is built before the swap: they clone keys, and
        // a panic in `K::clone` must find the node still loaded, not a ghost
        // that nothing describes.
        let ghost = Box::new(ghost());
        let described: Vec<Option<Box<Ghost<K, V>>>> = children
            .iter()
            .enumerate()
            .map(|(i, child)| {
                // A child ghost gets the description finding it needs.
                (child.record != 0 && held[i].is_none()).then(|| {
                    Box::new(Ghost {
                        address: Address(child.record),
                        level: child.record_level.into(),
                        low: if i == 0 { current.low.clone() } else { Some(keys[i - 1].clone()) },
                        high: keys.get(i).or(current.high.as_ref()).cloned(),
                        right: None,
                        detached: true,
                    })
                })
            })
            .collect();
        let mut description = lock(&self.ghost);
        if !self.state.compare_exchange(current.state(), Arc::clone(sentinel)) {
            return Evicted::No;
        }
        *description = Some(ghost);
        for (mut held, described) in held.into_iter().zip(described) {
            match held.as_mut() {
                Some(description) => {
                    description.detached = true;
                    // A stale right link to this slot must not keep its old
                    // siblings alive; finding the live slot needs level and low.
                    description.right = None;
                }
                None => *held = described,
            }
        }
        Evicted::Yes
    }

    /// The current state, whatever it is.
    #[inline]
    pub(crate) fn state(&self) -> Snapshot<State<K, V>> {
        let state = self.state.load();
        // Header and inline leaf arrays in one batch of misses, before the
        // header is read (see `Node::prefetch`).
        prefetch(std::slice::from_ref::<State<K, V>>(&state));
        state
    }

    /// The current state without prefetching it (for the evictor's
    /// sampling, which looks at many slots and reads few of them).
    pub(crate) fn peek(&self) -> Snapshot<State<K, V>> {
        self.state.load()
    }

    /// Swaps `current` for `new` if it still is the state; says whether it
    /// did. Used by the loader and the evictor (see the state machine).
    pub(crate) fn swap_state(&self, current: &Arc<State<K, V>>, new: Arc<State<K, V>>) -> bool {
        self.state.compare_exchange(current, new)
    }

    /// True if `version` is still the slot's version.
    pub(crate) fn holds(&self, version: &NodeArc<K, V>) -> bool {
        self.state.holds(&version.0)
    }

    /// Publishes `new` if `current` is still the slot's version; says whether
    /// it did. A `false` means another write won the race: reread the slot.
    #[inline]
    pub(crate) fn replace(&self, current: &NodeRef<K, V>, new: Node<K, V>) -> bool {
        self.state.compare_exchange(&current.0, Arc::new(State::Loaded(new)))
    }
}

/// A loaded version held by a guard (cheap, not for long holds).
pub(crate) struct NodeRef<K, V>(Snapshot<State<K, V>>);

impl<K, V> NodeRef<K, V> {
    /// The snapshot as a `NodeRef` if it is a loaded version.
    #[inline]
    pub(crate) fn loaded(state: Snapshot<State<K, V>>) -> Result<NodeRef<K, V>, Snapshot<State<K, V>>> {
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

    /// The state holding this version (for swaps that replace it).
    pub(crate) fn state(&self) -> &Arc<State<K, V>> {
        &self.0
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
