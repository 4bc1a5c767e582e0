//! Immutable node versions: buckets (leaves) and branches (interior nodes).
//!
//! A node is never changed after it is published in a slot. A write builds a
//! new version next to the old one (copy on write) and swaps it into the slot;
//! this file holds the pure functions that build those versions.
//!
//! # Invariants (checked by `verify`)
//!
//! Every node covers the key range `[low, high)` (`None` is minus or plus
//! infinity) and:
//!
//! 1. `low` is the same in every version published in one slot: a slot's range
//!    only ever shrinks from the right, when its node splits.
//! 2. `high.is_some() == right.is_some()`, and the node in `right` has
//!    `low == high`. Following right links from the leftmost node of a level
//!    visits the whole level in key order, and the ranges tile the key space.
//! 3. A leaf's keys are strictly increasing and inside `[low, high)`;
//!    `keys.len() == vals.len()`.
//! 4. A branch at level `l >= 1` has `children.len() == keys.len() + 1 >= 1`,
//!    strictly increasing keys inside `(low, high)`, and children at level
//!    `l - 1`. Child `i` has `low == keys[i - 1]` (`low` of the branch for
//!    `i == 0`); the chain of right links from child `i` reaches child `i + 1`,
//!    whose `low` is `keys[i]`. Nodes on that chain before child `i + 1` are
//!    splits whose separator is not posted yet (B-link: legal, they are found
//!    by moving right).
//! 5. A node's range grows only by absorbing its right neighbour (a merge,
//!    `merge.rs`), which then leaves the tree for good, and shrinks only by
//!    splitting. No leaf is empty except the only one, once merges end (a
//!    leaf loaded from a store may be, until it is written).
//! 6. A node built in memory holds at most its capacity. One loaded from the
//!    store may hold more (a checkpoint folds unposted splits into their
//!    parent's image, and a tree may be reopened with smaller capacities);
//!    its next write splits it into pieces that all fit.

use std::sync::Arc;

use smallvec::SmallVec;

use super::account::{Account, Charge};
use super::slot::{Fresh, NodeArc, Slot, version_overhead};
use super::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::store::Address;

/// One immutable version of a node.
///
/// `repr(C)`: the header a descent reads first (bounds, right link) sits at
/// the start, on the line the slot's state pointer leads to, ahead of the
/// large inline leaf arrays.
#[repr(C)]
pub(crate) struct Node<K, V> {
    /// Inclusive lower bound of the range; `None` is minus infinity.
    pub(crate) low: Option<K>,
    /// Exclusive upper bound of the range; `None` is plus infinity.
    pub(crate) high: Option<K>,
    /// The slot of the next node on this level; `Some` exactly when `high` is.
    pub(crate) right: Option<Arc<Slot<K, V>>>,
    pub(crate) body: Body<K, V>,
    pub(crate) meta: Meta<K, V>,
}

/// Bookkeeping of a version for checkpoints and eviction; not part of what
/// the node says, so it may change after publication.
pub(crate) struct Meta<K, V> {
    /// The commit epoch of the write that made this version (0: loaded from
    /// storage or bulk built).
    pub(crate) epoch: u64,
    /// The version this one replaced, kept while a checkpoint of an older
    /// epoch may still need to write it; dropped once none can (see
    /// `forget_prev`), or versions would chain across checkpoints.
    prev: Mutex<Option<NodeArc<K, V>>>,
    /// Where this version's image is stored, once it is. A branch's image
    /// also names its children's addresses, so a checkpoint that moves a
    /// child rewrites it and updates this.
    pub(crate) stored: StoredAt,
    /// A branch version's record and the child records it lists, once
    /// stored (`Listing`).
    pub(crate) listing: Listing,
    /// This version's share of the tree's memory count (trees over a store).
    pub(crate) charge: Option<Charge>,
    /// The node's record in the last commit: shared by all its versions.
    pub(crate) named: Arc<Named>,
}

