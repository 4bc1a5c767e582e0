//! Replays an arbitrary sequence of every public `BTree` call against the
//! tree (tiny nodes, chosen by the input) and `std::collections::BTreeMap`,
//! comparing each answer, then checks `verify()` and a full scan both ways.
//! Keys panic on command (`Op::Panicking`: the tree must be left as before
//! the call or as after it). When the input asks for a store, the tree
//! lives over a `FaultyStore` with a budget of a few nodes (constant
//! eviction and reloading, range walks meeting failed reads), and the
//! sequence may flush and reopen (with other capacities): a reopen must
//! show a state since the last flush.
//!
//! `cargo fuzz run -s none differential` (works on stable).
#![no_main]

#[path = "../../tests/common/faulty.rs"]
mod faulty;
#[path = "../../tests/common/ops.rs"]
mod ops;
#[path = "../../tests/common/panicky.rs"]
mod panicky;

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
        None => {
            let entries = initial.iter().map(|(k, v)| (panicky::Key(*k), *v));
            ops::Subject::in_memory(BTree::from_sorted(entries, config).unwrap(), initial)
        }
    };
    for op in &input.ops {
        subject.apply(op);
    }
    subject.check();
    subject.apply(&ops::Op::Flush);
    subject.apply(&ops::Op::REOPEN);
    subject.check();
});
