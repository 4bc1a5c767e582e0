//! `Key`: a `u16` whose `clone`, comparisons and equality can be made to
//! panic on command, for the tests of what a panic in a key's `Ord` or
//! `Clone` does to the tree (std's `testing/crash_test.rs` idea).
//!
//! The trigger is per thread: [`arm`] makes the `n`th next call of a kind
//! on this thread panic (once); [`disarm`] turns it off. Other threads, and
//! the model maps the tests compare against, are never affected while
//! disarmed.

#![allow(dead_code)] // each test binary uses a different part

use std::cell::Cell;
use std::cmp::Ordering;

use ghostbtree::{Codec, DecodeError};

/// A key whose trait calls can panic on command (see the module docs).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Key(pub u16);

/// Which calls [`arm`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Trigger {
    /// `Clone::clone`.
    Clone,
    /// `Ord::cmp`, `PartialOrd::partial_cmp` and `PartialEq::eq`.
    Compare,
}

thread_local! {
    /// `(kind, n)`: the `n`th next call of `kind` panics; `n == 0`: off.
    static ARMED: Cell<(Trigger, u32)> = const { Cell::new((Trigger::Clone, 0)) };
}

/// The `n`th next call of `kind` on this thread panics (`n >= 1`).
pub fn arm(kind: Trigger, n: u32) {
    ARMED.with(|armed| armed.set((kind, n)));
}

/// No call panics on this thread any more. Returns whether the armed
/// panic had fired (or nothing was armed).
pub fn disarm() -> bool {
    ARMED.with(|armed| armed.replace((Trigger::Clone, 0)).1 == 0)
}

fn tick(kind: Trigger) {
    ARMED.with(|armed| {
        let (armed_kind, n) = armed.get();
        if armed_kind == kind && n > 0 {
            armed.set((kind, n - 1));
            if n == 1 {
                panic!("injected panic in {kind:?}");
            }
        }
    });
}

impl Clone for Key {
    fn clone(&self) -> Key {
        tick(Trigger::Clone);
        Key(self.0)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        tick(Trigger::Compare);
        self.0 == other.0
    }
}

impl Eq for Key {}

/// By hand, as `PartialEq` is (clippy's `derived_hash_with_manual_eq`);
/// hashing never panics.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        tick(Trigger::Compare);
        self.0.cmp(&other.0)
    }
}

impl Codec for Key {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }

    fn decode(input: &mut &[u8]) -> Result<Key, DecodeError> {
        u16::decode(input).map(Key)
    }
}

/// Runs `f` with the `n`th `kind` call on this thread armed to panic, and
/// returns its result, or `None` if it panicked (the panic's message is not
/// printed). The trigger is off again afterwards either way.
pub fn with_panic_at<R>(kind: Trigger, n: u32, f: impl FnOnce() -> R) -> Option<R> {
    arm(kind, n);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    disarm();
    result.ok()
}

/// Keeps injected panics from printing their message and backtrace (they
/// are expected); every other panic still prints.
pub fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected =
                info.payload().downcast_ref::<String>().is_some_and(|m| m.starts_with("injected panic"));
            if !injected {
                default(info);
            }
        }));
    });
}