impl<K, V> Meta<K, V> {
    /// The bookkeeping of a new version of the node whose record is in
    /// `named` (a new node: `Named::nowhere()`).
    pub(crate) fn new(epoch: u64, prev: Option<NodeArc<K, V>>, named: Arc<Named>) -> Meta<K, V> {
        Meta {
            epoch,
            prev: Mutex::new(prev),
            stored: StoredAt(AtomicU64::new(NOWHERE)),
            listing: Listing::default(),
            charge: None,
            named,
        }
    }

    /// The bookkeeping of a version loaded from the record at `address`;
    /// a branch's lists `children`.
    pub(crate) fn loaded_from(address: Address, children: Option<Arc<[Address]>>) -> Meta<K, V> {
        Meta {
            epoch: 0,
            prev: Mutex::new(None),
            stored: StoredAt(AtomicU64::new(address.0)),
            listing: Listing(Mutex::new(children.map(|children| (address, children)))),
            charge: None,
            named: Arc::new(Named(AtomicU64::new(address.0))),
        }
    }

    /// The version this one keeps for a checkpoint, if any.
    pub(crate) fn prev(&self) -> Option<NodeArc<K, V>> {
        lock(&self.prev).clone()
    }

    /// Drops the kept version: no checkpoint can need it any more (the
    /// caller knows why).
    pub(crate) fn forget_prev(&self) {
        let prev = lock(&self.prev).take();
        drop(prev); // outside the lock: it may free a chain of versions
    }
}

/// Where a version is stored: a record's address once the commit naming
/// it is durable; until then nowhere. Address 0 is never a record (the
/// `Store` trait reserves it), so it stands for nowhere.
pub(crate) struct StoredAt(AtomicU64);

const NOWHERE: u64 = 0;

impl StoredAt {
    /// The record, if the version is stored. Acquire: pairs with `set`, so
    /// whoever names the record (the evictor, in a ghost) finds it written.
    pub(crate) fn get(&self) -> Option<Address> {
        Some(self.0.load(Ordering::Acquire)).filter(|&a| a != NOWHERE).map(Address)
    }

    /// The version is stored at `address` (after the commit naming it).
    /// Release: see `get`.
    pub(crate) fn set(&self, address: Address) {
        self.0.store(address.0, Ordering::Release);
    }
}

/// The record a stored branch version is at and the child records it lists,
/// set together and read together (one lock): a branch whose child moved
/// since (a spill wrote the child anew, `checkpoint.rs`) has a record out
/// of date, which the next commit rewrites and the clock must not evict
/// to. Read as a pair, the evictor never takes one record with another
/// record's children.
#[derive(Default)]
pub(crate) struct Listing(Mutex<Option<(Address, Arc<[Address]>)>>);

impl Listing {
    pub(crate) fn get(&self) -> Option<(Address, Arc<[Address]>)> {
        lock(&self.0).clone()
    }

    /// The version is stored at `address`, a record listing `children`.
    pub(crate) fn set(&self, address: Address, children: Arc<[Address]>) {
        *lock(&self.0) = Some((address, children));
    }

    /// Whether the record lists exactly `children`; its address if so.
    pub(crate) fn lists(&self, children: &[Address]) -> Option<Address> {
        lock(&self.0).as_ref().filter(|(_, listed)| **listed == *children).map(|(at, _)| *at)
    }
}

/// Which record of a node the last commit names: the one a checkpoint
/// frees when it writes the node anew, or drops it (a merge retired it).
/// One per node, shared by all its versions (a write's new version takes
/// its predecessor's; a split's new right nodes get new ones), so it moves
/// on however many versions a node went through between two checkpoints.
///
/// Relaxed: only checkpoints read and set it, one at a time (in
/// `Epochs::close`'s critical section, which orders them), and a node's
/// first value is published with the version holding it.
pub(crate) struct Named(AtomicU64);

impl Named {
    /// A node no commit names yet.
    pub(crate) fn nowhere() -> Arc<Named> {
        Arc::new(Named(AtomicU64::new(NOWHERE)))
    }

