//! Untrusted bytes through every decoder of the file store: a file may be
//! damaged, truncated or made up, and everything must come back `Ok` or
//! `Err`, never a panic, a hang or an allocation past libFuzzer's limit.
//!
//! The first byte picks a mode (its low two bits) and whether to reseal
//! (bit 7: every checksum the bytes place is recomputed, so damage gets
//! past the CRCs into what they guard); bit 6 opens files as
//! `BTree<String, Vec<u8>>` instead of `BTree<u64, u64>` (modes 1 and 2).
//!
//! - 0, layout: the bytes through `ghostbtree::fuzzing::decode_file_layout`
//!   (header, superblock, record frame, free list); resealed, once more
//!   as each of a header, a superblock and a frame.
//! - 1, file: the bytes are a whole file.
//! - 2, compact file: the bytes are a file without its zero padding (the
//!   header's 64 bytes, each superblock slot's 304, then the records),
//!   which [`expand`] puts back: what matters is all the fuzzer mutates.
//! - 3, damaged file: a valid file made in this process (a few trees,
//!   [`templates`]), XORed at the offsets the input gives (counted in the
//!   compact layout, so they land on bytes that matter), then cut short
//!   if the input says so.
//!
//! A file is written to a scratch file and opened with `BTree::open_file`
//! (tiny nodes and budget); if that succeeds it is scanned both ways,
//! looked up, verified, written to (which loads the free list and frees
//! and reuses records), closed and opened again (which must succeed, the
//! close having written a superblock newer than any other), and read
//! again. Where `verify()` finds the tree sound, the scans both ways,
//! `len()` and the lookups must agree as well.
//!
//! Node records are decoded by the file modes (a resealed record is a
//! checksummed node to the tree), so there is no separate node target.
//!
//! Seeds: `fuzz/seeds/decode` (valid files in modes 1 and 2, layout
//! pieces), written by this target when `GHOSTBTREE_DECODE_SEEDS` names a
//! directory: `GHOSTBTREE_DECODE_SEEDS=$PWD/fuzz/seeds/decode cargo fuzz
//! run -s none decode -- -runs=1`. Run with them:
//! `cargo fuzz run -s none decode fuzz/corpus/decode fuzz/seeds/decode`.
#![no_main]

#[path = "common/scratch.rs"]
mod scratch;

use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use ghostbtree::{BTree, Codec, Config};
use libfuzzer_sys::fuzz_target;

// The layout (`src/store/file/layout.rs`, `docs/format.md`).
const PAGE: usize = 4096;
const HEADER_LEN: usize = 64;
const SUPERBLOCK_LEN: usize = 44 + 256 + 4;
const SLOTS: [usize; 2] = [PAGE, 2 * PAGE];
const DATA_START: usize = 3 * PAGE;
const ALIGN: usize = 16;
const NODE: u8 = 1;
/// The parts of a file that are not zero padding: (offset, length).
const MEANINGFUL: [(usize, usize); 3] = [(0, HEADER_LEN), (PAGE, SUPERBLOCK_LEN), (2 * PAGE, SUPERBLOCK_LEN)];

const LAYOUT: u8 = 0;
const FILE: u8 = 1;
const COMPACT: u8 = 2;
const DAMAGED: u8 = 3;
const STRINGS: u8 = 0x40;
const RESEAL: u8 = 0x80;

fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::Once = std::sync::Once::new();
    SEEDS.call_once(write_seeds);
    let Some((&mode, bytes)) = data.split_first() else { return };
    let reseal = mode & RESEAL != 0;
    let strings = mode & STRINGS != 0;
    match mode & 3 {
        LAYOUT => layout(bytes, reseal),
        FILE | COMPACT => {
            let mut file = if mode & 3 == FILE { bytes.to_vec() } else { expand(bytes) };
            if reseal {
                reseal_file(&mut file, None);
            }
            open(&file, strings);
        }
        _ => damaged(bytes, reseal),
    }
});

fn layout(bytes: &[u8], reseal: bool) {
    ghostbtree::fuzzing::decode_file_layout(bytes);
    if !reseal {
        return;
    }
    let mut header = bytes.to_vec();
    if header.len() >= HEADER_LEN {
        seal_header(&mut header);
        ghostbtree::fuzzing::decode_file_layout(&header);
    }
    let mut superblock = bytes.to_vec();
    seal_superblock(&mut superblock);
    ghostbtree::fuzzing::decode_file_layout(&superblock);
    // A frame is read whole: make the length field fit the bytes.
    let mut frame = bytes.to_vec();
    if frame.len() >= ALIGN && frame.len().is_multiple_of(ALIGN) {
        if frame_len(u32_at(&frame, 0) as usize) != frame.len() {
            let n = frame.len() as u32 - 12;
            frame[..4].copy_from_slice(&n.to_le_bytes());
        }
        seal_frame(&mut frame);
        ghostbtree::fuzzing::decode_file_layout(&frame);
    }
}

