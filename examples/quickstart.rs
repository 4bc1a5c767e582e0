//! The whole cycle on an embedded default, over a file in a temporary
//! directory: build a tree of a few million keys, close it, reopen it
//! (timed), read cold, run readers and writers together under a small
//! memory budget, kill a writer process with SIGKILL and reopen after it,
//! print the figures, and check the result exactly.
//!
//! `cargo run --release --example quickstart` (`QUICKSTART_SECS` to run
//! the mixed phase longer than 2 s, `QUICKSTART_KEYS` for another size,
//! `QUICKSTART_BUDGET_DIV` for a budget of another fraction of the file,
//! `QUICKSTART_DIR` to keep the file somewhere else).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ghostbtree::{BTree, Config, Error, Stats};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// splitmix64: a cheap per-thread random stream.
fn random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The process's resident set (`VmRSS`) in bytes, where /proc has it.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--writer-to-kill") {
        return writer_to_kill(Path::new(&args.next().expect("a path")));
    }
    let keys = env("QUICKSTART_KEYS", 2_000_000);
    let run_for = Duration::from_secs(env("QUICKSTART_SECS", 2));
    let dir = match std::env::var_os("QUICKSTART_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("ghostbtree-quickstart-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("quickstart.gbt");
    let _ = std::fs::remove_file(&path);
    println!("file: {}", path.display());

    // 1. Build: even keys 0, 2, 4, ... (writers add odd keys later), then a
    //    clean close (a last checkpoint).
    let started = Instant::now();
    let tree = BTree::open_file(&path, Config::new())?;
    tree.extend((0..keys).map(|i| (2 * i, i)))?;
    let built = tree.len();
    tree.close()?;
    let file_bytes = std::fs::metadata(&path)?.len();
    println!("built {built} keys and closed in {:.2?}: {:.1} MB file", started.elapsed(), mb(file_bytes));

    // 2. Reopen with a budget of a tenth of the file: opening reads the
    //    header and two superblocks, every node starts as a ghost.
    let budget = (file_bytes / env("QUICKSTART_BUDGET_DIV", 10)) as usize;
    let config = Config::new().memory_budget(budget);
    let started = Instant::now();
    let tree: BTree<u64, u64> = BTree::open_file(&path, config.clone())?;
    let opened = started.elapsed();
    let first = tree.get(&(2 * (keys / 2)))?;
    println!(
        "reopened in {opened:.2?}, first get after {:.2?} ({first:?}), budget {:.1} MB",
        started.elapsed(),
        mb(budget as u64)
    );

    // 3. Cold reads: most load a leaf from the file (from the OS page cache
    //    here: the file was just written).
    let started = Instant::now();
    let mut rng = 7;
    let cold = 100_000.min(keys);
    for _ in 0..cold {
        let i = random(&mut rng) % keys;
        assert_eq!(tree.get(&(2 * i))?, Some(i), "key {} lost", 2 * i);
    }
    let stats = tree.stats();
    println!(
        "{cold} cold gets: {:.0}k/s, {} loads ({:.2} per get), {:.1} MB resident",
        cold as f64 / started.elapsed().as_secs_f64() / 1e3,
        stats.loads,
        stats.loads as f64 / cold as f64,
        mb(stats.resident_bytes)
    );

    // 4. Readers and writers together under the budget, with background
    //    checkpoints; resident bytes sampled throughout.
    let inserted = mixed(&tree, keys, run_for, budget)?;

    // 5. A check of everything, then a clean close.
    check(&tree, keys, &inserted)?;
    tree.close()?;

    // 6. Kill-safe: a child process writes (and checkpoints in the
    //    background) until it is killed with SIGKILL; the reopen finds the
    //    last checkpoint whole.
    let acknowledged = kill_a_writer(&path)?;
    let started = Instant::now();
    let tree: BTree<u64, u64> = BTree::open_file(&path, config)?;
    let opened = started.elapsed();
    let report = tree.verify()?;
    assert!(report.is_ok(), "{report}");
    let survived =
        (0..acknowledged).filter(|&n| tree.get(&(CHILD_KEYS + n)).ok().flatten().is_some()).count() as u64;
    assert_eq!(survived, acknowledged, "writes of a flush the killed child saw return were lost");
    println!(
        "after SIGKILL: reopened in {opened:.2?}; all {acknowledged} flushed writes of the killed child there, \
         {} keys, verify ok",
        tree.len()
    );
    check(&tree, keys, &inserted).map_err(|e| format!("after the kill: {e}"))?;
    print_space(&tree.stats());
    drop(tree);
    if std::env::var_os("QUICKSTART_DIR").is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("ok");
    Ok(())
}