    pub(crate) fn get(&self) -> Option<Address> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&a| a != NOWHERE).map(Address)
    }

    pub(crate) fn set(&self, address: Option<Address>) {
        self.0.store(address.map_or(NOWHERE, |a| a.0), Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub(crate) enum Body<K, V> {
    Leaf(Leaf<K, V>),
    Branch(Branch<K, V>),
}

/// A bucket: sorted keys and their values, kept in two arrays so a search
/// touches only keys.
#[derive(Clone)]
pub(crate) struct Leaf<K, V> {
    pub(crate) keys: Entries<K>,
    pub(crate) vals: Entries<V>,
}

/// A leaf's array, stored inside the node itself up to [`INLINE`] items.
///
/// Inline arrays spare a lookup one dependent cache miss per leaf (the slot
/// leads straight to header, keys and values, all prefetched together) and a
/// write two of its three allocations. Leaves larger than `INLINE` (a
/// `leaf_capacity` above the default) spill to the heap and still work.
pub(crate) type Entries<T> = SmallVec<[T; INLINE]>;

/// Inline capacity of leaf arrays: the default leaf capacity.
pub(crate) const INLINE: usize = crate::Config::DEFAULT_LEAF_CAPACITY;

/// An interior node: `keys[i]` separates `children[i]` from `children[i + 1]`.
#[derive(Clone)]
pub(crate) struct Branch<K, V> {
    /// Height above the leaves (leaves are level 0); always at least 1.
    pub(crate) level: u32,
    pub(crate) keys: Vec<K>,
    pub(crate) children: Vec<Arc<Slot<K, V>>>,
}

/// Where a version ends: its `high` and the slot after it (`Some` together).
pub(crate) struct End<K, V> {
    pub(crate) high: Option<K>,
    pub(crate) right: Option<Arc<Slot<K, V>>>,
}

/// A new version that replaces a node, or the pieces of a split.
pub(crate) enum Rebuilt<K, V> {
    Fits(Node<K, V>),
    /// `left` goes into the node's own slot; `right` holds new slots in key
    /// order, each with the separator its node starts at, chained by right
    /// links from `left`. The split takes effect when `left` is published.
    Split {
        left: Node<K, V>,
        right: Vec<(K, Arc<Slot<K, V>>)>,
    },
}

impl<K, V> Node<K, V> {
    /// A version made by a bulk load or a fresh tree (epoch 0, not stored).
    pub(crate) fn new(
        low: Option<K>,
        high: Option<K>,
        right: Option<Arc<Slot<K, V>>>,
        body: Body<K, V>,
    ) -> Self {
        Node { low, high, right, body, meta: Meta::new(0, None, Named::nowhere()) }
    }

    /// Charges this version to `account` (if the tree has one), as dirty
    /// (built by a write) or clean (loaded from the store).
    #[inline]
    pub(crate) fn charged(mut self, account: Option<&'static Account>, dirty: bool) -> Self {
        self.charge(account, dirty);
        self
    }

    #[inline]
    fn charge(&mut self, account: Option<&'static Account>, dirty: bool) {
        if let Some(account) = account {
            self.meta.charge = Some(account.charge(self.size(), dirty));
        }
    }

    /// The size a version is charged: the node and what its arrays hold on
    /// the heap (not the heap data of the keys and values themselves). A
    /// branch is also charged its children's slots, which live and die with
    /// its versions, as ghosts (a loaded child's version is charged on its
    /// own).
    fn size(&self) -> usize {
        let (version, ghost_slot) = version_overhead::<K, V>();
        let heap = match &self.body {
            Body::Leaf(leaf) => {
                let spilled =
                    |capacity: usize, spilled: bool, item: usize| if spilled { capacity * item } else { 0 };
                spilled(leaf.keys.capacity(), leaf.keys.spilled(), size_of::<K>())
                    + spilled(leaf.vals.capacity(), leaf.vals.spilled(), size_of::<V>())
            }
            Body::Branch(branch) => {
                // The listing a stored version keeps: a record per child.
                branch.keys.capacity() * size_of::<K>()
                    + branch.children.capacity() * size_of::<usize>()
                    + branch.children.len() * (ghost_slot + size_of::<Address>())
            }
        };
        version + heap
    }

    pub(crate) fn level(&self) -> u32 {
        match &self.body {
            Body::Leaf(_) => 0,
            Body::Branch(branch) => branch.level,
        }
    }

    /// Entries of a leaf, children of a branch.
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    /// The leaf body; `None` for a branch.
    pub(crate) fn as_leaf(&self) -> Option<&Leaf<K, V>> {
        match &self.body {
            Body::Leaf(leaf) => Some(leaf),
            Body::Branch(_) => None,
        }
    }

    /// Starts loading the arrays a search of this node reads, all at once.
    ///
    /// A binary search over a 64-key array in memory that is not cached
    /// waits for four or five cache misses one after the other; asking for
    /// every line first turns them into one wait (plus the value or child
    /// line, fetched alongside). Nodes are not in cache on large trees, so
    /// this halves the time of a point lookup (`docs/benchmarks.md`).
    #[inline(always)]
    pub(crate) fn prefetch(&self) {
        match &self.body {
            Body::Leaf(leaf) => {
                prefetch(&leaf.keys);
                prefetch(&leaf.vals);
            }
            Body::Branch(branch) => {
                prefetch(&branch.keys);
                prefetch(&branch.children);
            }
        }
    }

    pub(crate) fn as_branch(&self) -> Option<&Branch<K, V>> {
        match &self.body {
            Body::Leaf(_) => None,
            Body::Branch(branch) => Some(branch),
        }
    }
}

impl<K: Clone, V: Clone> Node<K, V> {
    /// The version of this leaf that follows once `edit` is made, when it
    /// fits: the same range and right link, built in place (see [`Fresh`]).
    #[inline]
    pub(crate) fn edited(
        &self,
        edit: Edit<K, V>,
        meta: Meta<K, V>,
        account: Option<&'static Account>,
    ) -> Fresh<K, V> {
        let mut fresh = Fresh::new(Node {
            low: self.low.clone(),
            high: self.high.clone(),
            right: self.right.clone(),
            body: Body::Leaf(Leaf { keys: Entries::new(), vals: Entries::new() }),
            meta,
        });
        let node = fresh.node_mut();
        if let (Body::Leaf(from), Body::Leaf(to)) = (&self.body, &mut node.body) {
            from.edit_into(edit, to);
        }
        node.charge(account, true);
        fresh
    }
}

impl<K: Ord + Clone, V: Clone> Node<K, V> {
    /// The version that follows `self` once its body becomes `body`: the same
    /// range and right link, or a split when `body` holds more than
    /// `capacity` entries (children, for a branch).
    ///
    /// A split makes as many pieces as it takes for each to fit: one more
    /// entry than fits makes two halves, but a node loaded over capacity (a
    /// checkpoint folds unposted splits into their parent's image, and a
    /// tree may be reopened with smaller capacities) splits into more.
    /// `appended` says the new entry went to the end of the rightmost node
    /// of its level; that node then splits unevenly (every piece but the
    /// last full), so ascending inserts fill nodes as a bulk load does
    /// instead of leaving them half empty.
    ///
    /// `meta` becomes the successor's (the left piece's, on a split); the
    /// other pieces are new slots, so they have no predecessor.
    ///
    /// `end` is where the successor ends, if not where `self` does: a merge
    /// (`merge.rs`) extends a node over the one it absorbs.
    #[inline]
    pub(crate) fn rebuild(
        &self,
        body: Body<K, V>,
        end: Option<End<K, V>>,
        capacity: usize,
        appended: bool,
        meta: Meta<K, V>,
        account: Option<&'static Account>,
    ) -> Rebuilt<K, V> {
        let End { high, right } =
            end.unwrap_or_else(|| End { high: self.high.clone(), right: self.right.clone() });
        let len = body.len();
        if len <= capacity {
            return Rebuilt::Fits(
                Node { low: self.low.clone(), high, right, body, meta }.charged(account, true),
            );
        }
        let pieces = len.div_ceil(capacity);
        let cut = |i: usize| if appended && high.is_none() { i * capacity } else { len * i / pieces };
        // Cut from the right end, so each cut takes one piece off the tail.
        let mut rest = body;
        let mut tail = Vec::with_capacity(pieces - 1);
        for i in (1..pieces).rev() {
            let (left, separator, piece) = rest.split(cut(i));
            tail.push((separator, piece));
            rest = left;
        }
        // `tail` runs right to left: link each piece to the one after it.
        let (mut high, mut right_link) = (high, right);
        let mut right = Vec::with_capacity(tail.len());
        for (separator, body) in tail {
            let low = Some(separator.clone());
            let node = Node {
                low: low.clone(),
                high,
                right: right_link,
                body,
                meta: Meta::new(meta.epoch, None, Named::nowhere()),
            };
            let slot = Slot::new(node.charged(account, true));
            (high, right_link) = (low, Some(Arc::clone(&slot)));
            right.push((separator, slot));
        }
        right.reverse();
        let left = Node { low: self.low.clone(), high, right: right_link, body: rest, meta };
        Rebuilt::Split { left: left.charged(account, true), right }
    }
}

impl<K, V> Body<K, V> {
    /// Entries of a leaf, children of a branch.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Leaf(leaf) => leaf.keys.len(),
            Body::Branch(branch) => branch.children.len(),
        }
    }
}