fn damaged(bytes: &[u8], reseal: bool) {
    let [which, cut_lo, cut_hi, edits @ ..] = bytes else { return };
    let templates = templates();
    let template = &templates[usize::from(*which) % templates.len()];
    let mut file = template.bytes.clone();
    let compact_len = compact(&file).len();
    for edit in edits.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % compact_len;
        file[in_file(at)] ^= edit[2];
    }
    if reseal {
        reseal_file(&mut file, Some(&template.frames));
    }
    let cut = usize::from(u16::from_le_bytes([*cut_lo, *cut_hi]));
    if cut != 0 {
        file.truncate(in_file(cut % compact_len));
    }
    open(&file, template.strings);
}

/// Where byte `at` of the compact layout is in the file.
fn in_file(mut at: usize) -> usize {
    for (offset, len) in MEANINGFUL {
        if at < len {
            return offset + at;
        }
        at -= len;
    }
    DATA_START + at
}

/// A compact file ([`compact`]) with its zero padding put back. Bytes
/// that run out mid-part make a file that ends there.
fn expand(bytes: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(DATA_START + bytes.len());
    let mut rest = bytes;
    for (offset, len) in MEANINGFUL {
        let (part, tail) = rest.split_at(len.min(rest.len()));
        file.resize(offset, 0);
        file.extend_from_slice(part);
        if part.len() < len {
            return file;
        }
        rest = tail;
    }
    file.resize(DATA_START, 0);
    file.extend_from_slice(rest);
    file
}

/// A file without the zero padding of its first three pages.
fn compact(file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (offset, len) in MEANINGFUL {
        out.extend_from_slice(&file[offset.min(file.len())..(offset + len).min(file.len())]);
    }
    out.extend_from_slice(&file[DATA_START.min(file.len())..]);
    out
}

// Resealing: the checksums each part of a file carries, recomputed.

