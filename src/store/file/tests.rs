//! Power-loss tests: a simulated disk that forgets, tears and reorders what
//! was not synced, and a tree recovered from every cut point of a workload.
//!
//! [`SimDisk`] keeps two images, what reads see (the page cache) and what
//! survives a power cut (what syncs made durable), and logs every write and
//! sync. A cut after event `k` of the log leaves the durable image of the
//! last sync before `k`, with each write since then applied whole, dropped,
//! torn (a prefix cut at a 512-byte sector boundary or at any byte, or a
//! random subset of its sectors), or as zeros where it grew the file (the
//! length reached the disk, the data did not), in any order.
//!
//! Faults are armed for one call (the nth write or sync, the superblock's
//! write) or as a capacity (a full disk: ENOSPC past a length). A failed
//! sync decides the fate of its writes there and then (a random fate each,
//! all kept or all dropped, as the fault says), and what it dropped never
//! reaches the disk, though reads still see it: Linux marks the pages clean
//! after a writeback error, and a later `fdatasync` succeeds without
//! writing them. A failed write may have written a prefix.
//!
//! # What a recovery must give
//!
//! The workloads record the tree's contents at every flush, and the log
//! events each flush made. A superblock is written at most once per flush
//! (at `SUPERBLOCK_AT`: nothing else writes there), so for a cut at `k`:
//!
//! - the *floor* is the newest flush whose superblock write was followed by
//!   a successful sync before `k` (the empty tree if none): its state is
//!   durable, and nothing older may come back;
//! - a newer flush whose superblock write came before `k` may be what
//!   recovery finds: the one in flight, or one that returned `Err` after
//!   its superblock went out (the module docs of `file` allow that).
//!
//! Every crash image must open, hold exactly one of those states (never a
//! mix), verify, and keep working: writes, a flush, and a reopen that finds
//! them.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::FileStore;
use super::disk::Disk;
use super::layout::{self, DATA_START, Extent, SUPERBLOCK_AT};
use crate::store::{Address, Store};
use crate::{BTree, Config};

type Tree = BTree<u64, u64>;
type State = BTreeMap<u64, u64>;

/// What messages call the simulated file.
const PATH: &str = "/sim/powerloss.gbt";
/// The unit a disk writes atomically.
const SECTOR: u64 = 512;
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// xorshift64*: small and reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// One write as the disk received it.
#[derive(Clone, Debug)]
struct Write {
    offset: u64,
    bytes: Vec<u8>,
}

impl Write {
    fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// Whether it touches a superblock slot.
    fn is_superblock(&self) -> bool {
        self.offset < DATA_START && self.end() > SUPERBLOCK_AT[0]
    }
}

enum Event {
    Write(Write),
    /// A sync, and the durable image after it.
    Sync {
        ok: bool,
        durable: Arc<Vec<u8>>,
    },
}

/// What became of an unsynced write at a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Kept,
    Dropped,
    /// A prefix up to a sector boundary inside it (a write within one
    /// sector is atomic: dropped).
    TornAtSector,
    /// A strict prefix, cut at any byte.
    TornAtByte,
    /// Each sector kept or not, independently.
    SomeSectors,
    /// Where it grew the file, zeros; elsewhere the old bytes.
    Zeros,
}

const FATES: [Fate; 6] =
    [Fate::Kept, Fate::Dropped, Fate::TornAtSector, Fate::TornAtByte, Fate::SomeSectors, Fate::Zeros];

fn put(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + bytes.len());
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

/// Applies what `fate` leaves of `write` to `image`.
fn land(image: &mut Vec<u8>, write: &Write, fate: Fate, rng: &mut Rng) {
    let len = write.bytes.len() as u64;
    match fate {
        Fate::Kept => put(image, write.offset, &write.bytes),
        Fate::Dropped => {}
        Fate::TornAtSector => {
            let first = (write.offset / SECTOR + 1) * SECTOR;
            if first < write.end() {
                let cuts = (write.end() - first).div_ceil(SECTOR);
                let cut = first + SECTOR * rng.below(cuts);
                put(image, write.offset, &write.bytes[..(cut - write.offset) as usize]);
            }
        }
        Fate::TornAtByte => {
            let keep = rng.below(len) as usize;
            put(image, write.offset, &write.bytes[..keep]);
        }
        Fate::SomeSectors => {
            let mut at = write.offset;
            while at < write.end() {
                let stop = ((at / SECTOR + 1) * SECTOR).min(write.end());
                if rng.below(2) == 0 {
                    put(
                        image,
                        at,
                        &write.bytes[(at - write.offset) as usize..(stop - write.offset) as usize],
                    );
                }
                at = stop;
            }
        }
        Fate::Zeros => {
            if (image.len() as u64) < write.end() {
                image.resize(write.end() as usize, 0);
            }
        }
    }
}