impl<K: Clone, V: Clone> Body<K, V> {
    /// Splits so that the right part starts with entry (child) `at`, which is
    /// at least 1 and less than the length. Returns `(left, separator, right)`.
    fn split(self, at: usize) -> (Body<K, V>, K, Body<K, V>) {
        match self {
            Body::Leaf(Leaf { mut keys, mut vals }) => {
                let right = Leaf { keys: keys.drain(at..).collect(), vals: vals.drain(at..).collect() };
                keys.shrink_to_fit();
                vals.shrink_to_fit();
                let separator = right.keys[0].clone();
                (Body::Leaf(Leaf { keys, vals }), separator, Body::Leaf(right))
            }
            Body::Branch(Branch { level, mut keys, mut children }) => {
                // Children [0, at) stay left; keys[at - 1] moves up as the
                // separator; children [at, ..) and keys [at, ..) go right.
                let right_children = children.split_off(at);
                let right_keys = keys.split_off(at);
                let separator = keys.pop().expect("a branch split leaves the left half a key");
                keys.shrink_to_fit();
                children.shrink_to_fit();
                let right = Branch { level, keys: right_keys, children: right_children };
                (Body::Branch(Branch { level, keys, children }), separator, Body::Branch(right))
            }
        }
    }
}

/// A change to one entry of a leaf, made as the leaf is copied.
pub(crate) enum Edit<K, V> {
    /// `(key, value)` goes in at the index.
    Insert(usize, K, V),
    /// The value at the index becomes this one.
    Replace(usize, V),
    /// The entry at the index goes.
    Remove(usize),
}

