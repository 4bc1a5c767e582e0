//! What a tree over a store has besides its nodes, in one place: the store,
//! the codecs of its key and value types, the commit epochs, the eviction
//! clock and memory account, the ghost sentinel and the counters behind
//! `stats()`. An in-memory tree has none of it (`Tree::stored` is `None`).
//!
//! The codecs are captured as function pointers when the tree is opened (the
//! only place that requires `K: Codec, V: Codec`), so the engine's methods
//! need no codec bounds.

use std::sync::Arc;

use super::account::{Account, AccountBox};
use super::epoch::Epochs;
use super::evict::Clock;
use super::format::{self, Crc, Decoded, Expected, TooLarge};
use super::node::Named;
use super::schedule::Schedule;
use super::slot::{Sentinel, Slot};
use super::sync::{AtomicU64, HintFlag, Mutex, MutexGuard, Ordering, lock, with_read_buffer};
use crate::store::{Address, Store};
use crate::{Codec, Error, Stats};

pub(crate) struct Stored<K, V> {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) codecs: Codecs<K, V>,
    pub(crate) counters: Counters,
    pub(crate) epochs: Epochs,
    pub(crate) clock: Clock<K, V>,
    /// The state every ghost slot of this tree holds.
    pub(crate) ghost: Sentinel<K, V>,
    /// When the checkpoint thread runs, if there is one (`background.rs`).
    pub(crate) schedule: Schedule,
    /// The error of the last checkpoint, until one succeeds.
    health: Mutex<Option<Error>>,
    /// What checkpoints free besides the nodes they write (`checkpoint.rs`).
    superseded: Mutex<Superseded<K, V>>,
    /// Store reads per window of `through.rs`.
    through_window: u64,
    /// Bytes appended since the last commit: space the store cannot reuse
    /// before the next one (`commit_due`).
    pending: AtomicU64,
    /// Held from a commit's seal to its commit record: commits are written
    /// in the order of their images (`checkpoint.rs`, "Commits").
    committing: Mutex<()>,
    /// The leaves writes made dirty, each with the epoch of the write, in
    /// the order they were (`checkpoint.rs`, "Spills"): once per slot and
    /// epoch, until a checkpoint of that epoch.
    dirtied: Mutex<Vec<Dirtied<K, V>>>,
    /// The last spill left the dirty bytes mostly to the next commit's
    /// walk (branches), or resident bytes at twice the budget (branches
    /// out of date stay until a commit): the next write back commits
    /// (`spilled`). A hint: either ending is correct.
    walk_due: HintFlag,
    /// Last: it must outlive every version (fields drop in order; see
    /// `account.rs`).
    account: AccountBox,
}

/// A leaf slot a write dirtied, and the write's epoch.
type Dirtied<K, V> = (Arc<Slot<K, V>>, u64);

/// How a checkpoint's walk ends (`checkpoint.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Synced, then the commit record: the image is the durable state.
    Commit,
    /// Settled only: the nodes are clean, the next commit names them
    /// (`checkpoint.rs`, "Spills").
    Spill,
}

/// A commit sealed under the epochs' lock ([`Stored::seal`]), to be synced
/// and written outside it ([`Stored::commit`]); it holds the commit turn.
pub(crate) struct Sealed<'a> {
    /// The commit record.
    record: Vec<u8>,
    /// The bytes appended since the last commit, as the seal found them.
    pending: u64,
    _turn: MutexGuard<'a, ()>,
}

/// Records no node will free by being written anew.
struct Superseded<K, V> {
    /// Nodes a merge retired, with their record cells and the epoch they
    /// were retired in, until a committed image no longer lists them. The
    /// slot is held: a checkpoint of an earlier epoch writes its last
    /// version, which nothing else may lead to any more (`retired_after`).
    retired: Vec<Retired<K, V>>,
    /// The root the last image added over a top level that had no root.
    extra_root: Option<Address>,
    /// The records spills superseded since the last commit (a leaf's named
    /// record, when a spill wrote it anew): the next commit frees those it
    /// no longer lists.
    spilled: Vec<Address>,
}

type Retired<K, V> = (Arc<Slot<K, V>>, Arc<Named>, u64);