/// A fault armed on a [`SimDisk`]: the call `at` says fails with `errno`.
/// A failed write writes a random prefix; a failed sync leaves its writes
/// on the disk as `lands` says.
#[derive(Clone, Copy, Debug)]
struct Fault {
    at: At,
    errno: i32,
    lands: Lands,
}

/// Which call a [`Fault`] hits, counted from when it was armed (0: the
/// next).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The nth write or sync.
    Call(u64),
    Write(u64),
    Sync(u64),
    /// The first write to a superblock slot.
    Superblock,
}

/// What a failed sync leaves of its writes.
#[derive(Clone, Copy, Debug)]
enum Lands {
    /// A random fate each.
    Some,
    All,
    Nothing,
}

struct Sim {
    /// What reads see.
    current: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Writes since the last sync.
    pending: Vec<Write>,
    /// Every write and sync, if logging.
    log: Option<Vec<Event>>,
    /// Write and sync calls since the fault was armed: all, writes, syncs.
    calls: [u64; 3],
    /// Write and sync calls in all.
    total_calls: u64,
    fault: Option<Fault>,
    /// Faults that fired.
    fired: u64,
    /// Writes that would grow the file past this many bytes write what
    /// fits and fail with ENOSPC: a full disk.
    capacity: Option<u64>,
    rng: Rng,
}

/// A simulated disk (see the module docs). Clones share the disk.
#[derive(Clone)]
struct SimDisk(Arc<Mutex<Sim>>);

impl SimDisk {
    fn new(image: Vec<u8>, log: bool, seed: u64) -> SimDisk {
        SimDisk(Arc::new(Mutex::new(Sim {
            durable: image.clone(),
            current: image,
            pending: Vec::new(),
            log: log.then(Vec::new),
            calls: [0; 3],
            total_calls: 0,
            fault: None,
            fired: 0,
            capacity: None,
            rng: Rng::new(seed),
        })))
    }

    /// A disk holding what `FileStore::open` writes into a new file.
    fn fresh(log: bool, seed: u64) -> SimDisk {
        let mut image = layout::encode_header();
        image.resize(DATA_START as usize, 0);
        SimDisk::new(image, log, seed)
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn events(&self) -> usize {
        self.sim().log.as_ref().map_or(0, Vec::len)
    }

    fn arm(&self, fault: Fault) {
        let mut sim = self.sim();
        sim.calls = [0; 3];
        sim.fault = Some(fault);
    }

    fn disarm(&self) {
        self.sim().fault = None;
    }

    fn fired(&self) -> u64 {
        self.sim().fired
    }

    fn set_capacity(&self, capacity: Option<u64>) {
        self.sim().capacity = capacity;
    }

    fn calls(&self) -> u64 {
        self.sim().total_calls
    }

    fn len_now(&self) -> u64 {
        self.sim().current.len() as u64
    }

    fn durable(&self) -> Vec<u8> {
        self.sim().durable.clone()
    }

    fn store(&self) -> FileStore {
        FileStore::with_disk(Path::new(PATH), Box::new(self.clone())).expect("open the sim file")
    }
}

impl Sim {
    /// The fault the call now (a write to a superblock slot or not, or a
    /// sync) meets, if one is armed for it.
    fn fault_now(&mut self, write: Option<bool>) -> Option<Fault> {
        let [call, writes, syncs] = self.calls;
        let kind = if write.is_some() { 1 } else { 2 };
        self.calls[0] += 1;
        self.calls[kind] += 1;
        self.total_calls += 1;
        let hit = |at: At| match at {
            At::Call(n) => n == call,
            At::Write(n) => write.is_some() && n == writes,
            At::Sync(n) => write.is_none() && n == syncs,
            At::Superblock => write == Some(true),
        };
        let fault = self.fault.filter(|fault| hit(fault.at))?;
        self.fault = None;
        self.fired += 1;
        Some(fault)
    }
}

impl Disk for SimDisk {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let sim = self.sim();
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= sim.current.len() as u64);
        let Some(end) = end else {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "read past the end of the sim file"));
        };
        buf.copy_from_slice(&sim.current[offset as usize..end as usize]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut sim = self.sim();
        let mut len = buf.len();
        let superblock = Write { offset, bytes: buf.to_vec() }.is_superblock();
        let mut errno = sim.fault_now(Some(superblock)).map(|fault| fault.errno);
        if errno.is_some() {
            len = sim.rng.below(len as u64 + 1) as usize;
        }
        if let Some(capacity) = sim.capacity
            && offset + len as u64 > capacity
        {
            len = capacity.saturating_sub(offset).min(len as u64) as usize;
            errno = Some(ENOSPC);
        }
        if len > 0 {
            let write = Write { offset, bytes: buf[..len].to_vec() };
            put(&mut sim.current, offset, &write.bytes);
            if let Some(log) = &mut sim.log {
                log.push(Event::Write(write.clone()));
            }
            sim.pending.push(write);
        }
        errno.map_or(Ok(()), |errno| Err(io::Error::from_raw_os_error(errno)))
    }

    fn sync(&self) -> io::Result<()> {
        let mut sim = self.sim();
        let fault = sim.fault_now(None);
        let errno = fault.map(|fault| fault.errno);
        let mut pending = std::mem::take(&mut sim.pending);
        let Sim { durable, rng, .. } = &mut *sim;
        if let Some(fault) = fault {
            // Writeback failed: each write reached the disk or not, for good.
            rng.shuffle(&mut pending);
            for write in &pending {
                let fate = match fault.lands {
                    Lands::Some => FATES[rng.below(FATES.len() as u64) as usize],
                    Lands::All => Fate::Kept,
                    Lands::Nothing => Fate::Dropped,
                };
                land(durable, write, fate, rng);
            }
        } else {
            for write in &pending {
                put(durable, write.offset, &write.bytes);
            }
        }
        if sim.log.is_some() {
            let durable = Arc::new(sim.durable.clone());
            sim.log.as_mut().expect("checked").push(Event::Sync { ok: errno.is_none(), durable });
        }
        errno.map_or(Ok(()), |errno| Err(io::Error::from_raw_os_error(errno)))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.sim().current.len() as u64)
    }
}

