//! Bad input for `BTree::open_file`, through the public API on real files:
//! each is an `Err` that names the problem and the path, never a panic,
//! and a failed open leaves the file as it was. Also: a file that is open
//! already (here or in another process), a write past what the file may
//! grow to while checkpointing, and a corrupt node found while loading,
//! which fails that operation only.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ghostbtree::{BTree, Config, FileStore};

type Tree = BTree<u64, u64>;
type State = BTreeMap<u64, u64>;

const PAGE: u64 = 4096;
const SUPERBLOCK_AT: [u64; 2] = [PAGE, 2 * PAGE];
const DATA_START: u64 = 3 * PAGE;

fn config() -> Config {
    Config::new()
        .leaf_capacity(4)
        .branch_capacity(4)
        .flush_on_drop(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

/// Held by every test here. A child process spawned by one test (`sh`,
/// `chattr`) holds a copy of every descriptor of this process from its
/// fork until its exec closes them, and with them the locks of files other
/// tests have open: a test that drops its tree and opens the file again at
/// that moment finds it locked still.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ghostbtree-errors-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opening `path` fails with a message naming it and saying `why`; the
/// file (if any) is left as it was.
#[track_caller]
fn assert_refused(path: &Path, why: &str) -> String {
    let before = fs::read(path).ok();
    let message = match BTree::<u64, u64>::open_file(path, config()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(error) => error.to_string(),
    };
    assert!(message.contains(&path.display().to_string()), "no path in: {message}");
    assert!(message.contains(why), "expected {why:?} in: {message}");
    assert_eq!(fs::read(path).ok(), before, "a failed open changed {}", path.display());
    message
}

/// A file with three checkpoints; the states of the last two.
fn build(path: &Path) -> (State, State) {
    let tree: Tree = BTree::open_file(path, config()).unwrap();
    let mut state = State::new();
    let mut states = Vec::new();
    for round in 0..3u64 {
        for key in (round..100).step_by(round as usize + 1) {
            tree.insert(key, key * 10 + round).unwrap();
            state.insert(key, key * 10 + round);
        }
        tree.flush().unwrap();
        states.push(state.clone());
    }
    drop(tree);
    (states[1].clone(), states[2].clone())
}

/// `path` opens and holds exactly `state`.
#[track_caller]
fn assert_holds(path: &Path, state: &State) {
    let tree: Tree = BTree::open_file(path, config()).unwrap();
    let found: State = tree.iter().collect::<Result<_, _>>().unwrap();
    assert!(&found == state, "{} entries, expected {}", found.len(), state.len());
    assert_eq!(tree.len(), state.len());
    assert!(tree.verify().unwrap().is_ok());
}

fn u64_at(bytes: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap())
}

/// The slot of the newest superblock, and where its used space ends.
fn newest(bytes: &[u8]) -> (usize, u64) {
    let sequence = |slot: usize| u64_at(bytes, SUPERBLOCK_AT[slot] + 8);
    let slot = if sequence(0) > sequence(1) { 0 } else { 1 };
    (slot, u64_at(bytes, SUPERBLOCK_AT[slot] + 16))
}

#[test]
fn a_directory_is_refused() {
    let _serial = serial();
    let dir = dir("directory");
    assert_refused(&dir, "is a directory");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_directory_is_refused() {
    let _serial = serial();
    let dir = dir("missing");
    let path = dir.join("no such directory").join("t.gbt");
    assert_refused(&path, "does not exist");
    assert!(!dir.join("no such directory").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_that_are_not_ours_are_refused() {
    let _serial = serial();
    let dir = dir("foreign");
    let mut state = 0x1234_5678_9abc_def1u64;
    let random: Vec<u8> = (0..20_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let cases: [(&str, Vec<u8>); 5] = [
        ("zeros", vec![0; 16384]),
        ("random", random),
        ("text", b"name,value\nalpha,1\nbeta,2\n".repeat(500)),
        ("one byte", vec![b'G']),
        ("magic only", b"GHOSTBT\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        fs::write(&path, &bytes).unwrap();
        let why = if name == "magic only" { "is truncated" } else { "is not a ghostbtree file" };
        assert_refused(&path, why);
    }

    // Our magic, a bad header checksum.
    let path = dir.join("bad crc");
    build(&path);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[1], 20).unwrap(); // a reserved byte
    assert_refused(&path, "has a damaged header: checksum mismatch");
    // Bytes after the header in its page.
    file.write_all_at(&[0], 20).unwrap();
    file.write_all_at(&[1], 1000).unwrap();
    assert_refused(&path, "damaged header page");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_newer_format_version_is_refused() {
    let _serial = serial();
    let dir = dir("version");
    let path = dir.join("t.gbt");
    build(&path);
    let mut header = fs::read(&path).unwrap()[..64].to_vec();
    header[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&header, 0).unwrap();
    assert_refused(&path, "file format version 2 is newer than this build of ghostbtree reads (1)");
    // An older (never written) version, checksum right: damaged.
    header[8..12].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&header, 0).unwrap();
    assert_refused(&path, "has a damaged header: format version 0");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_files_are_refused_and_an_empty_one_is_a_new_tree() {
    let _serial = serial();
    let dir = dir("truncated");
    let path = dir.join("t.gbt");
    let (_, last) = build(&path);
    let original = fs::read(&path).unwrap();
    let (_, end) = newest(&original);
    let len = original.len() as u64;
    assert!(end > DATA_START + 1024 && end <= len);
    let cuts = [
        (1, "is not a ghostbtree file"),
        (7, "is not a ghostbtree file"),
        (8, "is truncated: 8 bytes, shorter than the header"),
        (40, "is truncated: 40 bytes, shorter than the header"),
        (63, "is truncated: 63 bytes, shorter than the header"),
        (64, "is truncated: 64 bytes, where a ghostbtree file has at least 12288"),
        (4095, "is truncated"),
        (4096, "is truncated"),
        (4096 + 100, "is truncated"), // inside superblock slot 0
        (8192 + 100, "is truncated"), // inside superblock slot 1
        (DATA_START - 1, "is truncated"),
        (DATA_START, "is truncated: its last checkpoint needs"),
        (DATA_START + 100, "is truncated: its last checkpoint needs"), // inside the records
        (end - 16, "is truncated: its last checkpoint needs"),
        (end - 1, "is truncated: its last checkpoint needs"),
    ];
    for (cut, why) in cuts {
        fs::write(&path, &original[..cut as usize]).unwrap();
        assert_refused(&path, why);
    }
    // Past the used end the file holds nothing: the tree is whole.
    fs::write(&path, &original[..end as usize]).unwrap();
    assert_holds(&path, &last);

    // Empty: initialized as a new tree (a tempfile helper makes these).
    fs::write(&path, b"").unwrap();
    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    assert!(tree.is_empty() && tree.get(&1).unwrap().is_none());
    tree.insert(1, 2).unwrap();
    tree.close().unwrap();
    assert_holds(&path, &State::from([(1, 2)]));
    assert!(fs::metadata(&path).unwrap().len() >= DATA_START);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_newest_superblock_falls_back_to_the_previous_checkpoint() {
    let _serial = serial();
    let dir = dir("torn");
    let path = dir.join("t.gbt");
    let (previous, last) = build(&path);
    let original = fs::read(&path).unwrap();
    let (slot, _) = newest(&original);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    // A torn write: its first sector new garbage, the rest as it was.
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    file.write_all_at(&garbage, SUPERBLOCK_AT[slot]).unwrap();
    assert_holds(&path, &previous);
    // Zeros (a slot never written) fall back the same way.
    file.write_all_at(&[0; 4096], SUPERBLOCK_AT[slot]).unwrap();
    assert_holds(&path, &previous);
    // The fallback takes writes, and the checkpoint goes over the torn slot.
    file.write_all_at(&garbage, SUPERBLOCK_AT[slot]).unwrap();
    {
        let tree: Tree = BTree::open_file(&path, config()).unwrap();
        tree.insert(1000, 1).unwrap();
        tree.close().unwrap();
    }
    let mut state = previous.clone();
    state.insert(1000, 1);
    assert_holds(&path, &state);
    assert_ne!(state, last);
    // Both slots garbage: refused, saying why for each.
    for at in SUPERBLOCK_AT {
        file.write_all_at(&garbage, at).unwrap();
    }
    let message = assert_refused(&path, "has no valid superblock (slot 0: no superblock magic; slot 1:");
    println!("{message}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Clears the immutable attribute on drop (even when a test panics: the
/// directory could not be removed otherwise).
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

#[test]
fn a_read_only_file_is_refused() {
    let _serial = serial();
    let dir = dir("read-only");
    let path = dir.join("t.gbt");
    build(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    if fs::OpenOptions::new().write(true).open(&path).is_err() {
        assert_refused(&path, "cannot open it for writing, which a ghostbtree store needs");
    } else {
        // Root: modes do not apply. The immutable attribute does, where
        // `chattr` and the file system have it.
        println!("a read-only file opens for writing here (running as root?): trying chattr +i");
        let set = Command::new("chattr").arg("+i").arg(&path).output();
        if set.is_ok_and(|out| out.status.success()) {
            let _guard = Immutable(&path);
            assert_refused(&path, "cannot open it for writing, which a ghostbtree store needs");
        } else {
            println!("skipped: no chattr +i either");
        }
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_open_in_this_process_fails_until_the_first_is_dropped() {
    let _serial = serial();
    let dir = dir("second-open");
    let path = dir.join("t.gbt");
    let (_, last) = build(&path);
    let first: Tree = BTree::open_file(&path, config()).unwrap();
    assert_refused(&path, "is open already");
    let store = FileStore::open(&path).unwrap_err().to_string();
    assert!(store.contains("is open already") && store.contains(&path.display().to_string()), "{store}");
    assert_eq!(first.get(&3).unwrap(), last.get(&3).copied());
    drop(first);
    assert_holds(&path, &last);
    fs::remove_dir_all(&dir).unwrap();
}

/// Set for a child process of the tests below: what it should do.
const CHILD: &str = "GHOSTBTREE_ERRORS_CHILD";

/// Runs `test` of this binary in a child process with `CHILD` set to
/// `what`, through `sh -c` with `shell` before it; returns its stdout.
fn child(test: &str, what: &str, shell: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell} exec \"$0\" \"$1\" --exact --nocapture --test-threads=1"))
        .arg(exe)
        .arg(test)
        .env(CHILD, what)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// In a child process: opens the file named by `CHILD` and says how it went.
#[test]
fn child_opens_a_file() {
    let _serial = serial();
    let Some(path) = std::env::var_os(CHILD).filter(|what| !what.is_empty()) else { return };
    match BTree::<u64, u64>::open_file(&path, config()) {
        Ok(tree) => println!("CHILD: opened, {} entries", tree.len()),
        Err(error) => println!("CHILD: refused: {error}"),
    }
}

#[test]
fn a_second_open_from_another_process_fails_while_the_first_holds_it() {
    let _serial = serial();
    let dir = dir("other-process");
    let path = dir.join("t.gbt");
    let (_, last) = build(&path);
    let first: Tree = BTree::open_file(&path, config()).unwrap();
    let said = child("child_opens_a_file", path.to_str().unwrap(), "");
    assert!(said.contains("CHILD: refused:") && said.contains("is open already"), "{said}");
    assert!(said.contains(&path.display().to_string()), "{said}");
    drop(first);
    let said = child("child_opens_a_file", path.to_str().unwrap(), "");
    assert!(said.contains(&format!("CHILD: opened, {} entries", last.len())), "{said}");
    fs::remove_dir_all(&dir).unwrap();
}

/// In a child process whose files may not grow past a limit (`ulimit -f`,
/// SIGXFSZ ignored, so writes past it fail with EFBIG): opens the file
/// named by `CHILD`, adds keys 1000.. until a checkpoint fails, and checks
/// the tree still holds everything in memory.
#[test]
fn child_checkpoints_past_the_file_size_limit() {
    let _serial = serial();
    let Some(path) = std::env::var_os(CHILD).filter(|what| !what.is_empty()) else { return };
    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    for round in 0..50u64 {
        for key in 0..20 {
            tree.insert(1000 + round * 20 + key, round).unwrap();
        }
        if let Err(error) = tree.flush() {
            assert!(tree.health().is_err());
            for key in 0..(round + 1) * 20 {
                assert_eq!(tree.get(&(1000 + key)).unwrap(), Some(key / 20));
            }
            println!("CHILD: flush {round} failed: {error}");
            // Retrying while the file still may not grow fails again.
            println!("CHILD: retry ok: {}", tree.flush().is_ok());
            return;
        }
        println!("CHILD: flush {round} ok");
    }
    println!("CHILD: never failed");
}

/// A real disk-full needs a small file system (a tmpfs mount takes root);
/// a file size limit makes a real file refuse to grow the same way, with
/// EFBIG where a full disk says ENOSPC. The checkpoint that meets it
/// fails, the previous one stays whole, and without the limit the next
/// checkpoint succeeds.
#[test]
fn a_checkpoint_that_cannot_grow_the_file_fails_and_keeps_the_previous_one() {
    let _serial = serial();
    let dir = dir("file-size-limit");
    let path = dir.join("t.gbt");
    let (_, last) = build(&path);
    let len = fs::metadata(&path).unwrap().len();
    // dash counts `ulimit -f` in 512-byte blocks, bash in 1024: either way
    // the limit is at most the file's length now.
    let limit = format!("trap '' XFSZ; ulimit -f {} &&", len / 1024);
    let said = child("child_checkpoints_past_the_file_size_limit", path.to_str().unwrap(), &limit);
    println!("{said}");
    assert!(said.contains("CHILD: flush 0 failed:") && said.contains("File too large"), "{said}");
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(said.contains("CHILD: retry ok: false"), "{said}");
    // Every flush in the child failed: the last checkpoint here is whole.
    assert_holds(&path, &last);
    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    tree.insert(1000, 1).unwrap();
    tree.close().unwrap();
    let mut state = last.clone();
    state.insert(1000, 1);
    assert_holds(&path, &state);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_leaf_fails_only_the_operations_that_need_it() {
    let _serial = serial();
    let dir = dir("corrupt-leaf");
    let path = dir.join("t.gbt");
    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    let mut state = State::new();
    for key in 0..200 {
        tree.insert(key, key).unwrap();
        state.insert(key, key);
    }
    tree.flush().unwrap();
    // The first commit frees nothing, so the next checkpoint appends at
    // its end: the changed leaf first (children before parents).
    let (_, end) = newest(&fs::read(&path).unwrap());
    tree.insert(77, 7777).unwrap();
    state.insert(77, 7777);
    tree.close().unwrap();
    let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, end + 12).unwrap();
    file.write_all_at(&[byte[0] ^ 0x55], end + 12).unwrap();

    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    let mut failed = Vec::new();
    for key in 0..200 {
        match tree.get(&key) {
            Ok(value) => assert_eq!(value, Some(state[&key]), "key {key}"),
            Err(error) => {
                assert!(error.to_string().contains("corrupt node record"), "{error}");
                failed.push(key);
            }
        }
    }
    // One leaf's keys, 77 among them; everything else reads.
    assert!(failed.contains(&77) && failed.len() <= 4, "{failed:?}");
    assert!(failed.windows(2).all(|w| w[1] == w[0] + 1), "{failed:?}");
    assert!(tree.get(&77).is_err(), "the node stays a ghost and fails again");
    let below: Vec<u64> =
        tree.range(..failed[0]).map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>().unwrap();
    assert_eq!(below.len() as u64, failed[0]);
    assert!(tree.iter().collect::<Result<Vec<_>, _>>().is_err());
    assert!(tree.verify().is_err());
    // Writes elsewhere work and are checkpointed.
    tree.insert(150, 1).unwrap();
    tree.close().unwrap();
    let tree: Tree = BTree::open_file(&path, config()).unwrap();
    assert_eq!(tree.get(&150).unwrap(), Some(1));
    assert!(tree.get(&77).is_err());
    drop(tree);
    fs::remove_dir_all(&dir).unwrap();
}

/// A superblock of a newer format (its checksum whole) is refused, not
/// skipped as torn: falling back to the older slot would hide the newer
/// checkpoint.
#[test]
fn a_superblock_of_a_newer_format_is_refused() {
    let dir = std::env::temp_dir().join(format!("ghostbtree-newer-sb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.gbt");
    let tree = ghostbtree::BTree::open_file(&path, ghostbtree::Config::new()).unwrap();
    tree.insert(1u64, 1u64).unwrap();
    tree.flush().unwrap();
    tree.insert(2, 2).unwrap();
    tree.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The newest slot: the higher sequence number.
    let seq = |at: usize| u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
    let at = if seq(4096) > seq(8192) { 4096 } else { 8192 };
    bytes[at + 4..at + 8].copy_from_slice(&2u32.to_le_bytes());
    let n = u32::from_le_bytes(bytes[at + 40..at + 44].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&bytes[at..at + 44 + n]);
    bytes[at + 44 + n..at + 48 + n].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let error =
        ghostbtree::BTree::<u64, u64>::open_file(&path, ghostbtree::Config::new()).err().unwrap().to_string();
    assert!(error.contains("newer") && error.contains("t.gbt"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