/// The encoders and decoder for one `(K, V)` (signatures in `format.rs`).
pub(crate) struct Codecs<K, V> {
    pub(crate) decode: DecodeNode<K, V>,
    pub(crate) encode_leaf: EncodeLeaf<K, V>,
    pub(crate) encode_branch: EncodeBranch<K>,
    pub(crate) search_leaf: SearchLeaf<K, V>,
    /// Whether the records the store returns need their own CRC checked.
    pub(crate) crc: Crc,
}

type DecodeNode<K, V> = fn(&[u8], &Expected<'_, K>, Crc) -> Result<Decoded<K, V>, String>;
type EncodeLeaf<K, V> = fn(Option<&K>, Option<&K>, &[K], &[V]) -> Result<Vec<u8>, TooLarge>;
type EncodeBranch<K> = fn(u32, Option<&K>, Option<&K>, &[K], &[Address]) -> Result<Vec<u8>, TooLarge>;
type SearchLeaf<K, V> =
    fn(&[u8], Crc, &mut dyn FnMut(&K) -> std::cmp::Ordering) -> Result<Option<Option<V>>, String>;

/// Clock steps one thread takes per call, at most: bounds what a reader pays
/// for the others (the per-thread slack over the budget), also when nothing
/// is evictable (all dirty: a checkpoint will follow).
const STEPS_PER_CALL: usize = 512;

impl<K, V> Stored<K, V> {
    /// What a tree over `store` starts with, after a checkpoint of `epoch`
    /// that held `len` entries.
    pub(crate) fn new(store: Arc<dyn Store>, budget: usize, epoch: u64, len: u64) -> Stored<K, V>
    where
        K: Codec + Ord,
        V: Codec,
    {
        let crc = if store.checks_records() { Crc::Trusted } else { Crc::Check };
        Stored {
            store,
            codecs: Codecs {
                decode: format::decode_node::<K, V>,
                encode_leaf: format::encode_leaf::<K, V>,
                encode_branch: format::encode_branch::<K>,
                search_leaf: format::search_leaf::<K, V>,
                crc,
            },
            counters: Counters::default(),
            epochs: Epochs::new(epoch, len),
            clock: Clock::new(),
            ghost: Sentinel::new(),
            superseded: Mutex::new(Superseded { retired: Vec::new(), extra_root: None, spilled: Vec::new() }),
            schedule: Schedule::default(),
            health: Mutex::new(None),
            // Half the nodes of about 1 KiB the budget holds.
            through_window: (budget as u64 / 2048).max(16),
            pending: AtomicU64::new(0),
            committing: Mutex::new(()),
            dirtied: Mutex::new(Vec::new()),
            walk_due: HintFlag::new(false),
            account: AccountBox::new(budget),
        }
    }

    pub(crate) fn account(&self) -> &'static Account {
        self.account.get()
    }

    /// `f` of the record at `address` (read into this thread's buffer),
    /// counted.
    pub(crate) fn read_with<R>(&self, address: Address, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let result = with_read_buffer(|buf| self.store.read_into(address, buf).map(f)).map_err(|e| {
            match e.kind() {
                // The store found the record damaged (a checksum, a length).
                std::io::ErrorKind::InvalidData => {
                    Error::Corrupt { address: Some(address), what: e.to_string() }
                }
                _ => Error::io("reading a node", Some(address), e),
            }
        })?;
        Counters::bump(&self.counters.store_reads);
        Ok(result)
    }

    /// Whether a point read that met the ghost leaf `slot` reads its record
    /// instead of loading it: when resident bytes are at the budget (within
    /// a sixteenth: eviction keeps them just under it), unless this read
    /// makes it read often enough to load (`Slot::read_again`, `through.rs`).
    pub(crate) fn reads_through(&self, slot: &Slot<K, V>) -> bool {
        let account = self.account();
        if account.resident() < account.budget() - account.budget() / 16 {
            return false;
        }
        // Relaxed: a statistic read as a coarse clock; any recent value does.
        let reads = self.counters.store_reads.load(Ordering::Relaxed);
        !slot.read_again(reads / self.through_window)
    }

    /// A checkpoint appended a record of `bytes`.
    pub(crate) fn appended(&self, bytes: usize) {
        // Relaxed: read-modify-writes, by checkpoints (one walk at a time:
        // the epochs' close orders them) and a commit's end; writers read it
        // as a hint (`commit_due`), the next commit counts from it what it
        // covers under the epochs' lock, and the checkpoint thread's last
        // look (`uncommitted`) comes after the tree's owner stopped writing
        // (a lock hand-off orders them).
        self.pending.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Seals the commit whose record is `record` (`Store::seal`), after
    /// waiting for the commit under way, if one is syncing: called under the
    /// epochs' lock, at the end of a commit's walk.
    pub(crate) fn seal(&self, record: Vec<u8>) -> Result<Sealed<'_>, Error> {
        let turn = lock(&self.committing);
        self.store.seal().map_err(|e| Error::io("writing a checkpoint's nodes", None, e))?;
        // Relaxed: see `appended`; spills cannot run under the epochs' lock.
        let pending = self.pending.load(Ordering::Relaxed);
        Ok(Sealed { record, pending, _turn: turn })
    }

    /// Syncs what `sealed` covers and writes its commit record, beside
    /// spills of later epochs, and records how it ended before giving up
    /// the turn (a later commit's outcome comes after). A failure leaves
    /// what was sealed to the next commit (`Store::seal`).
    pub(crate) fn commit(&self, sealed: Sealed<'_>) -> Result<(), Error> {
        let store = &self.store;
        let result = store.sync().map_err(|e| Error::io("syncing a checkpoint", None, e)).and_then(|()| {
            store.write_commit(&sealed.record).map_err(|e| Error::io("writing the commit record", None, e))
        });
        if result.is_ok() {
            // Relaxed: see `appended`. Spills since the seal stay pending.
            self.pending.fetch_sub(sealed.pending, Ordering::Relaxed);
        }
        self.checkpointed(&result, Ending::Commit);
        result
    }

    /// Whether dirty nodes written back now should be committed rather
    /// than spilled: once the records appended since the last commit pass
    /// the budget or half the live data, whichever is more. Until a commit,
    /// the store cannot reuse the space they supersede, so this bounds the
    /// file's growth between commits to about half the live data; below it,
    /// spills spare the syncs of a commit.
    pub(crate) fn commit_due(&self) -> bool {
        let pending = self.pending.load(Ordering::Relaxed);
        pending > (self.account().budget() as u64).max(self.store.usage().live_bytes / 2)
    }

    /// How a write back that writers or the checkpoint thread start
    /// (rather than `flush`) ends: a commit when one is due
    /// (`commit_due`), or the last spill left the work to a commit's walk
    /// (`spilled`); else a spill.
    pub(crate) fn write_back_ending(&self) -> Ending {
        // Relaxed: a hint (see `walk_due`).
        if self.commit_due() || self.walk_due.load(Ordering::Relaxed) {
            Ending::Commit
        } else {
            Ending::Spill
        }
    }

    /// A spill cleaned `cleaned` of the `dirty` bytes there were when it
    /// began. If that was under a quarter and a quarter of the budget is
    /// still dirty (branches, which only a commit writes), or resident
    /// bytes are twice the budget (branches a spill left out of date,
    /// which the clock cannot evict, beside the dirty share and the
    /// writers' new versions), the next write back is a
    /// commit. Not on the share cleaned alone: writers of the next epoch
    /// dirty leaves while a spill runs, and a spill that follows another
    /// closely finds little of its own to clean.
    pub(crate) fn spilled(&self, cleaned: usize, dirty: usize) {
        let account = self.account();
        let budget = account.budget();
        let stuck = cleaned < dirty / 4 && account.dirty() > budget / 4;
        let short = stuck || account.resident() > budget.saturating_mul(2);
        self.walk_due.store(short, Ordering::Relaxed);
    }

    /// Queues the leaf `slot`, which a write of `epoch` made dirty, for the
    /// spills.
    pub(crate) fn dirtied(&self, slot: &Arc<Slot<K, V>>, epoch: u64) {
        lock(&self.dirtied).push((Arc::clone(slot), epoch));
    }

    /// The leaves queued by writes of epochs up to `epoch`, which a
    /// checkpoint of `epoch` writes; those of later epochs stay queued.
    pub(crate) fn take_dirtied(&self, epoch: u64) -> Vec<Arc<Slot<K, V>>> {
        let mut queue = lock(&self.dirtied);
        let (now, later) = std::mem::take(&mut *queue).into_iter().partition(|(_, e)| *e <= epoch);
        *queue = later;
        now.into_iter().map(|(slot, _)| slot).collect()
    }

    /// Queues `slots` again, as made dirty in `epoch` (a spill that failed,
    /// or met a leaf being merged).
    pub(crate) fn requeue(&self, slots: Vec<Arc<Slot<K, V>>>, epoch: u64) {
        lock(&self.dirtied).extend(slots.into_iter().map(|slot| (slot, epoch)));
    }

    /// A spill wrote anew a leaf whose last image named `record`.
    pub(crate) fn superseded_by_spill(&self, record: Address) {
        lock(&self.superseded).spilled.push(record);
    }

    /// The records spills superseded since the last commit.
    pub(crate) fn spilled_records(&self) -> Vec<Address> {
        lock(&self.superseded).spilled.clone()
    }

    /// Whether anything was written since the last commit, dirty or spilled.
    pub(crate) fn uncommitted(&self) -> bool {
        self.account().dirty() > 0 || self.pending.load(Ordering::Relaxed) > 0
    }

    /// Notes how a checkpoint ended: a failure is kept until a commit
    /// succeeds (a spill that succeeds leaves the durable state behind).
    pub(crate) fn checkpointed(&self, result: &Result<(), Error>, ending: Ending) {
        let counter = match (result, ending) {
            (Err(_), _) => &self.counters.checkpoint_failures,
            (Ok(()), Ending::Commit) => &self.counters.checkpoints,
            (Ok(()), Ending::Spill) => &self.counters.spills,
        };
        Counters::bump(counter);
        match result {
            Ok(()) if ending == Ending::Spill => {}
            _ => *lock(&self.health) = result.as_ref().err().cloned(),
        }
    }

    /// The error of the last checkpoint, if it failed.
    pub(crate) fn health(&self) -> Result<(), Error> {
        lock(&self.health).clone().map_or(Ok(()), Err)
    }

    /// A merge retired `slot`, whose last version names `named`.
    pub(crate) fn retired(&self, slot: &Arc<Slot<K, V>>, named: &Arc<Named>) {
        let epoch = self.epochs.current();
        lock(&self.superseded).retired.push((Arc::clone(slot), Arc::clone(named), epoch));
    }

    /// The node on `level` starting at `low` that a merge retired after
    /// `epoch`: a checkpoint of `epoch` still writes it, but no descent
    /// finds it any more (its left neighbour has absorbed it). `None` if
    /// there is none.
    pub(crate) fn retired_after(&self, epoch: u64, level: u32, low: Option<&K>) -> Option<Arc<Slot<K, V>>>
    where
        K: PartialEq,
    {
        let superseded = lock(&self.superseded);
        superseded.retired.iter().filter(|(.., retired_in)| *retired_in > epoch).find_map(|(slot, ..)| {
            let version = slot.frozen()?.version();
            (version.level() == level && version.low.as_ref() == low).then_some(Arc::clone(slot))
        })
    }

    /// The record cells of the nodes retired in epochs up to `epoch` that
    /// its image does not list (`listed` is asked by slot identity and
    /// record).
    ///
    /// A node retired in a later epoch is still in the image, maybe under
    /// another slot and inside a record the walk did not open: while the
    /// checkpoint walked, its parent (and the branch above) was evicted and
    /// loaded again (new child slots for the same records), and the merge
    /// took the new slot away. Its record waits for the next checkpoint.
    /// One retired in `epoch` or before was merged away before the walk
    /// began: its freezer registered in such an epoch (or the thread that
    /// retired it would read a later one), and closing `epoch` waited for
    /// that writer, which finishes its merge.
    pub(crate) fn retired_unlisted(
        &self,
        epoch: u64,
        mut listed: impl FnMut(*const Slot<K, V>, &Named) -> bool,
    ) -> Vec<Arc<Named>> {
        let superseded = lock(&self.superseded);
        superseded
            .retired
            .iter()
            .filter(|(slot, named, retired_in)| *retired_in <= epoch && !listed(Arc::as_ptr(slot), named))
            .map(|(_, named, _)| Arc::clone(named))
            .collect()
    }

    /// The extra root of the last image, if it had one.
    pub(crate) fn extra_root(&self) -> Option<Address> {
        lock(&self.superseded).extra_root
    }

    /// An image freeing the records of `gone` (from `retired_unlisted`)
    /// and the spilled ones (`spilled_records`) is sealed, and it has
    /// `extra_root`.
    pub(crate) fn imaged(&self, extra_root: Option<Address>, gone: &[Arc<Named>]) {
        let mut superseded = lock(&self.superseded);
        superseded.extra_root = extra_root;
        superseded.spilled.clear();
        // Relaxed: a hint (see `walk_due`).
        self.walk_due.store(false, Ordering::Relaxed);
        for named in gone {
            named.set(None);
        }
        superseded.retired.retain(|(_, named, _)| !gone.iter().any(|gone| Arc::ptr_eq(gone, named)));
    }

    /// Queues a node that just became clean and resident for the clock.
    pub(crate) fn track(&self, slot: &Arc<Slot<K, V>>) {
        self.clock.track(slot);
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        stats.resident_bytes = self.account().resident() as u64;
        stats.dirty_bytes = self.account().dirty() as u64;
        let usage = self.store.usage();
        stats.file_bytes = usage.file_bytes;
        stats.live_bytes = usage.live_bytes;
        stats.store_memory_bytes = usage.memory_bytes;
        stats.last_checkpoint_error = lock(&self.health).as_ref().map(ToString::to_string);
        stats
    }
}