/// One `flush` of a workload: the tree's contents, the log events it made,
/// and whether it returned `Ok`.
struct Flushed {
    state: State,
    events: Range<usize>,
    ok: bool,
}

/// A workload's disk and flushes.
struct Run {
    disk: SimDisk,
    initial: Arc<Vec<u8>>,
    flushes: Vec<Flushed>,
    config: Config,
}

impl Run {
    fn new(seed: u64, config: Config) -> Run {
        Run::over(SimDisk::fresh(true, seed), config)
    }

    fn over(disk: SimDisk, config: Config) -> Run {
        let initial = Arc::new(disk.durable());
        Run { disk, initial, flushes: Vec::new(), config }
    }

    /// A tree over the disk as reads see it (a clean reopen, no crash).
    fn open(&self) -> Tree {
        Tree::open(self.disk.store(), self.config.clone()).expect("open the tree")
    }

    fn flush(&mut self, tree: &Tree, state: &State) -> Result<(), crate::Error> {
        let start = self.disk.events();
        let result = tree.flush();
        let events = start..self.disk.events();
        self.flushes.push(Flushed { state: state.clone(), events, ok: result.is_ok() });
        result
    }
}

/// Random inserts and removes over keys `0..keys`, values tagged with
/// `round` (so a state of another flush never passes for this one); now
/// and then a run of removes, which empties leaves and makes merges.
fn mutate(tree: &Tree, state: &mut State, rng: &mut Rng, round: u64, ops: u64, keys: u64) {
    for _ in 0..ops {
        let key = rng.below(keys);
        if rng.below(3) == 0 {
            assert_eq!(tree.remove(&key).unwrap(), state.remove(&key), "remove {key}");
        } else {
            let value = round << 32 | rng.below(1 << 20);
            assert_eq!(tree.insert(key, value).unwrap(), state.insert(key, value), "insert {key}");
        }
    }
    if rng.below(6) == 0 {
        let from = rng.below(keys);
        for key in from..(from + 12).min(keys) {
            assert_eq!(tree.remove(&key).unwrap(), state.remove(&key), "remove {key}");
        }
    }
}

/// `tree` holds exactly `state` (scans both ways, point reads, `len`) and
/// verifies.
fn check_same(tree: &Tree, state: &State) -> Result<(), String> {
    let found: State = tree.iter().collect::<Result<_, _>>().map_err(|e| format!("scan: {e}"))?;
    if &found != state {
        return Err(format!("holds {} entries, expected {}", found.len(), state.len()));
    }
    let backward: Vec<(u64, u64)> =
        tree.iter().rev().collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
    if !backward.into_iter().eq(state.iter().rev().map(|(&k, &v)| (k, v))) {
        return Err("a backward scan differs".into());
    }
    for (key, value) in state {
        if tree.get(key).map_err(|e| format!("get {key}: {e}"))? != Some(*value) {
            return Err(format!("get {key} differs"));
        }
    }
    if tree.len() != state.len() {
        return Err(format!("len() is {}, expected {}", tree.len(), state.len()));
    }
    let report = tree.verify().map_err(|e| format!("verify: {e}"))?;
    if !report.is_ok() || report.entries != state.len() {
        return Err(format!("verify: {report}"));
    }
    Ok(())
}