/// Phase 4: returns the keys the writers inserted.
fn mixed(tree: &BTree<u64, u64>, keys: u64, run_for: Duration, budget: usize) -> Result<Vec<u64>, Error> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (readers, writers) = (cores.max(2) as u64, 2u64);
    let stop = AtomicBool::new(false);
    let max_resident = AtomicU64::new(0);
    let before = tree.stats();
    let started = Instant::now();
    let (reads, inserted) = std::thread::scope(|s| -> Result<_, Error> {
        let reader_threads: Vec<_> = (0..readers)
            .map(|id| {
                let stop = &stop;
                s.spawn(move || -> Result<u64, Error> {
                    let mut rng = id + 1;
                    let mut reads = 0;
                    // Relaxed: the flag only ends the loop; the join
                    // publishes everything else.
                    while !stop.load(Ordering::Relaxed) {
                        let i = random(&mut rng) % keys;
                        assert_eq!(tree.get(&(2 * i))?, Some(i), "loaded key {} lost", 2 * i);
                        reads += 1;
                    }
                    Ok(reads)
                })
            })
            .collect();
        // Writer `w` inserts the odd keys 4n + 1 + 2w, in random order.
        let writer_threads: Vec<_> = (0..writers)
            .map(|w| {
                let stop = &stop;
                s.spawn(move || -> Result<Vec<u64>, Error> {
                    let mut rng = 1000 + w;
                    let mut inserted = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let key = 4 * (random(&mut rng) % (keys / 2)) + 1 + 2 * w;
                        if tree.insert(key, key)?.is_none() {
                            inserted.push(key);
                        }
                    }
                    Ok(inserted)
                })
            })
            .collect();
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(5));
            max_resident.fetch_max(tree.stats().resident_bytes, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = reader_threads.into_iter().map(|t| t.join().unwrap()).sum::<Result<_, _>>()?;
        let inserted: Vec<u64> =
            writer_threads.into_iter().map(|t| t.join().unwrap()).collect::<Result<Vec<_>, _>>()?.concat();
        Ok((reads, inserted))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = tree.stats();
    println!(
        "{readers} readers and {writers} writers for {seconds:.1} s: {:.0}k reads/s, {:.0}k inserts/s, \
         {} checkpoints, {} loads, {} evictions",
        reads as f64 / seconds / 1e3,
        inserted.len() as f64 / seconds / 1e3,
        stats.checkpoints - before.checkpoints,
        stats.loads - before.loads,
        stats.evictions - before.evictions,
    );
    let max = max_resident.load(Ordering::Relaxed);
    let ratio = max as f64 / budget as f64;
    let verdict = if ratio <= 1.25 { "within" } else { "OVER" };
    println!(
        "resident: at most {:.1} MB of a {:.1} MB budget ({ratio:.2}x, {verdict} the 1.25x bound); \
         the file store's bookkeeping another {:.2} MB (its free-space map: not bounded by the budget \
         yet); RSS {:.1} MB (the allocator's, the binary and the page tables too)",
        mb(max),
        mb(budget as u64),
        mb(stats.store_memory_bytes),
        rss().map_or(0.0, mb)
    );
    if ratio > 1.25 {
        println!("  (resident bytes outran eviction: dirty nodes wait for a checkpoint before they can go)");
    }
    Ok(inserted)
}

fn check(tree: &BTree<u64, u64>, keys: u64, inserted: &[u64]) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    for key in inserted {
        assert_eq!(tree.get(key)?, Some(*key), "inserted key {key} lost");
    }
    let inserted: HashSet<u64> = inserted.iter().copied().collect();
    let mut count = 0u64;
    for entry in tree.iter() {
        let (key, value) = entry?;
        if key >= CHILD_KEYS {
            continue; // the killed child's
        }
        let expected = if key % 2 == 0 { key / 2 } else { key };
        assert_eq!(value, expected, "key {key}");
        assert!(key % 2 == 0 || inserted.contains(&key), "key {key} was never inserted");
        count += 1;
    }
    assert_eq!(count, keys + inserted.len() as u64);
    let report = tree.verify()?;
    assert!(report.is_ok(), "{report}");
    println!("checked {count} keys in {:.2?}", started.elapsed());
    Ok(())
}

/// Where the killed child's keys start.
const CHILD_KEYS: u64 = 1 << 62;

/// Runs a child that inserts keys `CHILD_KEYS + n` and flushes every 1000, printing
/// each flushed count; kills it with SIGKILL after a while. Returns the
/// last count the child saw flushed.
fn kill_a_writer(path: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--writer-to-kill")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let started = Instant::now();
    let mut acknowledged = 0;
    while started.elapsed() < Duration::from_millis(700) {
        match lines.next() {
            Some(line) => acknowledged = line?.trim().parse()?,
            None => break,
        }
    }
    child.kill()?; // SIGKILL: no destructor, no last checkpoint
    child.wait()?;
    println!("killed a writer process (SIGKILL) after {acknowledged} flushed inserts and more unflushed");
    Ok(acknowledged)
}

fn writer_to_kill(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let tree: BTree<u64, u64> =
        BTree::open_file(path, Config::new().checkpoint_interval(Duration::from_millis(50)))?;
    for n in 0.. {
        tree.insert(CHILD_KEYS + n, n)?;
        if (n + 1) % 1000 == 0 {
            tree.flush()?;
            println!("{}", n + 1);
        }
    }
    Ok(())
}

fn print_space(stats: &Stats) {
    let garbage = stats.file_bytes.saturating_sub(stats.live_bytes);
    println!(
        "file: {:.1} MB, {:.1} MB of it live, {:.0}% reusable garbage (superseded records, reused by later \
         checkpoints)",
        mb(stats.file_bytes),
        mb(stats.live_bytes),
        100.0 * garbage as f64 / stats.file_bytes.max(1) as f64
    );
}
