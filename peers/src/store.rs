//! What each store implements for the workloads (`workload.rs`), and the
//! one write loop that sled and ghostbtree share.
//!
//! Every store keeps its files in a directory of its own, so the harness
//! copies, drops from the page cache and measures a store's directory
//! without knowing its file names.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::data::{self, Permutation, Rng};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub trait Db: Sized + Sync {
    /// Opens the store in `dir`, creating it when empty, with a cache of
    /// `budget` bytes.
    fn open(dir: &Path, budget: usize) -> Result<Self>;

    /// Inserts `(keys.at(i), value(keys.at(i), 0))` for every `i` in order,
    /// then makes everything durable.
    fn load(&self, keys: &Permutation) -> Result<()>;

    /// A reader for one thread (redb: a read transaction and its table).
    fn reader(&self) -> Result<impl Reader + '_>;

    /// Calls `f` on every entry in key order.
    fn scan(&self, f: &mut dyn FnMut(u64, u64)) -> Result<()>;

    /// Runs `threads` writers over `work` until it ends, with a durable
    /// commit every `every` and a last one after the writers stop.
    fn write(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount>;

    /// A clean close: everything durable, files released.
    fn close(self) -> Result<()>;

    /// The store's own counters worth logging (ghostbtree's `Stats`).
    fn counters(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// The bytes the store counts against its budget now, if it says
    /// (ghostbtree's `resident_bytes`).
    fn resident(&self) -> Option<u64> {
        None
    }
}

pub trait Reader {
    fn get(&mut self, key: u64) -> Result<Option<u64>>;
}

/// Writes done by [`Db::write`]: only those that returned, all covered by
/// the last durable commit.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteCount {
    pub ops: u64,
    pub commits: u64,
    /// Time spent in durable commits (flushes), summed.
    pub commit_time: Duration,
}

/// The writes to make: random keys until stopped, or every key in a fresh
/// random order `passes` times.
pub struct Work {
    n: u64,
    stop: AtomicBool,
    next: AtomicU64,
    passes: Option<Vec<Permutation>>,
    seed: u64,
}

impl Work {
    /// Random updates (each a new version of a random key) until [`Work::stop`].
    pub fn random(n: u64, seed: u64) -> Work {
        Work { n, stop: AtomicBool::new(false), next: AtomicU64::new(0), passes: None, seed }
    }

    /// Every key rewritten once per pass, each pass in its own random order.
    pub fn passes(n: u64, passes: u64, seed: u64) -> Work {
        let perms = (0..passes).map(|p| Permutation::new(n, seed ^ ((p + 1) * 0x5151))).collect();
        Work { n, stop: AtomicBool::new(false), next: AtomicU64::new(0), passes: Some(perms), seed }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A per-thread source of writes.
    pub fn thread(&self, index: usize) -> WorkThread<'_> {
        WorkThread { work: self, rng: Rng::new(self.seed ^ ((index as u64 + 1) * 0x1234_5678_9abc)) }
    }
}

pub struct WorkThread<'a> {
    work: &'a Work,
    rng: Rng,
}

impl WorkThread<'_> {
    /// The next `(key, value)` to write, or `None` when the work is over.
    pub fn next(&mut self) -> Option<(u64, u64)> {
        if self.work.stopped() {
            return None;
        }
        match &self.work.passes {
            None => {
                let key = self.rng.below(self.work.n);
                let version = 1 + self.rng.below(1 << 20);
                Some((key, data::value(key, version)))
            }
            Some(perms) => {
                let i = self.work.next.fetch_add(1, Ordering::Relaxed);
                let pass = i / self.work.n;
                let perm = perms.get(pass as usize)?;
                let key = perm.at(i % self.work.n);
                Some((key, data::value(key, pass + 1)))
            }
        }
    }
}

/// The write loop of stores whose writes are independent of commits (sled,
/// ghostbtree): `threads` writers call `insert`, one flusher thread calls
/// `durable` every `every` (at once again if a flush took longer), and once
/// more after the writers are done.
pub fn concurrent_writes(
    threads: usize,
    work: &Work,
    every: Duration,
    insert: &(dyn Fn(u64, u64) -> Result<()> + Sync),
    durable: &(dyn Fn() -> Result<()> + Sync),
) -> Result<WriteCount> {
    let writers_done = AtomicBool::new(false);
    thread::scope(|s| {
        let flusher = s.spawn(|| -> Result<WriteCount> {
            let mut count = WriteCount::default();
            let mut next = Instant::now() + every;
            while !writers_done.load(Ordering::Acquire) {
                let now = Instant::now();
                if now < next {
                    thread::sleep((next - now).min(Duration::from_millis(5)));
                    continue;
                }
                next = now + every;
                durable()?;
                count.commits += 1;
                count.commit_time += now.elapsed();
            }
            Ok(count)
        });
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<u64> {
                    let mut source = work.thread(t);
                    let mut ops = 0;
                    while let Some((k, v)) = source.next() {
                        insert(k, v)?;
                        ops += 1;
                    }
                    Ok(ops)
                })
            })
            .collect();
        let mut ops = 0;
        let mut failed = None;
        for w in writers {
            match w.join().expect("writer panicked") {
                Ok(n) => ops += n,
                Err(e) => failed = Some(e),
            }
        }
        writers_done.store(true, Ordering::Release);
        let mut count = flusher.join().expect("flusher panicked")?;
        if let Some(e) = failed {
            return Err(e);
        }
        // The last commit, covering every write counted.
        let start = Instant::now();
        durable()?;
        count.commits += 1;
        count.commit_time += start.elapsed();
        count.ops = ops;
        Ok(count)
    })
}