/// Opens a tree over `image`, which must hold one of `acceptable`; checks it
/// and that it keeps working. Returns the index of the state found.
fn recover(image: Vec<u8>, acceptable: &[&State], config: &Config, seed: u64) -> Result<usize, String> {
    let disk = SimDisk::new(image, false, seed);
    let store =
        FileStore::with_disk(Path::new(PATH), Box::new(disk.clone())).map_err(|e| format!("open: {e}"))?;
    let tree = Tree::open(store, config.clone()).map_err(|e| format!("open the tree: {e}"))?;
    let found: State = tree.iter().collect::<Result<_, _>>().map_err(|e| format!("scan: {e}"))?;
    let Some(which) = acceptable.iter().position(|state| **state == found) else {
        let sizes: Vec<usize> = acceptable.iter().map(|state| state.len()).collect();
        return Err(format!(
            "found {} entries, the state of no acceptable flush ({sizes:?} entries)",
            found.len()
        ));
    };
    let mut state = found;
    check_same(&tree, &state)?;
    let mut rng = Rng::new(seed);
    mutate(&tree, &mut state, &mut rng, 1 << 20, 10, 400);
    tree.flush().map_err(|e| format!("flush after recovery: {e}"))?;
    drop(tree);
    let tree = Tree::open(disk.store(), config.clone()).map_err(|e| format!("reopen after recovery: {e}"))?;
    check_same(&tree, &state).map_err(|why| format!("reopened after recovery: {why}"))?;
    Ok(which)
}

/// What [`check_cuts`] tried.
#[derive(Debug, Default)]
struct Tried {
    cuts: usize,
    /// Cuts right after a sync (the others are after a write, or at 0).
    after_sync: usize,
    images: usize,
    /// Images by the state they held: the floor, or a newer one.
    floor: usize,
    newer: usize,
}

/// Recovers from a cut after every event of `run`'s log (`every`-th
/// only, from a seeded offset, if `every > 1`), with `variants` crash images
/// per cut that has unsynced writes: all kept, all dropped, then random
/// fates in random order.
fn check_cuts(run: &Run, variants: usize, every: usize, seed: u64) -> Tried {
    let sim = run.disk.sim();
    let log = sim.log.as_ref().expect("a logging disk");
    // Per flush: its superblock write and the successful sync after it.
    let marks: Vec<(Option<usize>, Option<usize>)> = run
        .flushes
        .iter()
        .map(|flush| {
            let written =
                flush.events.clone().find(|&i| matches!(&log[i], Event::Write(w) if w.is_superblock()));
            let durable = written.and_then(|written| {
                (written + 1..flush.events.end).find(|&i| matches!(log[i], Event::Sync { ok: true, .. }))
            });
            (written, durable)
        })
        .collect();
    let empty = State::new();
    let mut rng = Rng::new(seed);
    let mut tried = Tried::default();
    let start = if every > 1 { rng.below(every as u64) as usize } else { 0 };
    for cut in (start..=log.len()).step_by(every) {
        // Events 0..cut happened.
        let floor = marks.iter().rposition(|&(_, durable)| durable.is_some_and(|d| d < cut));
        let mut acceptable = vec![floor.map_or(&empty, |f| &run.flushes[f].state)];
        for (f, &(written, _)) in marks.iter().enumerate().skip(floor.map_or(0, |f| f + 1)) {
            if written.is_some_and(|w| w < cut) {
                acceptable.push(&run.flushes[f].state);
            }
        }
        let last_sync = log[..cut].iter().rposition(|e| matches!(e, Event::Sync { .. }));
        let base = match last_sync {
            Some(i) => match &log[i] {
                Event::Sync { durable, .. } => Arc::clone(durable),
                Event::Write(_) => unreachable!(),
            },
            None => Arc::clone(&run.initial),
        };
        let pending: Vec<&Write> = log[last_sync.map_or(0, |i| i + 1)..cut]
            .iter()
            .map(|e| match e {
                Event::Write(write) => write,
                Event::Sync { .. } => unreachable!(),
            })
            .collect();
        tried.cuts += 1;
        tried.after_sync += usize::from(cut > 0 && last_sync == Some(cut - 1));
        let images = if pending.is_empty() { 1 } else { variants };
        for variant in 0..images {
            let mut image = base.to_vec();
            let mut order: Vec<usize> = (0..pending.len()).collect();
            let fates: Vec<Fate> = match variant {
                0 => vec![Fate::Kept; pending.len()],
                1 => vec![Fate::Dropped; pending.len()],
                _ => {
                    rng.shuffle(&mut order);
                    order.iter().map(|_| FATES[rng.below(FATES.len() as u64) as usize]).collect()
                }
            };
            for (&i, &fate) in order.iter().zip(&fates) {
                land(&mut image, pending[i], fate, &mut rng);
            }
            let image_seed = rng.next();
            match recover(image, &acceptable, &run.config, image_seed) {
                Ok(0) => tried.floor += 1,
                Ok(_) => tried.newer += 1,
                Err(why) => {
                    let writes: Vec<String> = order
                        .iter()
                        .zip(&fates)
                        .map(|(&i, fate)| {
                            format!("{}+{} {fate:?}", pending[i].offset, pending[i].bytes.len())
                        })
                        .collect();
                    panic!(
                        "cut after event {cut} of {} (variant {variant}, seed {image_seed:#x}): {why}\n\
                         floor flush {floor:?}, {} acceptable states; unsynced writes (in the order \
                         applied): {writes:?}",
                        log.len(),
                        acceptable.len(),
                    );
                }
            }
            tried.images += 1;
        }
    }
    tried
}

