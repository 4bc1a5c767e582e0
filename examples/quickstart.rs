//! The main job on an embedded default: build a tree of a few million keys,
//! run readers and writers on it together, print throughput, then check the
//! result exactly.
//!
//! `cargo run --release --example quickstart` (set `QUICKSTART_SECS` to run
//! longer than 2 s, `QUICKSTART_KEYS` for another size).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ghostbtree::{BTree, Config, Error};

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

    // Even keys 0, 2, 4, ... are loaded up front; writers add odd keys.
    let started = Instant::now();
    let tree = BTree::from_sorted((0..keys).map(|i| (2 * i, i)), Config::new())?;
    println!("loaded {} keys in {:.2?}", tree.len(), started.elapsed());

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
                            let n = tree
                                .range(2 * i..2 * i + 64)
                                .filter(|e| matches!(e, Ok((k, _)) if k % 2 == 0))
                                .count();
                            assert_eq!(n as u64, 32.min(keys - i), "scan from {} missed loaded keys", 2 * i);
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

    // Check: every loaded and every inserted key is there, nothing else, and
    // the structure is sound.
    let started = Instant::now();
    for key in &inserted {
        assert_eq!(tree.get(key)?, Some(*key), "inserted key {key} lost");
    }
    let expected = keys + inserted.len() as u64;
    assert_eq!(tree.len() as u64, expected);
    assert_eq!(tree.iter().count() as u64, expected);
    let report = tree.verify()?;
    assert!(report.is_ok(), "{report}");
    println!("checked {expected} keys in {:.2?}: {report}", started.elapsed());
    println!("ok");
    Ok(())
}
