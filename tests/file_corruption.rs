//! Every byte of a small tree file flipped in turn, through the public API.
//!
//! The file has three checkpoints (leaves and branches, a free-list record,
//! both superblock slots in use). For each offset the byte is xored with
//! 0xff, the file opened, every key read, the tree scanned and verified,
//! and the byte restored. What may happen:
//!
//! - open fails with a message naming the path (the header page, or both
//!   superblocks unusable);
//! - a flip in the newest superblock's slot makes open fall back to the
//!   previous checkpoint, whose contents are then read whole (and which
//!   takes writes and a checkpoint);
//! - otherwise a read gives exactly the right value or an `Err`: never a
//!   wrong value, a key reported absent that is there, a key reported
//!   there that is not, or a panic; `verify` is `Ok` with no violation or
//!   `Err`;
//! - bytes no read touches (free space, stale records, padding past the
//!   used end) may go unnoticed: told apart from misses by the values read,
//!   not by demanding an error. The test reads the free list itself and
//!   checks both ways: a flip in free space goes unnoticed, a flip in any
//!   other byte below the used end (a live record) is caught. A flip in
//!   the free-list record goes unnoticed by reads, so for those a write
//!   and a flush must fail instead of allocating from a damaged list.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ghostbtree::{BTree, Config};

type Tree = BTree<u64, u64>;
type State = BTreeMap<u64, u64>;

const PAGE: u64 = 4096;
const SUPERBLOCK_AT: [u64; 2] = [PAGE, 2 * PAGE];
/// Keys read on every open: the keys of both states, and absent ones.
const KEYS: u64 = 80;