fn tiny() -> Config {
    Config::new().leaf_capacity(4).branch_capacity(4)
}

/// A seeded workload: rounds of inserts and removes, each ending in a
/// flush, and now and then a clean reopen (so later checkpoints run over
/// ghosts, freeing records they never loaded).
fn workload(run: &mut Run, rng: &mut Rng, rounds: u64, keys: u64) -> (Tree, State) {
    let mut tree = run.open();
    let mut state = State::new();
    for round in 1..=rounds {
        let ops = 1 + rng.below(30);
        mutate(&tree, &mut state, rng, round, ops, keys);
        run.flush(&tree, &state).expect("flush");
        if rng.below(5) == 0 {
            drop(tree);
            tree = run.open();
        }
    }
    (tree, state)
}

#[test]
#[cfg_attr(miri, ignore = "whole-tree workloads take hours under Miri")]
fn every_cut_point_of_a_workload_recovers_a_flushed_state() {
    let started = Instant::now();
    let mut total = Tried::default();
    for seed in [1, 2] {
        let mut run = Run::new(seed, tiny());
        let mut rng = Rng::new(seed);
        let (tree, state) = workload(&mut run, &mut rng, 30, 300);
        drop(tree);
        check_same(&run.open(), &state).unwrap();
        let tried = check_cuts(&run, 6, 1, seed);
        assert!(tried.newer > 0 && tried.floor > 0, "{tried:?}");
        println!("seed {seed}: {} events, {} flushes: {tried:?}", run.disk.events(), run.flushes.len());
        total.cuts += tried.cuts;
        total.after_sync += tried.after_sync;
        total.images += tried.images;
        total.floor += tried.floor;
        total.newer += tried.newer;
    }
    println!("every cut point: {total:?} in {:?}", started.elapsed());
}

/// The error of a flush that met an injected `errno`: it names the file
/// and the OS error.
#[track_caller]
fn assert_failed(result: Result<(), crate::Error>, errno: i32) {
    let error = result.expect_err("the flush met a failing disk");
    let message = error.to_string();
    let os = io::Error::from_raw_os_error(errno).to_string();
    assert!(message.contains(PATH) && message.contains(&os), "{message}");
}

/// A write or sync that fails at any point of a checkpoint: each write in
/// turn (until a checkpoint makes fewer), the superblock's write, and each
/// of the two syncs, three times over, in three passes (EIO, ENOSPC, EIO;
/// failed syncs landing some, all, none of their writes). The flush returns
/// `Err` naming the file and the error, the tree keeps everything in
/// memory, a crash right then recovers the last good checkpoint (or the
/// failed one if its superblock went out), the next flush succeeds and a
/// reopen finds everything; and every cut point of the whole run (failed
/// attempts and their retries included) recovers a flushed state.
#[test]
#[cfg_attr(miri, ignore = "whole-tree workloads take hours under Miri")]
fn a_failure_at_any_call_of_a_checkpoint_keeps_the_last_one() {
    let started = Instant::now();
    for (seed, errno, lands) in [(3, EIO, Lands::Some), (4, ENOSPC, Lands::All), (5, EIO, Lands::Nothing)] {
        let mut run = Run::new(seed, tiny());
        let mut rng = Rng::new(seed);
        let (mut tree, mut state) = workload(&mut run, &mut rng, 6, 300);
        let mut writes = 0..u64::MAX;
        let mut rest = [At::Superblock, At::Sync(0), At::Sync(1)].repeat(3).into_iter();
        let mut failed = 0;
        let mut again = None;
        for round in 100.. {
            let Some(at) = again.take().or_else(|| writes.next().map(At::Write)).or_else(|| rest.next())
            else {
                break;
            };
            let ops = 1 + rng.below(30);
            mutate(&tree, &mut state, &mut rng, round, ops, 300);
            let (fired, events) = (run.disk.fired(), run.disk.events());
            run.disk.arm(Fault { at, errno, lands });
            let result = run.flush(&tree, &state);
            run.disk.disarm();
            if run.disk.events() == events {
                // Nothing written since the last commit (the ops changed
                // nothing, or a writer committed them): no checkpoint.
                result.expect("a flush with nothing to write");
                again = Some(at);
                continue;
            }
            if run.disk.fired() == fired {
                // The checkpoint made fewer writes: every one was tried.
                assert!(matches!(at, At::Write(n) if n >= 3), "{at:?} never came");
                result.expect("flush");
                writes = 0..0;
                continue;
            }
            assert_failed(result, errno);
            failed += 1;
            assert!(tree.health().is_err());
            check_same(&tree, &state).unwrap_or_else(|why| panic!("after a failed flush: {why}"));
            // A crash now gives the last good checkpoint or, if its
            // superblock went out, the failed one.
            let last_ok = run.flushes.iter().rev().find(|f| f.ok).map(|f| &f.state).unwrap();
            let found = recover(run.disk.durable(), &[last_ok, &state], &run.config, rng.next())
                .unwrap_or_else(|why| panic!("a crash after failing at {at:?}: {why}"));
            let superblock_written = run.flushes.last().unwrap().events.clone().any(
                |i| matches!(&run.disk.sim().log.as_ref().unwrap()[i], Event::Write(w) if w.is_superblock()),
            );
            assert!(found == 0 || superblock_written, "the failed checkpoint without its superblock");
            // The disk recovers.
            let ops = 1 + rng.below(10);
            mutate(&tree, &mut state, &mut rng, round, ops, 300);
            run.flush(&tree, &state).expect("a flush after the disk recovered");
            assert!(tree.health().is_ok());
            if round % 3 == 0 {
                drop(tree);
                tree = run.open();
                check_same(&tree, &state).unwrap_or_else(|why| panic!("reopened after {at:?}: {why}"));
            }
        }
        drop(tree);
        check_same(&run.open(), &state).unwrap();
        let tried = check_cuts(&run, 3, 1, seed);
        println!(
            "errno {errno}, failed syncs land {lands:?}: {failed} failed flushes; {} events: {tried:?}",
            run.disk.events()
        );
    }
    println!("failing calls: {:?}", started.elapsed());
}