impl<K, V> Edit<K, V> {
    /// How many entries the edit adds.
    pub(crate) fn delta(&self) -> isize {
        match self {
            Edit::Insert(..) => 1,
            Edit::Replace(..) => 0,
            Edit::Remove(_) => -1,
        }
    }
}

impl<K: Clone, V: Clone> Leaf<K, V> {
    /// A copy with `edit` made.
    #[inline]
    pub(crate) fn edited(&self, edit: Edit<K, V>) -> Leaf<K, V> {
        let mut leaf = Leaf { keys: Entries::new(), vals: Entries::new() };
        self.edit_into(edit, &mut leaf);
        leaf
    }

    /// Fills the empty `to` with a copy of `self`, `edit` made, its arrays
    /// allocated to the exact length.
    #[inline]
    fn edit_into(&self, edit: Edit<K, V>, to: &mut Leaf<K, V>) {
        let len = self.keys.len().saturating_add_signed(edit.delta());
        to.keys.reserve_exact(len);
        to.vals.reserve_exact(len);
        match edit {
            Edit::Insert(index, key, value) => {
                splice_into(&mut to.keys, &self.keys, index, 0, Some(key));
                splice_into(&mut to.vals, &self.vals, index, 0, Some(value));
            }
            Edit::Replace(index, value) => {
                splice_into(&mut to.keys, &self.keys, 0, 0, None);
                splice_into(&mut to.vals, &self.vals, index, 1, Some(value));
            }
            Edit::Remove(index) => {
                splice_into(&mut to.keys, &self.keys, index, 1, None);
                splice_into(&mut to.vals, &self.vals, index, 1, None);
            }
        }
    }
}

