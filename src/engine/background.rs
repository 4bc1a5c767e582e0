//! The checkpoint thread of a tree over a file: it commits a checkpoint
//! every `Config::checkpoint_interval` if anything changed, and spills
//! (writes dirty nodes back without a commit, `checkpoint.rs`) when writers
//! find dirty bytes past a quarter of the budget, or commits then if one is
//! due (`Stored::commit_due`). A failed checkpoint's error is kept (for
//! `flush`, `stats` and `health`) and the next round tries again. The
//! thread stops when its [`Background`] drops, after a last checkpoint if
//! the config asks for one.
//!
//! Backpressure is the writers' part (`Tree::checkpoint_if_dirty`): past
//! three eighths of the budget dirty (a sixteenth, with resident bytes over
//! the budget) they write back themselves unless a write back is running,
//! and further on they wait for it, so dirty bytes cannot outrun the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schedule::Woke;
use super::stored::Ending;
use super::tree::Tree;

/// The running checkpoint thread; dropping it stops the thread and waits
/// for it.
pub(crate) struct Background<K, V> {
    tree: Arc<Tree<K, V>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<K, V> Background<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts the thread for `tree`, which must be over a store, to
    /// checkpoint every `interval`.
    pub(crate) fn start(tree: &Arc<Tree<K, V>>, interval: Duration) -> std::io::Result<Background<K, V>> {
        let stored = tree.stored.as_ref().expect("a tree over a store");
        stored.schedule.set_running(true);
        let last_flush = tree.config().flush_on_drop;
        let for_thread = Arc::clone(tree);
        let thread = std::thread::Builder::new().name("ghostbtree-checkpoint".into()).spawn(move || {
            let tree = for_thread;
            let stored = tree.stored.as_ref().expect("a tree over a store");
            // Nudges may come faster than the interval: it is kept by the
            // clock, not by timeouts.
            let mut last_commit = Instant::now();
            loop {
                let woke = stored.schedule.wait(interval.saturating_sub(last_commit.elapsed()));
                let ending = match woke {
                    Woke::Stop => break,
                    _ if last_commit.elapsed() >= interval || stored.commit_due() => Ending::Commit,
                    Woke::Nudged => stored.write_back_ending(),
                    Woke::Timeout => continue,
                };
                if ending == Ending::Commit {
                    last_commit = Instant::now();
                }
                if stored.uncommitted() {
                    // Kept in `Stored::health` by the checkpoint itself.
                    let _ = tree.write_back(ending);
                }
            }
            if last_flush && stored.uncommitted() {
                let _ = tree.checkpoint();
            }
        });
        match thread {
            Ok(thread) => Ok(Background { tree: Arc::clone(tree), thread: Some(thread) }),
            Err(e) => {
                stored.schedule.set_running(false);
                Err(e)
            }
        }
    }
}

impl<K, V> Drop for Background<K, V> {
    fn drop(&mut self) {
        if let Some(stored) = &self.tree.stored {
            stored.schedule.set_running(false);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
