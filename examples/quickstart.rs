//! The whole cycle on an embedded default: build a tree of a few million
//! keys over a store, flush it, reopen it lazily with a small memory budget,
//! run readers and writers on it together, print throughput and stats, then
//! check the result exactly (and once more after a flush and a reopen).
//!
//! `cargo run --release --example quickstart` (`QUICKSTART_SECS` to run
//! longer than 2 s, `QUICKSTART_KEYS` for another size,
//! `QUICKSTART_BUDGET_DIV` for a budget of another fraction of the store).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ghostbtree::{BTree, Config, Error, MemoryStore};

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

fn main() -> Result<(), Error> {
    let keys = env("QUICKSTART_KEYS", 2_000_000);
    let run_for = Duration::from_secs(env("QUICKSTART_SECS", 2));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (readers, writers) = (cores.max(2), 2u64);
    let store = MemoryStore::new();

    // 1. Build: even keys 0, 2, 4, ... (writers add odd keys later), flush.
    let started = Instant::now();
    {
        let tree = BTree::open(store.clone(), Config::new())?;
        tree.extend((0..keys).map(|i| (2 * i, i)))?;
        tree.flush()?;
        println!(
            "built and flushed {} keys in {:.2?} ({} MB stored)",
            tree.len(),
            started.elapsed(),
            store.stored_bytes() >> 20
        );
    }

    // 2. Reopen lazily with a budget of a tenth of the stored size: opening
    //    reads one record, every node starts as a ghost.
    let budget = store.stored_bytes() / env("QUICKSTART_BUDGET_DIV", 10) as usize;
    let config = Config::new().memory_budget(budget);
    let started = Instant::now();
    let tree: BTree<u64, u64> = BTree::open(store.clone(), config.clone())?;
    println!("reopened in {:.2?} with a {} MB budget: {:?}", started.elapsed(), budget >> 20, tree.stats());

    // 3. Readers and writers together.
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (reads, inserted) = std::thread::scope(|s| -> Result<_, Error> {
        let reader_threads: Vec<_> = (0..readers as u64)
            .map(|id| {
                let (tree, stop) = (&tree, &stop);
                s.spawn(move || -> Result<u64, Error> {
                    let mut rng = id + 1;
                    let mut reads = 0;
                    // Relaxed: the flag only ends the loop; the join
                    // publishes everything else.
                    while !stop.load(Ordering::Relaxed) {
                        let i = random(&mut rng) % keys;
                        if i.is_multiple_of(64) {
                            // A short scan: loaded keys must all be there.
                            let mut n = 0;
                            for entry in tree.range(2 * i..2 * i + 64) {
                                n += u64::from(entry?.0 % 2 == 0);
                            }
                            assert_eq!(n, 32.min(keys - i), "scan from {} missed loaded keys", 2 * i);
                        } else {
                            assert_eq!(tree.get(&(2 * i))?, Some(i), "loaded key {} lost", 2 * i);
                        }
                        reads += 1;
                    }
                    Ok(reads)
                })
            })
            .collect();
        // Writer `w` inserts the odd keys 4n + 1 + 2w, in random order.
        let writer_threads: Vec<_> = (0..writers)
            .map(|w| {
                let (tree, stop) = (&tree, &stop);
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
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = reader_threads.into_iter().map(|t| t.join().unwrap()).sum::<Result<_, _>>()?;
        let inserted: Vec<u64> =
            writer_threads.into_iter().map(|t| t.join().unwrap()).collect::<Result<Vec<_>, _>>()?.concat();
        Ok((reads, inserted))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{readers} readers: {:.2}M reads/s; {writers} writers: {:.2}M inserts/s ({} new keys)",
        reads as f64 / seconds / 1e6,
        inserted.len() as f64 / seconds / 1e6,
        inserted.len()
    );
    let stats = tree.stats();
    println!(
        "stats: {} loads ({:.2} per operation: the budget holds a fraction of the tree), \
         {} waits on a load in flight, {} evictions, {} checkpoints, {} MB resident of a {} MB budget, \
         {} MB dirty",
        stats.loads,
        stats.loads as f64 / (reads + inserted.len() as u64).max(1) as f64,
        stats.load_waits,
        stats.evictions,
        stats.checkpoints,
        stats.resident_bytes >> 20,
        budget >> 20,
        stats.dirty_bytes >> 20
    );

    // 4. Check: every loaded and inserted key is there, nothing else; then
    //    the same after a flush and a reopen.
    let expected = keys + inserted.len() as u64;
    let check = |tree: &BTree<u64, u64>| -> Result<(), Error> {
        for key in &inserted {
            assert_eq!(tree.get(key)?, Some(*key), "inserted key {key} lost");
        }
        assert_eq!(tree.len() as u64, expected);
        let mut count = 0;
        for entry in tree.iter() {
            entry?;
            count += 1;
        }
        assert_eq!(count, expected);
        let report = tree.verify()?;
        assert!(report.is_ok(), "{report}");
        Ok(())
    };
    let started = Instant::now();
    check(&tree)?;
    tree.flush()?;
    drop(tree);
    let reopened: BTree<u64, u64> = BTree::open(store, config)?;
    check(&reopened)?;
    println!("checked {expected} keys live and after a reopen in {:.2?}", started.elapsed());
    println!("ok");
    Ok(())
}
