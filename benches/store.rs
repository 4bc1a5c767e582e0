//! A tree over a store: cold reads, a scan of a tree ten times its memory
//! budget (resident bytes, RSS, and whether a hot set survives it), and warm
//! reads against the same keys in an in-memory tree.
//!
//! Run: `cargo bench --bench store`, set by environment variables: `GB_SECS`
//! (seconds per timed run, default 1), `GB_KEYS` (keys, default 1000000),
//! `GB_THREADS` (thread counts for the read runs, default `1,2`), and
//! `GB_LEAF` / `GB_BRANCH` (node capacities, as in the other benches).
//!
//! The store is a `MemoryStore` holding the even keys below `2 * GB_KEYS`
//! (value = key), inserted in one random order into a tree over the store
//! and flushed once, so the store holds one version of every node. Every
//! measured tree is opened anew on that store (`BTree::open`): all its nodes
//! start as ghosts.
//!
//! 1. **Cold reads**: a fresh open, then random gets over all keys for
//!    `GB_SECS` (each thread its own key stream), with a budget that holds
//!    the whole tree. `first 20k` is the rate over each thread's first 20000
//!    gets, when most of them load a leaf.
//! 2. **Scans under a budget of a tenth of the stored bytes**: the whole tree
//!    once in key order (the count and order are checked), sampling
//!    `stats().resident_bytes` and the process RSS (`VmRSS`) every 10000
//!    items. Then a hot set of random keys, whose paths (leaves and the
//!    branches above them) take a quarter of the budget, is read, and the
//!    scan is repeated twice: once alone and once while another thread keeps
//!    reading the hot set; after each, re-reading the hot set shows how many
//!    of its nodes had to be loaded again. A scan under a 1-byte budget shows
//!    the floor: what stays resident when everything evictable is evicted,
//!    and one under a budget that holds everything is the reference. These
//!    run (and print) first, and all their trees stay open until the last
//!    of them, so no RSS figure reuses memory another tree freed.
//! 3. **Warm reads**: the tree over the store, fully loaded by a scan under a
//!    budget that holds it all, against an in-memory tree built by the same
//!    inserts; random gets for `GB_SECS`, five alternating rounds per
//!    thread count, the median reported (and every round's ratio).

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use common::{Settings, SplitMix64};
use ghostbtree::{BTree, Config, MemoryStore, Stats};

/// Gets between two looks at the stop flag.
const BATCH: u64 = 64;
/// Gets per thread timed separately at the start of a cold run.
const COLD_OPS: u64 = 20_000;
/// Items between two samples of resident bytes and RSS during a scan.
const SAMPLE_EVERY: usize = 10_000;
/// Rounds of the warm comparison (alternating trees); the median is shown.
const WARM_ROUNDS: usize = 5;

/// The process's resident set (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).expect("VmRSS value").parse().expect("VmRSS in kB");
    kib * 1024
}

/// `/proc/loadavg`'s first three fields: how busy the machine was.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn signed_mib(after: u64, before: u64) -> f64 {
    (after as f64 - before as f64) / (1024.0 * 1024.0)
}

/// A tree over `store` with all nodes ghosts, keeping at most `budget` bytes.
fn open(store: &MemoryStore, budget: usize) -> BTree<u64, u64> {
    BTree::open(store.clone(), common::config().memory_budget(budget)).expect("opening the stored tree")
}

/// A store holding `keys` (value = key), inserted in the order given and
/// flushed once.
///
/// The inserts run on a thread of their own, so glibc serves the nodes from
/// another arena than the main thread's; the flush (which allocates the
/// records) and everything measured later run on the main thread. Dropping
/// the built tree then leaves that arena empty instead of leaving 25 MB of
/// holes under the records, which would hide the RSS the scans add.
fn build_store(keys: &[u64]) -> MemoryStore {
    let store = MemoryStore::new();
    // No checkpoint before the flush: the store gets one version of each node.
    let config = common::config().memory_budget(usize::MAX);
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config).expect("opening an empty store");
    let tree = thread::scope(|scope| {
        scope
            .spawn(move || {
                for &key in keys {
                    tree.insert(key, key).expect("insert into the tree over the store");
                }
                tree
            })
            .join()
            .expect("the building thread")
    });
    tree.flush().expect("flushing the built tree");
    drop(tree);
    store
}

