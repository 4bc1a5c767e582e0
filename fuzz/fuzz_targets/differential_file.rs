//! The differential target's ops (`tests/common/ops.rs`) on a tree in a
//! file (`BTree::open_file`, tiny nodes, the checkpoint thread running),
//! with crashes: `Op::Reopen` drops the tree, opened with
//! `flush_on_drop(false)`, so what was not checkpointed is lost, and opens
//! the file again; `Op::CloseAndReopen` closes it first (nothing lost).
//! The tree must match `std::collections::BTreeMap` after every op, and a
//! reopened one pass `verify()` and show a state a checkpoint may hold.
//!
//! Two kinds of input:
//!
//! - quiet: a checkpoint interval of an hour and a budget of 1 GiB, so
//!   nothing checkpoints but `flush` and `close`, and a crash must roll
//!   back to the last flush exactly;
//! - busy: a budget of a few KiB and an interval of a few milliseconds, so
//!   nodes are evicted and reloaded from the file all the time, and the
//!   checkpoint thread and the writers' backpressure checkpoint between
//!   (and during) ops. A crash must show the state after the last flush or
//!   after some later op, and no older state than one a background
//!   checkpoint is known to hold (`Subject::raise_floor`).
//!
//! The file lives in a scratch directory of the process (`/dev/shm` where
//! there is one); each input starts with a new file.
//!
//! `cargo fuzz run -s none differential_file` (works on stable).
#![no_main]

#[path = "../../tests/common/faulty.rs"]
mod faulty;
#[path = "../../tests/common/ops.rs"]
mod ops;
#[path = "../../tests/common/panicky.rs"]
mod panicky;
#[path = "common/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use ghostbtree::Config;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    leaf_capacity: u8,
    branch_capacity: u8,
    /// `None`: quiet. `Some((kib, ms))`: busy, a budget of `1 + kib % 16`
    /// KiB and a checkpoint interval of `1 + ms % 16` ms.
    busy: Option<(u8, u8)>,
    initial: Vec<(ops::Key, ops::Value)>,
    ops: Vec<ops::Op>,
}

fuzz_target!(|input: Input| {
    let config = Config::new()
        .leaf_capacity(2 + usize::from(input.leaf_capacity % 6))
        .branch_capacity(3 + usize::from(input.branch_capacity % 6));
    let config = match input.busy {
        None => config.memory_budget(1 << 30).checkpoint_interval(Duration::from_secs(3600)),
        Some((kib, ms)) => config
            .memory_budget((1 + usize::from(kib % 16)) << 10)
            .checkpoint_interval(Duration::from_millis(1 + u64::from(ms % 16))),
    };
    let initial: BTreeMap<ops::Key, ops::Value> = input.initial.into_iter().collect();
    let path = scratch::path("differential.gbt");
    let mut subject = ops::Subject::over_file(&path, config, input.busy.is_none(), initial);
    for op in &input.ops {
        subject.apply(op);
    }
    subject.check();
    // A last crash, then a clean close: each reopen checks the state.
    subject.apply(&ops::Op::REOPEN);
    subject.apply(&ops::Op::CloseAndReopen { leaf: None, branch: None });
});