/// A full disk (writes past a length fail with ENOSPC, having written what
/// fits): checkpoints fail while it is full, reads and writes go on in
/// memory, and once there is space again the next flush holds everything.
#[test]
#[cfg_attr(miri, ignore = "whole-tree workloads take hours under Miri")]
fn a_full_disk_fails_checkpoints_until_space_comes_back() {
    let mut run = Run::new(5, tiny());
    let mut rng = Rng::new(5);
    let (tree, mut state) = workload(&mut run, &mut rng, 8, 300);
    let full = run.disk.len_now();
    run.disk.set_capacity(Some(full));
    let mut failures = 0;
    for round in 0..12 {
        // New keys: the tree grows, so the file must sooner or later.
        for key in 0..40 {
            let key = 1000 + round * 40 + key;
            tree.insert(key, round).unwrap();
            state.insert(key, round);
        }
        let result = run.flush(&tree, &state);
        if result.is_err() {
            assert_failed(result, ENOSPC);
            failures += 1;
        } else {
            assert_eq!(failures, 0, "a flush succeeded on a full disk after failing");
        }
        check_same(&tree, &state).unwrap();
    }
    assert!(failures >= 8, "{failures} failed flushes of 12");
    assert_eq!(run.disk.len_now(), full);
    run.disk.set_capacity(None);
    run.flush(&tree, &state).expect("a flush once there is space");
    drop(tree);
    check_same(&run.open(), &state).unwrap();
    let tried = check_cuts(&run, 4, 1, 5);
    println!("full disk: {failures} failed flushes; {tried:?}");
}

/// Rounds of updates, each flushed after `failures` failed attempts (a
/// fault at a random call of the checkpoint); the largest file length in
/// the first and the second half of the rounds.
fn steady(failures: u64, seed: u64) -> (u64, u64, u64) {
    let mut run = Run::over(SimDisk::fresh(false, seed), tiny());
    let mut rng = Rng::new(seed);
    let tree = run.open();
    let mut state = State::new();
    for key in 0..200 {
        tree.insert(key, 0).unwrap();
        state.insert(key, 0);
    }
    let mut calls = run.disk.calls();
    run.flush(&tree, &state).unwrap();
    calls = run.disk.calls() - calls;
    let (mut halves, mut fired) = ([0, 0], 0);
    for round in 0..60 {
        for _ in 0..20 {
            let key = rng.below(200);
            tree.insert(key, round).unwrap();
            state.insert(key, round);
        }
        for _ in 0..failures {
            let errno = [EIO, ENOSPC][rng.below(2) as usize];
            let before = run.disk.fired();
            run.disk.arm(Fault { at: At::Call(rng.below(calls)), errno, lands: Lands::Some });
            let result = run.flush(&tree, &state);
            run.disk.disarm();
            if run.disk.fired() > before {
                assert_failed(result, errno);
                fired += 1;
            }
        }
        let before = run.disk.calls();
        run.flush(&tree, &state).unwrap();
        calls = run.disk.calls() - before;
        let half = &mut halves[round as usize / 30];
        *half = (*half).max(run.disk.len_now());
    }
    drop(tree);
    check_same(&run.open(), &state).unwrap();
    (halves[0], halves[1], fired)
}

/// Space taken by failed attempts comes back with the next commit: under
/// three failures per checkpoint the file levels off, near the size it
/// has without failures.
#[test]
#[cfg_attr(miri, ignore = "whole-tree workloads take hours under Miri")]
fn failed_attempts_leak_no_space() {
    let (_, clean, _) = steady(0, 6);
    let (first, second, fired) = steady(3, 6);
    println!("file bytes: {clean} without failures; {first} then {second} with {fired} failed attempts");
    assert!(fired > 100, "{fired} failures fired");
    assert!(second <= first + first / 10, "the file keeps growing: {first} then {second} bytes");
    assert!(second <= 3 * clean, "{second} bytes with failures, {clean} without");
}

