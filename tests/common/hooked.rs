//! A `MemoryStore` with hooks on its reads and commits, for tests that need
//! a store to be slow or to act at a chosen moment. Every call goes to the
//! memory store, so the wrapper keeps its whole contract (settle, abandon,
//! rollback, usage), however the trait grows: one place to extend.
#![allow(dead_code)] // each test binary uses a different part

use std::io;
use std::sync::Arc;

use ghostbtree::{Address, MemoryStore, Store, Usage};

/// What a test adds to a store; each does nothing unless overridden.
pub trait Hooks: Send + Sync + 'static {
    /// Runs before each read.
    fn before_read(&self, _address: Address) {}
    /// Runs before each sync: a disk's sync takes a while, and other
    /// threads go on meanwhile (a loom model yields here).
    fn before_sync(&self) {}
    /// Runs after each commit record is written, still inside the
    /// checkpoint (no other commit lands meanwhile).
    fn after_commit(&self, _store: &MemoryStore) {}
}

/// A memory store and the test's hooks; clones share both.
pub struct Hooked<H> {
    pub inner: MemoryStore,
    pub hooks: Arc<H>,
}

impl<H> Clone for Hooked<H> {
    fn clone(&self) -> Self {
        Hooked { inner: self.inner.clone(), hooks: Arc::clone(&self.hooks) }
    }
}

impl<H: Hooks> Hooked<H> {
    pub fn new(hooks: H) -> Self {
        Hooked { inner: MemoryStore::new(), hooks: Arc::new(hooks) }
    }
}

impl<H: Hooks> Store for Hooked<H> {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        self.inner.append(record)
    }
    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        self.hooks.before_read(address);
        self.inner.read(address)
    }
    fn free(&self, address: Address) -> io::Result<()> {
        self.inner.free(address)
    }
    fn sync(&self) -> io::Result<()> {
        self.hooks.before_sync();
        self.inner.sync()
    }
    fn settle(&self) -> io::Result<()> {
        self.inner.settle()
    }
    fn seal(&self) -> io::Result<()> {
        self.inner.seal()
    }
    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        self.inner.read_commit()
    }
    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        self.inner.write_commit(record)?;
        self.hooks.after_commit(&self.inner);
        Ok(())
    }
    fn abandon(&self) {
        self.inner.abandon()
    }
    fn rollback(&self) {
        self.inner.rollback()
    }
    fn usage(&self) -> Usage {
        self.inner.usage()
    }
}