impl<K: PartialEq + Clone, V> Stored<K, V> {
    /// Evicts cold clean nodes while resident bytes exceed the budget, a
    /// bounded number of clock steps. Called by threads that just loaded a
    /// node, and by writers.
    pub(crate) fn evict_if_over_budget(&self) {
        let evicted = self.clock.turn(STEPS_PER_CALL, self.account(), &self.ghost);
        Counters::add(&self.counters.evictions, evicted);
    }

    /// Turns the clock until resident bytes are within the budget or
    /// nothing more can go (after a pause, which may have let the tree load
    /// far past the budget).
    fn evict_to_budget(&self) {
        let account = self.account();
        // A turn over the whole queue marks nodes, the next evicts them,
        // and a branch can go one turn after its last child.
        let mut idle = 0;
        while account.over_budget() && idle < 2 {
            let evicted = self.clock.turn(usize::MAX, account, &self.ghost);
            Counters::add(&self.counters.evictions, evicted);
            idle = if evicted > 0 { 0 } else { idle + 1 };
        }
    }

    /// Stops eviction until the returned guard drops, once any turn of the
    /// clock in progress has ended.
    pub(crate) fn pause_eviction(&self) -> Paused<'_, K, V> {
        self.clock.pause();
        Paused(self)
    }
}

