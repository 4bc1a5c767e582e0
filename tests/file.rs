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
