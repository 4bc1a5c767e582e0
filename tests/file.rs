//! The file store through the public API: create, reopen, errors.

use ghostbtree::{BTree, Config};

fn dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ghostbtree-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_tree_survives_close_and_reopen_and_reuses_space() {
    let dir = dir("reopen");
    let path = dir.join("t.gbt");
    let config = Config::new().leaf_capacity(16).branch_capacity(8);
    {
        let tree = BTree::open_file(&path, config.clone()).unwrap();
        for i in 0..20_000u64 {
            tree.insert(i, i * 2).unwrap();
        }
        tree.flush().unwrap();
        for round in 0..5u64 {
            for i in (0..20_000u64).step_by(3) {
                tree.insert(i, i + round).unwrap();
            }
            tree.flush().unwrap();
        }
        let stats = tree.stats();
        println!("{stats:?}");
        assert!(stats.file_bytes <= 3 * stats.live_bytes, "{stats:?}");
        tree.close().unwrap();
    }
    let tree: BTree<u64, u64> = BTree::open_file(&path, config).unwrap();
    assert_eq!(tree.len(), 20_000);
    for i in 0..20_000u64 {
        let want = if i % 3 == 0 { i + 4 } else { i * 2 };
        assert_eq!(tree.get(&i).unwrap(), Some(want), "key {i}");
    }
    assert!(tree.verify().unwrap().is_ok());
    // Writes after a reopen reuse the free space the file records.
    let before = tree.stats().file_bytes;
    for i in (0..20_000u64).step_by(2) {
        tree.remove(&i).unwrap();
    }
    tree.close().unwrap();
    let tree: BTree<u64, u64> = BTree::open_file(&path, Config::new()).unwrap();
    assert_eq!(tree.len(), 10_000);
    assert!(tree.iter().all(|entry| entry.unwrap().0 % 2 == 1));
    assert!(tree.stats().file_bytes <= before, "{:?}", tree.stats());
    drop(tree);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression: the free-list record is padded to the bound `prepare`
/// allocates for it, and the decoder demanded a payload of exactly its
/// extents: once a checkpoint had written a free list, the first write
/// checkpointed after a reopen failed ("a free list of N extents in M
/// bytes"), and so did every one after it.
#[test]
fn a_checkpoint_after_reopen_reads_the_padded_free_list() {
    let dir = dir("free-list");
    let path = dir.join("t.gbt");
    let config = Config::new().leaf_capacity(4).branch_capacity(4);
    {
        let tree = BTree::open_file(&path, config.clone()).unwrap();
        for round in 0..3u64 {
            for i in 0..100u64 {
                tree.insert(i, i + round).unwrap();
            }
            tree.flush().unwrap();
        }
        tree.close().unwrap();
    }
    for round in 3..6u64 {
        let tree = BTree::open_file(&path, config.clone()).unwrap();
        assert_eq!(tree.get(&7).unwrap(), Some(7 + round - 1));
        tree.insert(7u64, 7 + round).unwrap();
        tree.close().unwrap();
    }
    let tree: BTree<u64, u64> = BTree::open_file(&path, config).unwrap();
    assert_eq!(tree.get(&7).unwrap(), Some(12));
    assert!(tree.verify().unwrap().is_ok());
    drop(tree);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression: a superblock was written as its 304 bytes, not as the whole
/// slot, so garbage after them in the slot (which open rejects: "non-zero
/// bytes after the superblock") outlived the checkpoints written over it.
/// After a fallback from such a slot, the next checkpoint went into it,
/// `flush` returned `Ok`, and a reopen fell back again: the checkpoint was
/// lost (and the one after it would reuse the space of records the older
/// superblock still names).
#[test]
fn a_checkpoint_over_a_damaged_superblock_slot_clears_it() {
    use std::os::unix::fs::FileExt;
    let dir = dir("slot-tail");
    let path = dir.join("t.gbt");
    let config = Config::new().leaf_capacity(4).branch_capacity(4);
    {
        let tree = BTree::open_file(&path, config.clone()).unwrap();
        tree.insert(1u64, 1u64).unwrap();
        tree.flush().unwrap(); // slot 0
        tree.insert(1, 2).unwrap();
        tree.close().unwrap(); // slot 1
    }
    // Garbage in slot 1 (at 8192) after its superblock: open falls back.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xff], 8192 + 1000).unwrap();
    drop(file);
    let tree: BTree<u64, u64> = BTree::open_file(&path, config.clone()).unwrap();
    assert_eq!(tree.get(&1).unwrap(), Some(1));
    tree.insert(1, 3).unwrap();
    tree.close().unwrap(); // into slot 1 again
    let tree: BTree<u64, u64> = BTree::open_file(&path, config).unwrap();
    assert_eq!(tree.get(&1).unwrap(), Some(3), "the checkpoint after the fallback was lost");
    drop(tree);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression: every free-list record is written padded to an upper bound
/// of its extents (its frame is allocated before the list is known), and
/// the reader wanted the payload to be exactly the extents: the first write
/// after a reopen that read the free list failed ("a free list of 1
/// extents in 68 bytes"). Found by tests/crash.rs.
#[test]
fn a_reopened_tree_takes_writes_and_flushes() {
    let dir = dir("rewrite");
    let path = dir.join("t.gbt");
    let config = Config::new().leaf_capacity(4).branch_capacity(4);
    for round in 0..4u64 {
        let tree: BTree<u64, u64> = BTree::open_file(&path, config.clone()).unwrap();
        assert_eq!(tree.len(), if round == 0 { 0 } else { 1000 });
        for i in 0..1000u64 {
            tree.insert(i, i + round).unwrap();
        }
        tree.flush().unwrap();
        tree.close().unwrap();
    }
    let tree: BTree<u64, u64> = BTree::open_file(&path, config).unwrap();
    assert!((0..1000u64).all(|i| tree.get(&i).unwrap() == Some(i + 3)));
    assert!(tree.verify().unwrap().is_ok());
    drop(tree);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A session that only reads writes nothing: its flushes and its close
/// find nothing written since the last commit, so the file stays as it was
/// (byte for byte) and no free-space map is loaded. One write, even spilled
/// by a writer under a tiny budget, makes the next flush commit.
#[test]
fn a_read_only_session_leaves_the_file_as_it_was() {
    let dir = dir("read-only-session");
    let path = dir.join("t.gbt");
    let config = Config::new().leaf_capacity(16).branch_capacity(8);
    {
        let tree = BTree::open_file(&path, config.clone()).unwrap();
        for i in 0..20_000u64 {
            tree.insert(i, i * 2).unwrap();
        }
        tree.close().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    {
        let tree: BTree<u64, u64> = BTree::open_file(&path, config.clone().memory_budget(64 << 10)).unwrap();
        for i in (0..20_000u64).step_by(7) {
            assert_eq!(tree.get(&i).unwrap(), Some(i * 2));
        }
        assert_eq!(tree.iter().count(), 20_000);
        tree.flush().unwrap();
        let stats = tree.stats();
        assert_eq!((stats.checkpoints, stats.store_writes, stats.store_memory_bytes), (0, 0, 0), "{stats:?}");
        tree.close().unwrap();
    }
    assert!(std::fs::read(&path).unwrap() == before, "a read-only session changed the file");
    {
        let tree: BTree<u64, u64> = BTree::open_file(&path, config.clone().memory_budget(16 << 10)).unwrap();
        for i in 0..2_000u64 {
            tree.insert(i, i * 3).unwrap();
        }
        assert!(tree.stats().spills > 0, "{:?}", tree.stats());
        tree.flush().unwrap();
        assert!(tree.stats().checkpoints >= 1, "{:?}", tree.stats());
        // Nothing written since: a second flush commits nothing more.
        let commits = tree.stats().checkpoints;
        tree.flush().unwrap();
        assert_eq!(tree.stats().checkpoints, commits);
    }
    let tree: BTree<u64, u64> = BTree::open_file(&path, config).unwrap();
    for i in 0..2_000u64 {
        assert_eq!(tree.get(&i).unwrap(), Some(i * 3), "key {i}");
    }
    assert!(tree.verify().unwrap().is_ok());
    drop(tree);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads leave the file's access time alone (`O_NOATIME`, on Linux, for
/// the owner), where a plain read on the same filesystem updates it: the
/// kernel would otherwise check the clock and the time on every `pread`.
#[test]
#[cfg(target_os = "linux")]
fn reads_leave_the_access_time_alone() {
    use std::fs::{File, FileTimes};
    use std::time::{Duration, SystemTime};
    let dir = dir("noatime");
    let path = dir.join("t.gbt");
    {
        let tree = BTree::open_file(&path, Config::new().leaf_capacity(16)).unwrap();
        for i in 0..5_000u64 {
            tree.insert(i, i).unwrap();
        }
        tree.close().unwrap();
    }
    // Three days back: relatime, the usual mount option, updates an access
    // time older than a day on the next read.
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    let set_old = || {
        let file = File::options().write(true).open(&path).unwrap();
        file.set_times(FileTimes::new().set_accessed(old)).unwrap();
    };
    let accessed = || std::fs::metadata(&path).unwrap().accessed().unwrap();
    set_old();
    std::fs::read(&path).unwrap();
    if accessed() < old + Duration::from_secs(86_400) {
        println!("skipped: this filesystem does not update access times on reads");
        return;
    }
    set_old();
    {
        let tree: BTree<u64, u64> = BTree::open_file(&path, Config::new().memory_budget(16 << 10)).unwrap();
        for i in (0..5_000u64).step_by(7) {
            assert_eq!(tree.get(&i).unwrap(), Some(i));
        }
        assert!(tree.stats().store_reads > 100, "{:?}", tree.stats());
        tree.close().unwrap();
    }
    assert!(accessed() < old + Duration::from_secs(86_400), "the tree's reads updated the access time");
    let _ = std::fs::remove_dir_all(&dir);
}