fn crc_into(bytes: &mut [u8], body: std::ops::Range<usize>) {
    let crc = crc32fast::hash(&bytes[body.clone()]);
    bytes[body.end..body.end + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn frame_len(payload: usize) -> usize {
    (payload + 12).next_multiple_of(ALIGN)
}

fn seal_header(header: &mut [u8]) {
    crc_into(header, 0..HEADER_LEN - 4);
}

/// The commit record inside, then the superblock.
fn seal_superblock(slot: &mut [u8]) {
    if slot.len() < 48 {
        return;
    }
    let n = u32_at(slot, 40) as usize;
    if n > 256 || 48 + n > slot.len() {
        return;
    }
    if n >= 4 {
        crc_into(slot, 44..44 + n - 4);
    }
    crc_into(slot, 0..44 + n);
}

/// The node record inside (if it is one), then the frame at the start of
/// `bytes`; returns the frame's length, or `None` if it does not fit.
fn seal_frame(bytes: &mut [u8]) -> Option<usize> {
    if bytes.len() < ALIGN {
        return None;
    }
    let n = u32_at(bytes, 0) as usize;
    let len = frame_len(n);
    if len > bytes.len() {
        return None;
    }
    if bytes[4] == NODE && n >= 4 {
        crc_into(bytes, 8..8 + n - 4);
    }
    crc_into(bytes, 0..8 + n);
    Some(len)
}

/// Reseals the header, both superblocks and the frames: those at
/// `frames` (where a template's were), else every frame a walk from the
/// first record on finds (zeros are free space).
fn reseal_file(file: &mut [u8], frames: Option<&[(usize, usize)]>) {
    if file.len() >= HEADER_LEN {
        seal_header(file);
    }
    for at in SLOTS {
        if at < file.len() {
            let end = (at + SUPERBLOCK_LEN).min(file.len());
            seal_superblock(&mut file[at..end]);
        }
    }
    match frames {
        Some(frames) => {
            for &(at, len) in frames {
                if at + len <= file.len() {
                    seal_frame(&mut file[at..at + len]);
                }
            }
        }
        None => {
            let mut at = DATA_START;
            while at + ALIGN <= file.len() {
                if file[at..at + ALIGN].iter().all(|&b| b == 0) {
                    at += ALIGN;
                    continue;
                }
                at += seal_frame(&mut file[at..]).unwrap_or(ALIGN);
            }
        }
    }
}

// The tree over the file.

/// Keys and values a test can make.
trait Sample: Codec + Ord + Clone + Debug + Send + Sync + 'static {
    fn nth(i: u64) -> Self;
}

impl Sample for u64 {
    fn nth(i: u64) -> u64 {
        i
    }
}

impl Sample for String {
    fn nth(i: u64) -> String {
        format!("key {i}")
    }
}

impl Sample for Vec<u8> {
    fn nth(i: u64) -> Vec<u8> {
        i.to_le_bytes()[..(i % 9) as usize].to_vec()
    }
}

/// Tiny nodes and budget (evictions and reloads), and no checkpoint but
/// the tree's own: the same input runs the same way every time.
fn config() -> Config {
    Config::new()
        .leaf_capacity(4)
        .branch_capacity(3)
        .memory_budget(2 << 10)
        .checkpoint_interval(Duration::from_secs(3600))
        .flush_on_drop(false)
}

fn open(file: &[u8], strings: bool) {
    let path = scratch::path("decode.gbt");
    std::fs::write(&path, file).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    if strings {
        exercise::<String, Vec<u8>>(&path, file.len());
    } else {
        exercise::<u64, u64>(&path, file.len());
    }
}

fn exercise<K: Sample, V: Sample>(path: &Path, file_len: usize) {
    let Ok(tree) = BTree::<K, V>::open_file(path, config()) else { return };
    let first = read::<K, V>(&tree, file_len).and_then(|entries| entries.first().map(|(k, _)| k.clone()));
    // Writes: new keys, the first key found again, a removal, pops, a
    // flush and a write after it. Each may fail (a damaged node on its
    // way, a free list that does not add up).
    for i in [0, 1, 7, 1 << 20, u64::MAX] {
        let _ = tree.insert(K::nth(i), V::nth(i));
    }
    if let Some(first) = first {
        let _ = tree.insert(first, V::nth(3));
    }
    let _ = tree.remove(&K::nth(1));
    let _ = tree.pop_first();
    let _ = tree.pop_last();
    let _ = tree.flush();
    let _ = tree.insert(K::nth(2), V::nth(2));
    let _ = tree.stats();
    let _ = tree.health();
    read::<K, V>(&tree, file_len + 4096);
    if tree.close().is_err() {
        return;
    }
    // What a successful close wrote opens again (it wrote a superblock
    // newer than any other). Its contents are not compared: a free list
    // that passes its checks may still list live records, whose space the
    // writes then reused.
    let reopened = BTree::<K, V>::open_file(path, config())
        .unwrap_or_else(|e| panic!("a file close() wrote does not open: {e}"));
    read::<K, V>(&reopened, file_len + 8192);
}

/// Scans both ways, looks up what they found and some keys they did not,
/// and verifies. Everything must return; where `verify()` reports a sound
/// tree, the answers must agree and `Some(entries)` is returned.
fn read<K: Sample, V: Sample>(tree: &BTree<K, V>, file_len: usize) -> Option<Vec<(K, V)>> {
    // A tree in n bytes holds fewer than n entries: more is a loop.
    let scan = |iter: &mut dyn Iterator<Item = Result<(K, V), ghostbtree::Error>>| {
        let mut entries = Vec::new();
        for entry in iter {
            let Ok(entry) = entry else { return None };
            entries.push(entry);
            assert!(entries.len() <= file_len, "a scan yields more entries than the file has bytes");
        }
        Some(entries)
    };
    let forward = scan(&mut tree.iter());
    let mut backward = scan(&mut tree.iter().rev());
    if let Some(backward) = &mut backward {
        backward.reverse();
    }
    let probes: Vec<K> = [0, 1, 7, u64::MAX].into_iter().map(K::nth).collect();
    let found: Vec<&K> = forward.iter().flatten().map(|(k, _)| k).step_by(3).collect();
    let mut looked_up = Vec::new();
    for key in probes.iter().chain(found.iter().copied()) {
        looked_up.push((key.clone(), tree.get(key).ok()));
        let _ = tree.contains_key(key);
    }
    // An `Err` consumes nothing (the next call retries): stop at one.
    let _ = tree.range(probes[1].clone()..probes[2].clone()).take_while(Result::is_ok).take(file_len).count();
    let _ = tree.first_key_value();
    let _ = tree.last_key_value();
    let len = tree.len();
    let report = tree.verify().ok()?;
    if !report.is_ok() {
        return None;
    }
    let (Some(forward), Some(backward)) = (forward, backward) else { return None };
    assert_eq!(forward, backward, "a sound tree scans differently backwards: {report}");
    assert_eq!(forward.len(), len, "a sound tree's len() differs from its scan: {report}");
    for (key, got) in looked_up {
        let want = forward.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        if let Some(got) = got {
            assert_eq!(got, want, "a sound tree's get({key:?}) differs from its scan");
        }
    }
    Some(forward)
}

// Templates: valid files the damaged mode starts from.

struct Template {
    bytes: Vec<u8>,
    /// Where its frames are: (offset, length).
    frames: Vec<(usize, usize)>,
    /// `BTree<String, Vec<u8>>`, not `BTree<u64, u64>`.
    strings: bool,
}

fn templates() -> &'static [Template] {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let numbers = |name: &str, leaf, branch, rounds: &[(std::ops::Range<u64>, std::ops::Range<u64>)]| {
            let path = scratch::path(name);
            let _ = std::fs::remove_file(&path);
            let config = config().leaf_capacity(leaf).branch_capacity(branch).memory_budget(1 << 30);
            let tree = BTree::<u64, u64>::open_file(&path, config).unwrap();
            for (insert, remove) in rounds {
                for k in insert.clone() {
                    tree.insert(k, k * 3).unwrap();
                }
                for k in remove.clone() {
                    tree.remove(&k).unwrap();
                }
                tree.flush().unwrap();
            }
            tree.close().unwrap();
            template(std::fs::read(&path).unwrap(), false)
        };
        let strings = {
            let path = scratch::path("template-strings.gbt");
            let _ = std::fs::remove_file(&path);
            let tree = BTree::<String, Vec<u8>>::open_file(&path, config().memory_budget(1 << 30)).unwrap();
            for i in 0..30 {
                tree.insert(String::nth(i * 7 % 30), Vec::nth(i)).unwrap();
            }
            tree.flush().unwrap();
            for i in 10..20 {
                tree.remove(&String::nth(i)).unwrap();
            }
            tree.close().unwrap();
            template(std::fs::read(&path).unwrap(), true)
        };
        vec![
            numbers("template-empty.gbt", 4, 3, &[(0..0, 0..0)]),
            numbers("template-one-leaf.gbt", 4, 3, &[(1..4, 0..0)]),
            // Three levels, two checkpoints: a free list, both slots valid.
            numbers("template-three-levels.gbt", 4, 3, &[(0..40, 0..0), (100..110, 10..25)]),
            // Wide nodes, merges.
            numbers("template-wide.gbt", 64, 128, &[(0..150, 0..0), (0..0, 20..90)]),
            strings,
        ]
    })
}

