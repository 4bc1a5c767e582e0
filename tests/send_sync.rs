//! Pins the thread-safety promises: the tree is `Send + Sync` and shareable
//! by `&` across threads; iterators are `Send` (they hold `Arc`s, never a
//! thread-bound guard). The negative case is a `compile_fail` doctest in the
//! crate docs.

use ghostbtree::{BTree, Range};

fn send<T: Send>() {}
fn sync<T: Sync>() {}

#[test]
fn tree_is_send_and_sync_and_iterators_are_send() {
    send::<BTree<u64, String>>();
    sync::<BTree<u64, String>>();
    send::<Range<'static, u64, String>>();
}

#[test]
fn an_iterator_can_finish_on_another_thread() {
    let tree: BTree<u32, u32> = (0..1000).map(|k| (k, k)).collect();
    let mut iter = tree.range(10..);
    assert_eq!(iter.next().unwrap().unwrap(), (10, 10));
    let rest = std::thread::scope(|s| s.spawn(move || iter.count()).join().unwrap());
    assert_eq!(rest, 989);
}
