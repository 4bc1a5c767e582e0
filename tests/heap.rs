//! The memory account against the heap: what `stats().resident_bytes`
//! reports must be what the tree holds, or the budget bounds nothing.
//! Counted by a global allocator, so this binary holds one test: the
//! harness's other threads would allocate beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use ghostbtree::{BTree, Config};

/// The system allocator, counting the bytes it holds for the program.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; the count is a
// side effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn held() -> isize {
    HELD.load(Relaxed)
}

/// Random reads over a file ten times the budget, from two threads, then
/// random writes, then a scan: every leaf is loaded and evicted many times, and
/// the resident branches' children come to hold descriptions of what was
/// evicted from them. Throughout, what the tree holds on the heap stays
/// within a few percent of its resident bytes (keys and values are `u64`,
/// so nothing lies outside the nodes' arrays) plus what the file store
/// reports of its bookkeeping. Before descriptions were charged, the heap
/// held 1.3-1.4x the resident bytes after the reads; without the store's
/// share, 1.26x after the writes.
#[test]
fn the_heap_holds_what_the_account_says() {
    const KEYS: u64 = 200_000;
    let dir = std::env::temp_dir().join(format!("ghostbtree-heap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tree.gbt");
    {
        let tree: BTree<u64, u64> = BTree::open_file(&path, Config::new()).unwrap();
        tree.extend((0..KEYS).map(|k| (k, k))).unwrap();
        tree.close().unwrap();
    }
    let budget = (16 * KEYS / 10) as usize;
    let before = held();
    let tree: BTree<u64, u64> = BTree::open_file(&path, Config::new().memory_budget(budget)).unwrap();
    // The tree's fixed parts and per-thread buffers: a bound on what
    // neither nodes nor the store's bookkeeping are.
    let slack = 64 << 10;
    let check = |what: &str| {
        let heap = (held() - before) as usize;
        let stats = tree.stats();
        let (resident, store) = (stats.resident_bytes as usize, stats.store_memory_bytes as usize);
        assert!(resident > budget / 2, "{what}: the budget is not in use ({resident} bytes resident)");
        let counted = resident + store;
        assert!(
            heap <= counted + counted / 20 + slack,
            "{what}: the tree holds {heap} bytes of heap, its account says {resident} resident and the store {store}"
        );
        assert!(
            resident <= budget + budget / 10,
            "{what}: {resident} bytes resident against a budget of {budget}"
        );
    };
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let tree = &tree;
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15 ^ t;
                for i in 0..100_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % KEYS;
                    assert_eq!(tree.get(&key).unwrap(), Some(key), "read {i}");
                }
            });
        }
    });
    check("after reads");
    // Random writes and flushes: the file's free space splits into many
    // extents, which the store's free-space map holds in memory.
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let tree = &tree;
            s.spawn(move || {
                let mut x = 0x2545_f491_4f6c_dd1d ^ t;
                for i in 0..40_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % KEYS;
                    tree.insert(key, key).unwrap();
                    if i % 10_000 == 0 {
                        tree.flush().unwrap();
                    }
                }
            });
        }
    });
    tree.flush().unwrap();
    assert!(tree.stats().store_memory_bytes > 0);
    check("after writes");
    let mut scanned = 0;
    for entry in tree.iter() {
        let (key, value) = entry.unwrap();
        assert_eq!((key, value), (scanned, scanned));
        scanned += 1;
    }
    assert_eq!(scanned, KEYS);
    check("after a scan");
    drop(tree);
    let _ = std::fs::remove_dir_all(&dir);
}