/// Random inserts and removes, one at a time; a commit a writer made on
/// its own (when much was spilled since the last one) is noted as a flush
/// of the state after the write that made it.
fn mutate_noting_commits(run: &mut Run, tree: &Tree, state: &mut State, rng: &mut Rng, round: u64, ops: u64) {
    for _ in 0..ops {
        let (commits, start) = (tree.stats().checkpoints, run.disk.events());
        let key = rng.below(400);
        if rng.below(3) == 0 {
            assert_eq!(tree.remove(&key).unwrap(), state.remove(&key), "remove {key}");
        } else {
            let value = round << 32 | rng.below(1 << 20);
            assert_eq!(tree.insert(key, value).unwrap(), state.insert(key, value), "insert {key}");
        }
        if tree.stats().checkpoints != commits {
            let events = start..run.disk.events();
            run.flushes.push(Flushed { state: state.clone(), events, ok: true });
        }
    }
}

/// Spills (`engine/checkpoint.rs`): under a budget far below the tree,
/// writers write dirty nodes back without a commit, evict them and read
/// them back, between flushes that now and then fail at their first sync
/// (the records written before it may then never reach the disk, though
/// reads still see them). The spilled records stay the tree's through the
/// failed attempt: a retry, more writes into the space freed meanwhile,
/// and a reopen find everything; a crash after the retry recovers it; and
/// every cut point of the run, inside spills too, recovers a flushed state.
#[test]
#[cfg_attr(miri, ignore = "whole-tree workloads take hours under Miri")]
fn spilled_nodes_outlive_failed_syncs_and_power_cuts() {
    let started = Instant::now();
    for (seed, lands) in [(21, Lands::Some), (22, Lands::Nothing)] {
        let config = tiny().memory_budget(3000);
        let mut run = Run::new(seed, config);
        let mut rng = Rng::new(seed);
        let mut tree = run.open();
        let mut state = State::new();
        let (mut failed, mut spills, mut evictions) = (0, 0, 0);
        for round in 1..=30 {
            let ops = 40 + rng.below(80);
            mutate_noting_commits(&mut run, &tree, &mut state, &mut rng, round, ops);
            if round % 3 == 0 {
                run.disk.arm(Fault { at: At::Sync(0), errno: EIO, lands });
                let start = run.disk.events();
                let result = run.flush(&tree, &state);
                run.disk.disarm();
                // Nothing written: a writer's commit covered every write.
                if result.is_err() || run.disk.events() != start {
                    assert_failed(result, EIO);
                    failed += 1;
                    check_same(&tree, &state).unwrap_or_else(|why| panic!("after a failed flush: {why}"));
                    let ops = 1 + rng.below(40);
                    mutate_noting_commits(&mut run, &tree, &mut state, &mut rng, round, ops);
                }
            }
            run.flush(&tree, &state).expect("flush");
            let found = recover(run.disk.durable(), &[&state], &run.config, rng.next())
                .unwrap_or_else(|why| panic!("a crash after flush {round}: {why}"));
            assert_eq!(found, 0);
            if rng.below(8) == 0 {
                spills += tree.stats().spills;
                evictions += tree.stats().evictions;
                drop(tree);
                tree = run.open();
            }
        }
        let stats = tree.stats();
        (spills, evictions) = (spills + stats.spills, evictions + stats.evictions);
        assert!(spills > 10 && evictions > 100, "{spills} spills, {evictions} evictions");
        assert!(failed >= 5, "{failed} failed flushes of 10");
        check_same(&tree, &state).unwrap();
        drop(tree);
        check_same(&run.open(), &state).unwrap();
        let tried = check_cuts(&run, 2, 5, seed);
        println!("failed syncs land {lands:?}: {spills} spills, {failed} failed flushes; {tried:?}");
    }
    println!("spills: {:?}", started.elapsed());
}