impl<K: Clone, V: Clone> Body<K, V> {
    /// The body of a node that absorbed its right neighbour: `self`'s
    /// entries, then `right`'s (a branch's separator between the two parts
    /// is `right`'s `low`, `separator`). Both must be of one kind and level.
    pub(crate) fn absorbing(&self, separator: &K, right: &Body<K, V>) -> Option<Body<K, V>> {
        match (self, right) {
            (Body::Leaf(left), Body::Leaf(right)) => Some(Body::Leaf(Leaf {
                keys: left.keys.iter().chain(&right.keys).cloned().collect(),
                vals: left.vals.iter().chain(&right.vals).cloned().collect(),
            })),
            (Body::Branch(left), Body::Branch(right)) if left.level == right.level => {
                Some(Body::Branch(Branch {
                    level: left.level,
                    keys: left.keys.iter().chain([separator]).chain(&right.keys).cloned().collect(),
                    children: left.children.iter().chain(&right.children).cloned().collect(),
                }))
            }
            _ => None,
        }
    }
}

impl<K: Clone, V> Branch<K, V> {
    /// A copy without child `index` (at least 1) and the separator before it.
    pub(crate) fn without_child(&self, index: usize) -> Branch<K, V> {
        Branch {
            level: self.level,
            keys: spliced(&self.keys, index - 1, 1, None),
            children: spliced(&self.children, index, 1, None),
        }
    }
}

impl<K: Ord + Clone, V> Branch<K, V> {
    /// A copy with `separator` and the slot of the node it starts inserted, or
    /// `None` if `separator` is here already (someone else posted it).
    /// Separators are unique per level (each is the fixed `low` of one slot),
    /// so finding the key means the split is posted.
    pub(crate) fn with_separator(
        &self,
        separator: K,
        right: Arc<Slot<K, V>>,
    ) -> Option<(Branch<K, V>, bool)> {
        let index = match self.keys.binary_search(&separator) {
            Ok(_) => return None,
            Err(index) => index,
        };
        let appended = index == self.keys.len();
        let branch = Branch {
            level: self.level,
            keys: spliced(&self.keys, index, 0, Some(separator)),
            children: spliced(&self.children, index + 1, 0, Some(right)),
        };
        Some((branch, appended))
    }
}

/// The arrays nodes are made of: `Vec` (branches) and [`Entries`] (leaves).
trait Array<T>: Extend<T> {
    fn with_capacity(capacity: usize) -> Self;

    /// [`splice_into`] `self`, which is empty and has room for the result.
    /// Slice by slice: each `extend` is a tight copy loop.
    #[inline]
    fn fill_spliced(&mut self, items: &[T], index: usize, cut: usize, item: Option<T>)
    where
        T: Clone,
    {
        let (before, after) = items.split_at(index);
        self.extend(before.iter().cloned());
        self.extend(item);
        self.extend(after[cut..].iter().cloned());
    }
}

impl<T> Array<T> for Vec<T> {
    fn with_capacity(capacity: usize) -> Self {
        Vec::with_capacity(capacity)
    }
}

impl<T> Array<T> for Entries<T> {
    fn with_capacity(capacity: usize) -> Self {
        SmallVec::with_capacity(capacity)
    }

