//! Replays an arbitrary sequence of every public `BTree` call against the
//! tree (tiny nodes, chosen by the input) and `std::collections::BTreeMap`,
//! comparing each answer, then checks `verify()` and a full scan both ways.
//! When the input asks for a store, the tree lives over a `MemoryStore`
//! with a budget of a few nodes (constant eviction and reloading), and the
//! sequence may flush and reopen: a reopen must show the last checkpoint.
//!
//! `cargo fuzz run -s none differential` (works on stable).
#![no_main]

#[path = "../../tests/common/ops.rs"]
mod ops;

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use ghostbtree::{BTree, Config};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    leaf_capacity: u8,
    branch_capacity: u8,
    /// `Some(kib)`: over a store with a budget of `1 + kib % 16` KiB.
    store: Option<u8>,
    initial: Vec<(ops::Key, ops::Value)>,
    ops: Vec<ops::Op>,
}

fuzz_target!(|input: Input| {
    let config = Config::new()
        .leaf_capacity(2 + usize::from(input.leaf_capacity % 6))
        .branch_capacity(3 + usize::from(input.branch_capacity % 6));
    let initial: BTreeMap<ops::Key, ops::Value> = input.initial.into_iter().collect();
    let mut subject = match input.store {
        Some(kib) => {
            ops::Subject::over_store(config.memory_budget((1 + usize::from(kib % 16)) << 10), initial)
        }
        None => ops::Subject::in_memory(BTree::from_sorted(initial.clone(), config).unwrap(), initial),
    };
    for op in &input.ops {
        subject.apply(op);
    }
    subject.check();
    subject.apply(&ops::Op::Flush);
    subject.apply(&ops::Op::Reopen);
    subject.check();
});
