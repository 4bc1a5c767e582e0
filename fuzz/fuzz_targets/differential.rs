//! Replays an arbitrary sequence of every public `BTree` call against the
//! tree (tiny nodes, chosen by the input) and `std::collections::BTreeMap`,
//! comparing each answer, then checks `verify()` and a full scan both ways.
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
    initial: Vec<(ops::Key, ops::Value)>,
    ops: Vec<ops::Op>,
}

fuzz_target!(|input: Input| {
    let config = Config::new()
        .leaf_capacity(2 + usize::from(input.leaf_capacity % 6))
        .branch_capacity(3 + usize::from(input.branch_capacity % 6));
    let mut model: BTreeMap<ops::Key, ops::Value> = input.initial.into_iter().collect();
    let tree = BTree::from_sorted(model.clone(), config).unwrap();
    for op in &input.ops {
        ops::apply(&tree, &mut model, op);
    }
    ops::check(&tree, &model);
});