    /// Written in place, the length set once: `SmallVec`'s `extend` stores
    /// its length after every item, a loop the compiler does not make a
    /// copy of (it was ~6 % of a queue write). A `clone` that panics
    /// leaves what it wrote unowned: leaked, never dropped twice.
    #[inline]
    fn fill_spliced(&mut self, items: &[T], index: usize, cut: usize, item: Option<T>)
    where
        T: Clone,
    {
        let (before, after) = items.split_at(index);
        let after = &after[cut..];
        let len = before.len() + usize::from(item.is_some()) + after.len();
        assert!(self.is_empty() && self.capacity() >= len, "filled only when empty, with room");
        let out = self.as_mut_ptr();
        let (before_at, after_at) = (0, len - after.len());
        // SAFETY: every offset written is below `len <= capacity`, in the
        // array's spare capacity (it is empty), and each is written once;
        // `out` is not used after `set_len`, whose first `len` items are
        // the ones written here.
        #[allow(unsafe_code)]
        unsafe {
            for (i, x) in before.iter().enumerate() {
                out.add(before_at + i).write(x.clone());
            }
            if let Some(item) = item {
                out.add(before.len()).write(item);
            }
            for (i, x) in after.iter().enumerate() {
                out.add(after_at + i).write(x.clone());
            }
            self.set_len(len);
        }
    }
}

/// A copy of `items` with the `cut` items at `index` (0 or 1) replaced by
/// `item`, if any, allocated to the exact length: an insert (cut 0), a
/// replacement (cut 1, an item) or a removal (cut 1, none).
#[inline]
fn spliced<T: Clone, A: Array<T>>(items: &[T], index: usize, cut: usize, item: Option<T>) -> A {
    let mut out = A::with_capacity(items.len() - cut + usize::from(item.is_some()));
    splice_into(&mut out, items, index, cut, item);
    out
}

/// [`spliced`] into `out`, which is empty and has room for the result.
#[inline]
fn splice_into<T: Clone, A: Array<T>>(out: &mut A, items: &[T], index: usize, cut: usize, item: Option<T>) {
    out.fill_spliced(items, index, cut, item);
}

/// How a node's keys break invariant 3 or 4.
pub(crate) enum Misfit<'a, K> {
    /// Two neighbours not strictly increasing.
    OutOfOrder(&'a K, &'a K),
    /// The first key is below `low` (or at it, for a branch's separators).
    Below(&'a K),
    /// The last key is at or above `high`.
    Above(&'a K),
}

/// Every way `keys` misfit their node: strictly increasing, inside
/// `[low, high)`, and strictly above `low` for a branch's separators (its
/// first child starts at `low`). Used on records from the store and by
/// `verify`.
pub(crate) fn misfits<'a, K: Ord>(
    keys: &'a [K],
    low: Option<&K>,
    high: Option<&K>,
    branch: bool,
) -> impl Iterator<Item = Misfit<'a, K>> {
    let out_of_order =
        keys.windows(2).find(|pair| pair[0] >= pair[1]).map(|pair| Misfit::OutOfOrder(&pair[0], &pair[1]));
    let below = match (low, keys.first()) {
        (Some(low), Some(first)) if first < low || (branch && first == low) => Some(Misfit::Below(first)),
        _ => None,
    };
    let above = match (high, keys.last()) {
        (Some(high), Some(last)) if last >= high => Some(Misfit::Above(last)),
        _ => None,
    };
    [out_of_order, below, above].into_iter().flatten()
}

/// Hints the CPU to load the cache lines of `items` (at most 2 KiB of them).
/// Changes no result; a no-op where no stable prefetch instruction exists.
#[inline]
pub(crate) fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = items.as_ptr().cast::<i8>();
        for offset in (0..size_of_val(items).min(2048)).step_by(64) {
            // SAFETY: a prefetch is a hint: it reads nothing the program can
            // observe and never faults, whatever the address (here it is
            // inside `items` anyway). SSE is part of the x86_64 baseline.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
