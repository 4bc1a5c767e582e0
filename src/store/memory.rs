//! `MemoryStore`: records in memory, for tests and as the embedded default.
//!
//! Freed records are dropped when the commit that frees them is written,
//! and reading one after that is an error: a tree that reads a record it
//! freed, or frees one that is gone, fails loudly in tests over this store.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::{Address, Store, Usage};

/// A [`Store`] in memory. Cheap to clone: clones share the records, so a
/// test can drop a tree and open another on the same store ("reopen").
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Record `i` has address `i + 1`; address 0 is never handed out.
    /// `None` once freed by a commit.
    records: RwLock<Vec<Option<Arc<[u8]>>>>,
    commit: Mutex<Commit>,
}

#[derive(Default)]
struct Commit {
    record: Option<Vec<u8>>,
    /// Freed for the commits to come, in order.
    freed: Vec<Address>,
    /// How many of `freed` were settled or sealed (`Store::settle`,
    /// `Store::seal`): kept by `abandon`.
    settled: usize,
    /// How many of `freed` the last seal covers: the next commit's.
    sealed: usize,
    /// Bytes of records not freed, at the last commit and now.
    live_bytes: u64,
    held_bytes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn commit(&self) -> MutexGuard<'_, Commit> {
        self.inner.commit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held in records not freed by a commit.
    pub fn stored_bytes(&self) -> usize {
        self.commit().held_bytes as usize
    }

    /// Number of records appended (freed ones included).
    pub fn records(&self) -> usize {
        self.inner.records.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl MemoryStore {
    fn with_record<R>(&self, address: Address, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let records = self.inner.records.read().unwrap_or_else(PoisonError::into_inner);
        match index(address).and_then(|i| records.get(i)) {
            Some(Some(record)) => Ok(f(record)),
            Some(None) => Err(io::Error::other(format!("the record at {address} was freed"))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no record at {address}"))),
        }
    }
}

fn index(address: Address) -> Option<usize> {
    usize::try_from(address.0).ok().and_then(|a| a.checked_sub(1))
}

impl Store for MemoryStore {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        let mut commit = self.commit();
        let mut records = self.inner.records.write().unwrap_or_else(PoisonError::into_inner);
        records.push(Some(record.into()));
        commit.held_bytes += record.len() as u64;
        Ok(Address(records.len() as u64))
    }

    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        self.with_record(address, <[u8]>::to_vec)
    }

    fn read_into<'b>(&self, address: Address, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        self.with_record(address, |record| {
            buf.clear();
            buf.extend_from_slice(record);
        })?;
        Ok(buf)
    }

    fn free(&self, address: Address) -> io::Result<()> {
        let mut commit = self.commit();
        let records = self.inner.records.read().unwrap_or_else(PoisonError::into_inner);
        match index(address).and_then(|i| records.get(i)) {
            Some(Some(_)) => {
                commit.freed.push(address);
                Ok(())
            }
            _ => Err(io::Error::other(format!("freeing {address}, which is not a live record"))),
        }
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.commit().record.clone())
    }

    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        let mut commit = self.commit();
        let sealed = std::mem::take(&mut commit.sealed);
        let mut freed: Vec<Address> = commit.freed.drain(..sealed).collect();
        commit.settled -= sealed;
        freed.sort_unstable();
        let mut records = self.inner.records.write().unwrap_or_else(PoisonError::into_inner);
        for address in freed {
            let slot = index(address).and_then(|i| records.get_mut(i)).and_then(Option::take);
            let Some(gone) = slot else {
                return Err(io::Error::other(format!("the record at {address} was freed twice")));
            };
            commit.held_bytes -= gone.len() as u64;
        }
        commit.record = Some(record.to_vec());
        // With what was appended since the seal (a spill beside the sync):
        // near enough for a store in memory.
        commit.live_bytes = commit.held_bytes;
        Ok(())
    }

    fn settle(&self) -> io::Result<()> {
        let mut commit = self.commit();
        commit.settled = commit.freed.len();
        Ok(())
    }

    fn seal(&self) -> io::Result<()> {
        let mut commit = self.commit();
        commit.settled = commit.freed.len();
        commit.sealed = commit.freed.len();
        Ok(())
    }

    fn abandon(&self) {
        let mut commit = self.commit();
        let settled = commit.settled;
        commit.freed.truncate(settled);
    }

    fn rollback(&self) {
        let mut commit = self.commit();
        commit.freed.clear();
        commit.settled = 0;
        commit.sealed = 0;
    }

    fn usage(&self) -> Usage {
        let commit = self.commit();
        Usage::new(commit.held_bytes, commit.live_bytes)
    }
}