fn config() -> Config {
    Config::new()
        .leaf_capacity(4)
        .branch_capacity(4)
        .flush_on_drop(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ghostbtree-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds the file: three flushes, then a drop without a last checkpoint.
/// Returns the states of the last two.
fn build(path: &Path) -> (State, State) {
    let tree: Tree = BTree::open_file(path, config()).unwrap();
    let mut state = State::new();
    for key in 0..60 {
        tree.insert(key, key * 10).unwrap();
        state.insert(key, key * 10);
    }
    tree.flush().unwrap();
    for key in (0..60).step_by(3) {
        tree.insert(key, key * 10 + 1).unwrap();
        state.insert(key, key * 10 + 1);
    }
    for key in 40..48 {
        tree.remove(&key).unwrap();
        state.remove(&key);
    }
    tree.flush().unwrap();
    let previous = state.clone();
    for key in (1..70).step_by(5) {
        tree.insert(key, key * 10 + 2).unwrap();
        state.insert(key, key * 10 + 2);
    }
    for key in 10..16 {
        tree.remove(&key).unwrap();
        state.remove(&key);
    }
    tree.flush().unwrap();
    assert!(tree.verify().unwrap().height >= 2);
    drop(tree);
    (previous, state)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Where things are in the file, read as `src/store/file/layout.rs` draws it.
struct Map {
    /// The slot (0 or 1) of the newest superblock.
    newest: usize,
    /// The newest superblock's free-list record: offset and length.
    free_list: (u64, u64),
    /// Where the used space ends.
    end: u64,
    /// The free extents below `end` the free list names.
    free: Vec<(u64, u64)>,
}

impl Map {
    /// Whether `offset` (in the data region) holds no record: a free extent
    /// or past the used end.
    fn is_free(&self, offset: u64) -> bool {
        offset >= self.end || self.free.iter().any(|&(at, len)| (at..at + len).contains(&offset))
    }
}

fn map(bytes: &[u8]) -> Map {
    let sequence = |slot: usize| u64_at(bytes, SUPERBLOCK_AT[slot] as usize + 8);
    let (s0, s1) = (sequence(0), sequence(1));
    assert!(s0 > 0 && s1 > 0, "both superblock slots in use");
    let newest = if s0 > s1 { 0 } else { 1 };
    let at = SUPERBLOCK_AT[newest] as usize;
    let address = u64_at(bytes, at + 24);
    assert_ne!(address, 0, "a free-list record");
    let free_list = ((address >> 24) * 16, (address & 0xff_ffff) * 16);
    // The record: u32 payload length, kind, 3 zeros, then the payload: a
    // u64 count and that many (offset, length) pairs.
    let payload = free_list.0 as usize + 8;
    let count = u64_at(bytes, payload) as usize;
    let free =
        (0..count).map(|i| (u64_at(bytes, payload + 8 + 16 * i), u64_at(bytes, payload + 16 + 16 * i)));
    Map { newest, free_list, end: u64_at(bytes, at + 16), free: free.collect() }
}

#[derive(Debug, Default)]
struct Outcomes {
    /// Open failed (naming the path).
    open_failed: usize,
    /// Open fell back to the previous checkpoint.
    fell_back: usize,
    /// Open succeeded and at least one read, the scan or `verify` failed.
    reads_failed: usize,
    /// Every read right: the byte is in no record read. In the older
    /// superblock's slot (open takes the newest), the free-list record (a
    /// write and a flush fail instead), free space.
    unnoticed_older_slot: usize,
    unnoticed_free_list: usize,
    unnoticed_free_space: usize,
}

/// Reads every key, scans and verifies: each read is right or an `Err`.
/// Returns whether everything was read without an error.
fn read_all(tree: &Tree, state: &State, offset: u64) -> bool {
    let mut clean = true;
    for key in 0..KEYS {
        match tree.get(&key) {
            Ok(found) => assert_eq!(found, state.get(&key).copied(), "flip at {offset}: key {key}"),
            Err(_) => clean = false,
        }
    }
    match tree.iter().collect::<Result<State, _>>() {
        Ok(found) => assert!(&found == state, "flip at {offset}: a scan gives {} entries", found.len()),
        Err(_) => clean = false,
    }
    match tree.verify() {
        Ok(report) => assert!(report.is_ok(), "flip at {offset}: {report}"),
        Err(_) => clean = false,
    }
    clean
}

#[test]
fn every_byte_flipped_is_caught_or_harmless() {
    let started = Instant::now();
    let dir = dir("corruption");
    let path = dir.join("t.gbt");
    let (previous, last) = build(&path);
    let original = fs::read(&path).unwrap();
    let map = map(&original);
    let len = original.len() as u64;
    assert!(len < 64 << 10, "{len} bytes");
    let name = path.display().to_string();
    let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let newest_slot = SUPERBLOCK_AT[map.newest]..SUPERBLOCK_AT[map.newest] + PAGE;
    let free_list = map.free_list.0..map.free_list.0 + map.free_list.1;
    let mut outcomes = Outcomes::default();
    for offset in 0..len {
        file.write_all_at(&[original[offset as usize] ^ 0xff], offset).unwrap();
        let mut rewrite = free_list.contains(&offset);
        match BTree::<u64, u64>::open_file(&path, config()) {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(&name), "flip at {offset}: {message}");
                assert!(offset < 3 * PAGE, "flip at {offset} (a record) fails open: {message}");
                outcomes.open_failed += 1;
            }
            Ok(tree) if newest_slot.contains(&offset) => {
                assert_eq!(tree.len(), previous.len(), "flip at {offset}: no fallback");
                assert!(read_all(&tree, &previous, offset), "flip at {offset}: the fallback is damaged");
                outcomes.fell_back += 1;
                if offset % 512 == 8 {
                    // It keeps working: the next checkpoint goes over the
                    // damaged slot.
                    let mut state = previous.clone();
                    for key in 30..50 {
                        tree.insert(key, key + 7).unwrap();
                        state.insert(key, key + 7);
                    }
                    tree.close().unwrap();
                    let tree: Tree = BTree::open_file(&path, config()).unwrap();
                    assert!(read_all(&tree, &state, offset), "flip at {offset}: after the fallback");
                    rewrite = true;
                }
            }
            Ok(tree) => {
                assert!(offset >= PAGE, "flip at {offset} in the header page: open succeeded");
                assert_eq!(tree.len(), last.len(), "flip at {offset}");
                let clean = read_all(&tree, &last, offset);
                if offset < 3 * PAGE {
                    assert!(clean, "flip at {offset} in the older superblock's slot: reads fail");
                    outcomes.unnoticed_older_slot += 1;
                } else if free_list.contains(&offset) {
                    assert!(clean, "flip at {offset} in the free list: reads fail");
                    // The list is read at the first write: the flush fails.
                    tree.insert(1000, 1).unwrap();
                    let flushed = tree.flush();
                    assert!(flushed.is_err(), "flip at {offset} in the free list: the flush succeeded");
                    outcomes.unnoticed_free_list += 1;
                } else if map.is_free(offset) {
                    assert!(clean, "flip at {offset} in free space: reads fail");
                    outcomes.unnoticed_free_space += 1;
                } else {
                    // A live node record: the full scan reads every one.
                    assert!(!clean, "flip at {offset} in a live record went unnoticed");
                    outcomes.reads_failed += 1;
                }
            }
        }
        if rewrite {
            file.write_all_at(&original, 0).unwrap();
            file.set_len(len).unwrap();
        } else {
            file.write_all_at(&original[offset as usize..offset as usize + 1], offset).unwrap();
        }
    }
    assert_eq!(fs::read(&path).unwrap(), original);
    assert_eq!(outcomes.unnoticed_free_list as u64, map.free_list.1);
    assert!(outcomes.reads_failed > 0 && outcomes.unnoticed_free_space > 0, "{outcomes:?}");
    println!("{len} bytes ({} used), {len} flips: {outcomes:?}, in {:?}", map.end, started.elapsed());
    drop(file);
    fs::remove_dir_all(&dir).unwrap();
}