/// A double fault: a sync fails, dropping a settled frame on its way to the
/// disk, and the page cache then loses that page too, so reading it back
/// finds what the disk holds there. When that is an older record of the same
/// length (space the frame reused), its checksum is valid; the next commit
/// must fail rather than name the older record as the settled one.
#[test]
fn a_settled_frame_lost_to_an_older_record_fails_the_next_commit() {
    let disk = SimDisk::fresh(false, 7);
    let store = disk.store();
    let commit = |store: &FileStore| {
        store.seal().and_then(|()| store.sync()).and_then(|()| store.write_commit(b"commit"))
    };
    commit(&store).unwrap();
    let new = store.append(&[2; 200]).unwrap();
    store.settle().unwrap();
    disk.arm(Fault { at: At::Sync(0), errno: EIO, lands: Lands::Nothing });
    let failed = store.seal().and_then(|()| store.sync()).expect_err("the sync met a failing disk");
    let eio = io::Error::from_raw_os_error(EIO).to_string();
    assert!(failed.to_string().contains(&eio), "{failed}");
    // The page cache falls back to the disk, which holds an older record of
    // the same length there.
    let extent = Extent::of(new).expect("a record's address");
    let older = layout::encode_frame(layout::Kind::Node, &[1; 200]);
    assert_eq!(older.len() as u64, extent.len);
    {
        let sim = &mut *disk.sim();
        for image in [&mut sim.durable, &mut sim.current] {
            put(image, extent.offset, &older);
        }
    }
    match commit(&store) {
        Err(e) => assert!(e.to_string().contains("is lost"), "{e}"),
        Ok(()) => panic!("committed {new:?}, now {:?}", &store.read(new).unwrap()[..4]),
    }
}

/// A spill beside a commit (`Store::seal`): what is appended and freed after
/// the seal belongs to the next commit. The commit does not release a record
/// freed after its seal (it still names it: its space is not reused, and after
/// a power cut it reads whole); the next commit does. When the sealed
/// commit's sync fails, what it sealed goes to the next commit with the rest.
#[test]
fn what_is_freed_after_a_seal_is_the_next_commits() {
    let commit = |store: &FileStore, record: &[u8]| {
        store.seal().and_then(|()| store.sync()).and_then(|()| store.write_commit(record))
    };
    let disk = SimDisk::fresh(false, 13);
    let store = disk.store();
    let named = store.append(&[1; 300]).unwrap();
    commit(&store, b"first").unwrap();
    let sealed = store.append(&[2; 300]).unwrap();
    store.seal().unwrap();
    // The spill, between the seal and the sync.
    let spilled = store.append(&[3; 300]).unwrap();
    store.free(named).unwrap();
    store.settle().unwrap();
    store.sync().and_then(|()| store.write_commit(b"second")).unwrap();
    for _ in 0..8 {
        assert_ne!(store.append(&[4; 300]).unwrap(), named, "a record the last commit names was reused");
    }
    store.settle().unwrap();
    let reopened = SimDisk::new(disk.durable(), false, 14).store();
    assert_eq!(reopened.read_commit().unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(reopened.read(named).unwrap(), [1; 300]);
    assert_eq!(reopened.read(sealed).unwrap(), [2; 300]);
    drop(reopened);
    commit(&store, b"third").unwrap();
    let reused = (0..8).map(|_| store.append(&[5; 300]).unwrap()).any(|a| a == named);
    assert!(reused, "the commit after the spill did not free its record");

    // A failed sync: the sealed record and the spilled one both go to the
    // next commit.
    let sealed = store.append(&[6; 300]).unwrap();
    store.seal().unwrap();
    store.free(spilled).unwrap();
    let spilled = store.append(&[7; 300]).unwrap();
    store.settle().unwrap();
    disk.arm(Fault { at: At::Sync(0), errno: EIO, lands: Lands::Nothing });
    store.sync().expect_err("the sync met a failing disk");
    disk.disarm();
    commit(&store, b"fourth").unwrap();
    let reopened = SimDisk::new(disk.durable(), false, 15).store();
    assert_eq!(reopened.read_commit().unwrap().as_deref(), Some(&b"fourth"[..]));
    assert_eq!(reopened.read(sealed).unwrap(), [6; 300]);
    assert_eq!(reopened.read(spilled).unwrap(), [7; 300]);
}

/// `read_into` reuses the caller's buffer: whatever it held before (a
/// longer record, say), the slice returned is the record, before its frame
/// is written out and after, and a damaged one is an error as with `read`.
#[test]
fn read_into_a_reused_buffer_gives_each_record_whole() {
    let disk = SimDisk::fresh(false, 11);
    let store = disk.store();
    let records: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; [900, 3, 200, 0, 4000, 17][i as usize]]).collect();
    let addresses: Vec<Address> = records.iter().map(|r| store.append(r).unwrap()).collect();
    let mut buf = vec![0xEE; 5000];
    for _written in [false, true] {
        for (record, &address) in records.iter().zip(&addresses).rev() {
            assert_eq!(store.read_into(address, &mut buf).unwrap(), &record[..]);
            assert_eq!(store.read(address).unwrap(), *record);
        }
        store.seal().and_then(|()| store.sync()).and_then(|()| store.write_commit(b"commit")).unwrap();
    }
    let extent = Extent::of(addresses[2]).expect("a record's address");
    {
        let sim = &mut *disk.sim();
        sim.current[extent.offset as usize + 20] ^= 1;
    }
    let damaged = store.read_into(addresses[2], &mut buf).expect_err("a flipped bit");
    assert_eq!(damaged.kind(), io::ErrorKind::InvalidData, "{damaged}");
    assert_eq!(store.read_into(addresses[1], &mut buf).unwrap(), &records[1][..]);
}