/// A get of a present key, checked.
fn checked_get(tree: &BTree<u64, u64>, key: u64) {
    let value = tree.get(&key).expect("get");
    if black_box(value) != Some(key) {
        panic!("get({key}) returned {value:?}");
    }
}

/// `threads` threads of random gets over the `n` keys until `duration` has
/// passed; thread `t` draws stream `seed + t`. Returns total ops/s and the
/// rate over every thread's first `COLD_OPS` gets (threads x `COLD_OPS` over
/// the slowest thread's time for them).
fn read_run(tree: &BTree<u64, u64>, n: u64, threads: usize, seed: u64, duration: Duration) -> (f64, f64) {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let first_nanos = AtomicU64::new(0);
    let (ops, elapsed) = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (stop, barrier, first_nanos) = (&stop, &barrier, &first_nanos);
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed + t);
                    barrier.wait();
                    let start = Instant::now();
                    let mut ops = 0;
                    while !stop.load(Relaxed) {
                        for _ in 0..BATCH {
                            checked_get(tree, 2 * rng.below(n));
                        }
                        ops += BATCH;
                        if ops == COLD_OPS.next_multiple_of(BATCH) {
                            first_nanos.fetch_max(start.elapsed().as_nanos() as u64, Relaxed);
                        }
                    }
                    ops
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        thread::sleep(duration);
        stop.store(true, Relaxed);
        let ops: u64 = workers.into_iter().map(|w| w.join().expect("reader thread")).sum();
        (ops, start.elapsed())
    });
    let first = first_nanos.load(Relaxed);
    let first_rate = if first == 0 {
        f64::NAN // a thread did not get that far
    } else {
        (threads as u64 * COLD_OPS.next_multiple_of(BATCH)) as f64 / (first as f64 / 1e9)
    };
    (ops as f64 / elapsed.as_secs_f64(), first_rate)
}

/// What one full scan did.
struct Scan {
    secs: f64,
    max_resident: u64,
    resident_after: u64,
    rss_before: u64,
    rss_max: u64,
    rss_after: u64,
    /// Stats before and after.
    before: Stats,
    after: Stats,
}