impl<K, V> Drop for Stored<K, V> {
    fn drop(&mut self) {
        // What was spilled since the last commit is garbage now: no commit
        // will name it (a tree opened on this store next starts from the
        // last commit).
        self.store.rollback();
    }
}

/// Eviction stays paused while this lives (see [`Stored::pause_eviction`]);
/// dropping it evicts what the pause let in over the budget.
pub(crate) struct Paused<'a, K: PartialEq + Clone, V>(&'a Stored<K, V>);

impl<K: PartialEq + Clone, V> Drop for Paused<'_, K, V> {
    fn drop(&mut self) {
        self.0.clock.resume();
        self.0.evict_to_budget();
    }
}

/// Event counters. `Relaxed` throughout: they are statistics, each counted
/// once by the thread that did the work, and publish nothing.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) loads: AtomicU64,
    pub(crate) load_waits: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) checkpoint_failures: AtomicU64,
    pub(crate) spills: AtomicU64,
    pub(crate) store_reads: AtomicU64,
    pub(crate) store_writes: AtomicU64,
    pub(crate) reads_through: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        Counters::add(counter, 1);
    }

    fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            loads: get(&self.loads),
            load_waits: get(&self.load_waits),
            evictions: get(&self.evictions),
            checkpoints: get(&self.checkpoints),
            checkpoint_failures: get(&self.checkpoint_failures),
            spills: get(&self.spills),
            store_reads: get(&self.store_reads),
            store_writes: get(&self.store_writes),
            reads_through: get(&self.reads_through),
            ..Stats::default()
        }
    }
}
