//! The workloads, each run in a child process of its own over one store
//! (`peers __child STORE WORKLOAD ...`). A child prints its figures as one
//! `RESULT name=value ...` line; a wrong value or a lost key exits with
//! status 3, which aborts the whole run.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::data::{self, Permutation, Rng};
use crate::os;
use crate::store::{Db, Reader, Result, Work};

/// What a child is told.
pub struct Job<'a> {
    pub dir: &'a Path,
    pub keys: u64,
    pub budget: usize,
    pub threads: usize,
    pub secs: f64,
    pub seed: u64,
}

/// The figures a child reports, in order.
#[derive(Default)]
pub struct Figures(Vec<(&'static str, f64)>);

impl Figures {
    fn set(&mut self, name: &'static str, value: f64) {
        self.0.push((name, value));
    }

    fn counters<D: Db>(&mut self, db: &D) {
        self.0.extend(db.counters());
    }

    pub fn print(&self) {
        let mut line = String::from("RESULT");
        for (k, v) in &self.0 {
            line.push_str(&format!(" {k}={v}"));
        }
        println!("{line}");
    }
}

/// The seed of the load's key order, shared by every store.
pub const LOAD_SEED: u64 = 0x6b65_7973;

/// Commit interval of the durable write workloads.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Rewrites of every key in the file-size workload.
pub const REWRITE_PASSES: u64 = 3;

pub fn run<D: Db>(workload: &str, job: &Job<'_>) -> Result<Figures> {
    let mut fig = Figures::default();
    fig.set("rss_start", os::rss() as f64);
    match workload {
        "load" => load::<D>(job, &mut fig)?,
        "open" => open::<D>(job, &mut fig)?,
        "kill-writer" => kill_writer::<D>(job)?,
        "reads" => reads::<D>(job, &mut fig)?,
        "writes" => writes::<D>(job, &mut fig)?,
        "scan" => scan::<D>(job, &mut fig)?,
        "rss" => rss::<D>(job, &mut fig)?,
        "rewrite" => rewrite::<D>(job, &mut fig)?,
        other => return Err(format!("unknown workload {other:?}").into()),
    }
    fig.set("rss_peak", os::proc_status_bytes("VmHWM") as f64);
    Ok(fig)
}

/// Bulk load: every key once, in the shared random order, one thread, then
/// a durable commit and a clean close.
fn load<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let keys = Permutation::new(job.keys, LOAD_SEED);
    let start = Instant::now();
    let db = D::open(job.dir, job.budget)?;
    db.load(&keys)?;
    fig.counters(&db);
    db.close()?;
    let secs = start.elapsed().as_secs_f64();
    fig.set("secs", secs);
    fig.set("mkeys", job.keys as f64 / secs / 1e6);
    fig.set("file_bytes", os::dir_bytes(job.dir)?.0 as f64);
    Ok(())
}

/// Open and first get (of a random key), timed; then, untimed, a full scan
/// that every key is there with a value of its own.
fn open<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let key = Rng::new(job.seed).below(job.keys);
    let start = Instant::now();
    let db = D::open(job.dir, job.budget)?;
    let opened = start.elapsed();
    let got = db.reader()?.get(key)?;
    let total = start.elapsed();
    data::check(key, got);
    fig.set("open_ms", opened.as_secs_f64() * 1e3);
    fig.set("get_ms", (total - opened).as_secs_f64() * 1e3);
    fig.set("total_ms", total.as_secs_f64() * 1e3);
    check_all(&db, job.keys)?;
    db.close()
}

/// Scans the whole store: keys `0..n` in order, each with a value of its
/// own (of write `version`, when given).
fn check_all<D: Db>(db: &D, n: u64) -> Result<()> {
    check_all_of(db, n, None)
}

fn check_all_of<D: Db>(db: &D, n: u64, version: Option<u64>) -> Result<()> {
    let mut expected = 0u64;
    db.scan(&mut |k, v| {
        let right = match version {
            Some(version) => v == data::value(k, version),
            None => data::value_matches(k, v),
        };
        if k != expected || !right {
            data::wrong(format_args!("scan: entry ({k}, {v}) where key {expected} was due"));
        }
        expected += 1;
    })?;
    if expected != n {
        data::wrong(format_args!("scan: {expected} entries, {n} loaded"));
    }
    Ok(())
}

/// Random durable writes that never stop: the parent kills this process
/// (SIGKILL) once it has said it is writing.
fn kill_writer<D: Db>(job: &Job<'_>) -> Result<()> {
    let db = D::open(job.dir, job.budget)?;
    let work = Work::random(job.keys, job.seed);
    println!("WRITING");
    std::io::stdout().flush()?;
    db.write(job.threads, &work, COMMIT_EVERY)?;
    Err("the writes of kill-writer ended".into())
}

/// Random gets on `threads` threads for `secs`, each checked.
fn reads<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let db = D::open(job.dir, job.budget)?;
    let (ops, elapsed) = read_for(&db, job, job.threads, job.secs)?;
    fig.set("ops", ops as f64);
    fig.set("secs", elapsed);
    fig.set("mops", ops as f64 / elapsed / 1e6);
    fig.set("rss_end", os::rss() as f64);
    fig.counters(&db);
    db.close()
}