/// Iterates over the whole tree once, checking the count and order, and
/// samples resident bytes and RSS every `SAMPLE_EVERY` items.
fn scan(tree: &BTree<u64, u64>, n: u64) -> Scan {
    let before = tree.stats();
    let rss_before = rss_bytes();
    let (mut max_resident, mut rss_max) = (before.resident_bytes, rss_before);
    let start = Instant::now();
    let mut count = 0usize;
    for entry in tree.iter() {
        let (key, value) = entry.expect("scan: next entry");
        if key != 2 * count as u64 || value != key {
            panic!("scan: item {count} is ({key}, {value}), expected key {}", 2 * count);
        }
        count += 1;
        if count.is_multiple_of(SAMPLE_EVERY) {
            max_resident = max_resident.max(tree.stats().resident_bytes);
            rss_max = rss_max.max(rss_bytes());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count as u64, n, "scan: wrong number of entries");
    let after = tree.stats();
    let rss_after = rss_bytes();
    Scan {
        secs,
        max_resident: max_resident.max(after.resident_bytes),
        resident_after: after.resident_bytes,
        rss_before,
        rss_max: rss_max.max(rss_after),
        rss_after,
        before,
        after,
    }
}

fn print_scan_header() {
    println!(
        "{:<30} {:>6} {:>7} {:>7} {:>9} {:>7} {:>9} {:>8} {:>8}",
        "scan", "secs", "loads", "evicts", "max res", "max/bgt", "res after", "RSS +max", "RSS +end"
    );
}

fn print_scan(name: &str, scan: &Scan, budget: usize) {
    println!(
        "{name:<30} {:>6.2} {:>7} {:>7} {:>7.2}Mi {:>7.2} {:>7.2}Mi {:>6.2}Mi {:>6.2}Mi",
        scan.secs,
        scan.after.loads - scan.before.loads,
        scan.after.evictions - scan.before.evictions,
        mib(scan.max_resident),
        scan.max_resident as f64 / budget as f64,
        mib(scan.resident_after),
        signed_mib(scan.rss_max, scan.rss_before),
        signed_mib(scan.rss_after, scan.rss_before),
    );
}

/// Reads every hot key once; returns the store reads that needed.
fn read_hot(tree: &BTree<u64, u64>, hot: &[u64]) -> u64 {
    let before = tree.stats().store_reads;
    for &key in hot {
        checked_get(tree, key);
    }
    tree.stats().store_reads - before
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let settings = Settings::from_env("1,2");
    let n = settings.keys;
    let keys = common::shuffled_keys(n);

    println!("load average at the start: {}", load_average());
    let start = Instant::now();
    let store = build_store(&keys);
    let stored = store.stored_bytes();
    let budget = stored / 10;
    // Holds the whole tree: decoded nodes take about 1.5x their records.
    let big = Config::DEFAULT_MEMORY_BUDGET.max(stored * 4);
    println!(
        "{n} u64 keys inserted in random order and flushed in {:.1} s: {} records, {:.2} MiB stored; \
         small budget = stored / 10 = {:.2} MiB, large budget = {:.0} MiB\n",
        start.elapsed().as_secs_f64(),
        store.records(),
        mib(stored as u64),
        mib(budget as u64),
        mib(big as u64),
    );

    // 2. Scans under the small budget (first: the RSS figures are the
    // cleanest before the large trees below are built).
    println!("## Scans, budget {:.2} MiB ({} bytes)", mib(budget as u64), budget);
    println!(
        "(max res: most resident bytes sampled; RSS +max / +end: process RSS growth over the scan, \
         at its largest and at the end)"
    );
    print_scan_header();
    // Every tree of this part stays open until its end, so that no scan's
    // RSS figure reuses memory another tree freed.
    let tree = open(&store, budget);
    let first = scan(&tree, n);
    print_scan("1st scan, fresh open", &first, budget);
    let floor_tree = open(&store, 1);
    let floor = scan(&floor_tree, n);
    print_scan("floor: budget 1 byte", &floor, budget);
    let reference = open(&store, big);
    let full = scan(&reference, n);
    print_scan("reference: large budget", &full, budget);

    // The hot set: random keys whose paths (leaves, and the branches above
    // them, which a random set hardly shares) take a quarter of the budget,
    // measured on a fresh tree with room for everything.
    let node_bytes = full.after.resident_bytes / full.after.loads.max(1);
    let mut rng = SplitMix64::new(0x407);
    let candidates: Vec<u64> = (0..n).map(|_| 2 * rng.below(n)).collect();
    let footprint = |len: usize| {
        let fresh = open(&store, big);
        read_hot(&fresh, &candidates[..len]);
        fresh.stats().resident_bytes
    };
    let mut hot_len = (budget as u64 / 4 / node_bytes).max(1) as usize;
    while hot_len > 1 && footprint(hot_len) > budget as u64 / 4 {
        hot_len = hot_len * 9 / 10;
    }
    let hot = &candidates[..hot_len];
    let hot_bytes = footprint(hot_len);

    let hot_leaves = read_hot(&tree, hot);
    let hot_again = read_hot(&tree, hot) + read_hot(&tree, hot);
    let alone = scan(&tree, n);
    print_scan("2nd scan, alone", &alone, budget);
    let after_alone = read_hot(&tree, hot);

    let hot_before = read_hot(&tree, hot);
    let stop = AtomicBool::new(false);
    let (with_reader, passes) = thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut passes = 0u64;
            while !stop.load(Relaxed) {
                read_hot(&tree, hot);
                passes += 1;
            }
            passes
        });
        let scanned = scan(&tree, n);
        stop.store(true, Relaxed);
        (scanned, reader.join().expect("hot reader thread"))
    });
    print_scan("3rd scan, hot reader running", &with_reader, budget);
    let after_with_reader = read_hot(&tree, hot);
    drop((tree, floor_tree, reference));

    let loaded = |scan: &Scan| scan.after.loads - scan.after.evictions;
    println!(
        "\nfloor (after a scan under a 1-byte budget): {} nodes still loaded, {:.2} MiB resident = {:.2}x the small budget",
        loaded(&floor),
        mib(floor.resident_after),
        floor.resident_after as f64 / budget as f64
    );
    println!(
        "after the 1st scan under the small budget: {} nodes still loaded, {:.2} MiB resident",
        loaded(&first),
        mib(first.resident_after)
    );
    println!(
        "fully loaded tree: {} nodes, {:.2} MiB resident, {node_bytes} bytes per node on average",
        full.after.loads,
        mib(full.after.resident_bytes)
    );
    println!(
        "RSS growth per node loaded: {:.0} bytes (1st scan, small budget), {:.0} bytes (large budget)",
        signed_mib(first.rss_max, first.rss_before) * 1048576.0 / first.after.loads as f64,
        signed_mib(full.rss_max, full.rss_before) * 1048576.0 / full.after.loads as f64,
    );
    println!(
        "\nhot set: {hot_len} random keys; their paths take {:.2} MiB = {:.2}x the budget",
        mib(hot_bytes),
        hot_bytes as f64 / budget as f64
    );
    println!("{:<50} {:>11}", "hot-set read", "store reads");
    println!("{:<50} {hot_leaves:>11}", "first read, after the 1st scan (~ its nodes)");
    println!("{:<50} {hot_again:>11}", "two more reads");
    println!("{:<50} {after_alone:>11}", "after the 2nd scan (no hot reads during it)");
    println!("{:<50} {hot_before:>11}", "re-warm before the 3rd scan");
    println!("{:<50} {after_with_reader:>11}", "after the 3rd scan (hot reader running)");
    println!(
        "(during the 3rd scan the hot reader read the hot set {passes} times; the scan plus the reader \
         loaded {} nodes, {} more than the lone 2nd scan: hot nodes evicted and loaded again)",
        with_reader.after.loads - with_reader.before.loads,
        (with_reader.after.loads - with_reader.before.loads) as i64
            - (alone.after.loads - alone.before.loads) as i64
    );

    // 1. Cold reads under a budget that holds the tree.
    println!("\n## Cold reads: fresh open, random gets for {:.1} s", settings.duration.as_secs_f64());
    println!(
        "{:>7} {:>9} {:>14} {:>8} {:>10} {:>11} {:>9}",
        "threads", "M ops/s", "first 20k M/s", "loads", "load_waits", "store_reads", "evictions"
    );
    for &threads in &settings.threads {
        let tree = open(&store, big);
        let (rate, first_rate) = read_run(&tree, n, threads, 1000, settings.duration);
        let stats = tree.stats();
        println!(
            "{threads:>7} {:>9.3} {:>14.3} {:>8} {:>10} {:>11} {:>9}",
            rate / 1e6,
            first_rate / 1e6,
            stats.loads,
            stats.load_waits,
            stats.store_reads,
            stats.evictions
        );
    }

    // 3. Warm reads: fully loaded stored tree vs in-memory tree.
    let stored_tree = open(&store, big);
    let warmed = scan(&stored_tree, n);
    let memory_tree = common::ghostbtree_from(&keys);
    println!(
        "\n## Warm reads: random gets for {:.1} s, median of {WARM_ROUNDS} alternating rounds",
        settings.duration.as_secs_f64()
    );
    println!(
        "(the stored tree was loaded by one scan: {} loads, {} evictions, {:.2} MiB resident)",
        warmed.after.loads,
        warmed.after.evictions,
        mib(warmed.after.resident_bytes)
    );
    println!(
        "{:>7} {:>16} {:>16} {:>14}  rounds (store/memory)",
        "threads", "in-memory M/s", "over store M/s", "store/memory"
    );
    for &threads in &settings.threads {
        let (mut memory, mut stored, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..WARM_ROUNDS {
            let seed = 2000 + round as u64 * 100;
            let m = read_run(&memory_tree, n, threads, seed, settings.duration).0;
            let s = read_run(&stored_tree, n, threads, seed, settings.duration).0;
            memory.push(m);
            stored.push(s);
            ratios.push(s / m);
        }
        let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let (m, s) = (median(memory), median(stored));
        println!("{threads:>7} {:>16.3} {:>16.3} {:>14.2}  {}", m / 1e6, s / 1e6, s / m, rounds.join(" "));
    }
    let stats = stored_tree.stats();
    println!(
        "(stored tree after the runs: {} loads, {} evictions, {} store reads)",
        stats.loads, stats.evictions, stats.store_reads
    );
    println!("\ntotal {:.1} s; load average at the end: {}", start.elapsed().as_secs_f64(), load_average());
}
