//! The memory account of a tree over a store: resident and dirty bytes,
//! charged per node version, and the unsafe that lets versions reach it.
//!
//! # Counting
//!
//! Every node version of a tree over a store carries a [`Charge`]: its size,
//! added to the tree's [`Account`] when the version is built and taken off
//! when the version is dropped (not when it is unlinked: a version a reader
//! or a checkpoint still holds still takes memory). So does the description
//! a slot evicted in place holds (`slot.rs`, `Description`). A version built
//! by a write is also *dirty* until a checkpoint stores it. The counts are
//! striped (`striped.rs`), so no write shares a counter line with another
//! core.
//!
//! # Safety of the account pointer
//!
//! Versions refer to their tree's account by a `&'static`, reborrowed from
//! the unique reference `Box::leak` made, and the account is freed through
//! that unique reference when the tree drops ([`AccountBox`]). That is sound
//! because no version or slot outlives its tree: versions are held by the
//! tree's slots, by guards and iterators that borrow the tree, and by other
//! versions (`prev`); slots by versions, the tree and its stored state; and
//! the account drops after all of them (it is the last field of `Stored`,
//! the last field of `Tree`). A `&'static` keeps a shared reference count
//! off every write.

use super::striped::Striped;
use super::sync::{AtomicBool, Ordering};

const RESIDENT: usize = 0;
const DIRTY: usize = 1;

/// A tree's memory counts and budget.
pub(crate) struct Account {
    bytes: Striped<2>,
    budget: usize,
}

/// A version's share of its tree's memory count.
pub(crate) struct Charge {
    account: &'static Account,
    bytes: isize,
    dirty: AtomicBool,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.account.bytes.add(RESIDENT, -self.bytes);
        // Relaxed: the version is being dropped, nobody else can clean it.
        if self.dirty.load(Ordering::Relaxed) {
            self.account.bytes.add(DIRTY, -self.bytes);
        }
    }
}

impl Charge {
    /// The version is stored now: no longer dirty. Returns the bytes this
    /// call uncounted as dirty (none if it was clean).
    pub(crate) fn clean(&self) -> usize {
        // Relaxed: the flag only decides which thread uncounts the bytes,
        // and the swap makes that exactly one.
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.account.bytes.add(DIRTY, -self.bytes);
            return self.bytes.unsigned_abs();
        }
        0
    }
}

impl Account {
    /// Charges `bytes` to the account, as dirty (built by a write) or clean
    /// (loaded from the store).
    pub(crate) fn charge(&'static self, bytes: usize, dirty: bool) -> Charge {
        let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
        self.bytes.add(RESIDENT, bytes);
        if dirty {
            self.bytes.add(DIRTY, bytes);
        }
        Charge { account: self, bytes, dirty: AtomicBool::new(dirty) }
    }

    pub(crate) fn resident(&self) -> usize {
        usize::try_from(self.bytes.sum(RESIDENT)).unwrap_or(0)
    }

    pub(crate) fn dirty(&self) -> usize {
        usize::try_from(self.bytes.sum(DIRTY)).unwrap_or(0)
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// True if resident bytes exceed the budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.resident() > self.budget
    }
}

/// Owns a leaked [`Account`] and frees it when dropped (see the module docs).
///
/// It keeps the unique reference `Box::leak` gave and hands out shared
/// reborrows of it: freeing through a pointer that came from a shared
/// reference is undefined behaviour (Miri's Stacked Borrows caught the
/// first version doing that).
pub(crate) struct AccountBox(&'static mut Account);

impl AccountBox {
    pub(crate) fn new(budget: usize) -> AccountBox {
        AccountBox(Box::leak(Box::new(Account { bytes: Striped::new(), budget })))
    }

    pub(crate) fn get(&self) -> &'static Account {
        let account: *const Account = &*self.0;
        // SAFETY: the account lives until `drop` below, which runs only
        // when no version of the tree is alive any more (see the module
        // docs), and versions (their `Charge`s) are what keeps this
        // reference; nothing writes through `self.0` meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            &*account
        }
    }
}

impl Drop for AccountBox {
    fn drop(&mut self) {
        let account: *mut Account = &mut *self.0;
        // SAFETY: the pointer is the unique reference `Box::leak` returned
        // in `new`, and it is freed only here, once. No version of the tree
        // is alive any more: the tree drops this field last, and nothing
        // else holds versions (see the module docs), so no `Charge` can use
        // a reference from `get` afterwards.
        #[allow(unsafe_code)]
        unsafe {
            drop(Box::from_raw(account));
        }
    }
}