/// Random checked gets on `threads` threads for `secs`: (gets, seconds).
fn read_for<D: Db>(db: &D, job: &Job<'_>, threads: usize, secs: f64) -> Result<(u64, f64)> {
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Instant::now();
    thread::scope(|s| -> Result<()> {
        let readers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, total) = (&stop, &total);
                s.spawn(move || -> Result<()> {
                    let mut rng = Rng::new(job.seed ^ ((t as u64 + 1) * 0x9e37));
                    let mut reader = db.reader()?;
                    let mut ops = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = rng.below(job.keys);
                        data::check(key, reader.get(key)?);
                        ops += 1;
                    }
                    total.fetch_add(ops, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("reader panicked")?;
        }
        Ok(())
    })?;
    Ok((total.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
}

/// Random durable writes on `threads` threads for `secs` (commit every
/// 100 ms, a last one after), then a check of 10,000 random keys. RSS, and
/// the bytes the store counts against its budget where it says, are sampled
/// every 5 ms while the writers run.
fn writes<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let db = D::open(job.dir, job.budget)?;
    let work = Work::random(job.keys, job.seed);
    let (rss_max, resident_max) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let count = thread::scope(|s| {
        s.spawn(|| {
            let end = start + Duration::from_secs_f64(job.secs);
            while Instant::now() < end {
                rss_max.fetch_max(os::rss(), Ordering::Relaxed);
                if let Some(resident) = db.resident() {
                    resident_max.fetch_max(resident, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
            work.stop();
        });
        db.write(job.threads, &work, COMMIT_EVERY)
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    fig.set("rss_max", rss_max.load(Ordering::Relaxed) as f64);
    if db.resident().is_some() {
        fig.set("resident_over_budget", resident_max.load(Ordering::Relaxed) as f64 / job.budget as f64);
    }
    fig.set("ops", count.ops as f64);
    fig.set("secs", elapsed);
    fig.set("kops", count.ops as f64 / elapsed / 1e3);
    fig.set("commits", count.commits as f64);
    fig.set("commit_ms", count.commit_time.as_secs_f64() * 1e3 / count.commits.max(1) as f64);
    let mut rng = Rng::new(job.seed ^ 0xc4ec);
    let mut reader = db.reader()?;
    for _ in 0..10_000 {
        let key = rng.below(job.keys);
        data::check(key, reader.get(key)?);
    }
    drop(reader);
    fig.counters(&db);
    db.close()
}

/// A full scan, checked.
fn scan<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let db = D::open(job.dir, job.budget)?;
    let start = Instant::now();
    check_all(&db, job.keys)?;
    let secs = start.elapsed().as_secs_f64();
    fig.set("secs", secs);
    fig.set("mops", job.keys as f64 / secs / 1e6);
    db.close()
}

/// Resident memory: sampled every 2 ms from open through random gets on 2
/// threads for `secs` and a full scan.
fn rss<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    let before = os::rss();
    let done = AtomicBool::new(false);
    let max = AtomicU64::new(before);
    let max_reads = AtomicU64::new(before);
    type Counters = Vec<(&'static str, f64)>;
    let (after_reads, end, counters) = thread::scope(|s| -> Result<(u64, u64, Counters)> {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                max.fetch_max(os::rss(), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        });
        let result = (|| {
            let db = D::open(job.dir, job.budget)?;
            read_for(&db, job, 2, job.secs)?;
            let after_reads = os::rss();
            // The peak so far, and from here on the scan's.
            max_reads.store(max.swap(after_reads, Ordering::Relaxed).max(after_reads), Ordering::Relaxed);
            check_all(&db, job.keys)?;
            let end = os::rss();
            let counters = db.counters();
            db.close()?;
            Ok((after_reads, end, counters))
        })();
        done.store(true, Ordering::Relaxed);
        result
    })?;
    fig.0.extend(counters);
    fig.set("budget", job.budget as f64);
    fig.set("rss_before", before as f64);
    fig.set("rss_after_reads", after_reads as f64);
    fig.set("rss_after_scan", end as f64);
    let (max_reads, max_scan) = (max_reads.load(Ordering::Relaxed), max.load(Ordering::Relaxed));
    fig.set("rss_max_reads", max_reads as f64);
    fig.set("rss_max_scan", max_scan as f64);
    let max = max_reads.max(max_scan);
    fig.set("rss_max", max as f64);
    fig.set("rss_growth", max.saturating_sub(before) as f64);
    fig.set("growth_over_budget", max.saturating_sub(before) as f64 / job.budget as f64);
    fig.set("max_over_budget", max as f64 / job.budget as f64);
    Ok(())
}

/// Every key rewritten three times, each pass in a fresh random order, on
/// `threads` threads with a durable commit every 100 ms; then a clean
/// close and the size of the files.
fn rewrite<D: Db>(job: &Job<'_>, fig: &mut Figures) -> Result<()> {
    fig.set("file_bytes_before", os::dir_bytes(job.dir)?.0 as f64);
    let db = D::open(job.dir, job.budget)?;
    let work = Work::passes(job.keys, REWRITE_PASSES, job.seed);
    let start = Instant::now();
    let count = db.write(job.threads, &work, COMMIT_EVERY)?;
    let secs = start.elapsed().as_secs_f64();
    if count.ops != REWRITE_PASSES * job.keys {
        data::wrong(format_args!("rewrite: {} writes, {} due", count.ops, REWRITE_PASSES * job.keys));
    }
    check_all_of(&db, job.keys, Some(REWRITE_PASSES))?;
    fig.counters(&db);
    db.close()?;
    let (len, allocated) = os::dir_bytes(job.dir)?;
    fig.set("secs", secs);
    fig.set("kops", count.ops as f64 / secs / 1e3);
    fig.set("file_bytes", len as f64);
    fig.set("file_allocated", allocated as f64);
    fig.set("live_bytes", (16 * job.keys) as f64);
    fig.set("over_live", len as f64 / (16 * job.keys) as f64);
    Ok(())
}
