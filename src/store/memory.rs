//! `MemoryStore`: records in memory, for tests and as the embedded default.

use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Address, Store};

/// A [`Store`] in memory. Cheap to clone: clones share the records, so a
/// test can drop a tree and open another on the same store ("reopen").
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Record `i` has address `i + 1`; address 0 is never handed out.
    records: RwLock<Vec<Arc<[u8]>>>,
    commit: Mutex<Option<Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Bytes held in records (all versions ever appended; nothing is
    /// reclaimed).
    pub fn stored_bytes(&self) -> usize {
        let records = self.inner.records.read().unwrap_or_else(PoisonError::into_inner);
        records.iter().map(|r| r.len()).sum()
    }

    /// Number of records appended.
    pub fn records(&self) -> usize {
        self.inner.records.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Store for MemoryStore {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        let mut records = self.inner.records.write().unwrap_or_else(PoisonError::into_inner);
        records.push(record.into());
        Ok(Address(records.len() as u64))
    }

    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        let records = self.inner.records.read().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(address.0).ok().and_then(|a| a.checked_sub(1));
        match index.and_then(|i| records.get(i)) {
            Some(record) => Ok(record.to_vec()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no record at {address}"))),
        }
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.inner.commit.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        *self.inner.commit.lock().unwrap_or_else(PoisonError::into_inner) = Some(record.to_vec());
        Ok(())
    }
}