fn template(bytes: Vec<u8>, strings: bool) -> Template {
    let mut frames = Vec::new();
    let mut at = DATA_START;
    while at + ALIGN <= bytes.len() {
        let n = u32_at(&bytes, at) as usize;
        let len = frame_len(n);
        let whole = n > 0
            && at + len <= bytes.len()
            && crc32fast::hash(&bytes[at..at + 8 + n]) == u32_at(&bytes, at + 8 + n);
        if whole {
            frames.push((at, len));
            at += len;
        } else {
            at += ALIGN;
        }
    }
    Template { bytes, frames, strings }
}

/// With `GHOSTBTREE_DECODE_SEEDS=dir`, writes the seed corpus there (see
/// the module docs).
fn write_seeds() {
    let Some(dir) = std::env::var_os("GHOSTBTREE_DECODE_SEEDS") else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let templates = templates();
    let seed = |name: &str, mode: u8, bytes: &[u8]| {
        let mut seed = vec![mode];
        seed.extend_from_slice(bytes);
        std::fs::write(dir.join(name), seed).unwrap();
    };
    let (one_leaf, three_levels) = (&templates[1], &templates[2]);
    seed("file-one-leaf", FILE, &one_leaf.bytes);
    for (name, template) in [("empty", &templates[0]), ("one-leaf", one_leaf), ("three-levels", three_levels)]
    {
        seed(&format!("compact-{name}"), COMPACT | RESEAL, &compact(&template.bytes));
    }
    seed("compact-strings", COMPACT | RESEAL | STRINGS, &compact(&templates[4].bytes));
    seed("layout-superblock", LAYOUT | RESEAL, &three_levels.bytes[PAGE..PAGE + SUPERBLOCK_LEN]);
    let frames = &three_levels.frames;
    let (first, last) = (frames[0], frames[frames.len() - 1]);
    seed("layout-node-frame", LAYOUT | RESEAL, &three_levels.bytes[first.0..first.0 + first.1]);
    seed("layout-last-frame", LAYOUT | RESEAL, &three_levels.bytes[last.0..last.0 + last.1]);
    seed("damaged-three-levels", DAMAGED | RESEAL, &[2, 0, 0]);
}
