//! Where node versions live when they are not in memory.
//!
//! A [`Store`] is the minimum a persistent tree needs: append a record and
//! get its address back, read a record by address, make appended records
//! durable, and keep one small commit record that names the root. The tree
//! never rewrites a record in place (copy on write by address), so a store
//! may be an append-only file, a memory buffer or anything else with those
//! four operations. [`MemoryStore`] is the bundled in-memory one.

mod memory;

pub use memory::MemoryStore;

use std::fmt;
use std::io;

/// Where a record lives in a [`Store`]. Opaque to the tree, except that
/// [`Address::NONE`] (0) is never a record: the tree uses it for "not
/// stored". A file store uses the record's offset, with its header at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub u64);

impl Address {
    /// The address no record has: [`Store::append`] never returns it.
    pub const NONE: Address = Address(0);
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// Storage for node records and the commit record.
///
/// Every method may be called from many threads at once. Errors are plain
/// `io::Error`s; the tree reports them with the operation and address.
pub trait Store: Send + Sync {
    /// Stores `record` and returns its address, never [`Address::NONE`].
    /// The record need not be durable before [`sync`](Store::sync).
    fn append(&self, record: &[u8]) -> io::Result<Address>;

    /// The record at `address`, as appended.
    fn read(&self, address: Address) -> io::Result<Vec<u8>>;

    /// Makes every record appended so far durable.
    fn sync(&self) -> io::Result<()>;

    /// The current commit record, or `None` if none was ever written.
    fn read_commit(&self) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the commit record, atomically and durably: after a crash
    /// `read_commit` returns either the old or the new record, whole. The
    /// tree calls it only after [`sync`](Store::sync) of the records it names.
    fn write_commit(&self, record: &[u8]) -> io::Result<()>;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        (**self).append(record)
    }
    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        (**self).read(address)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        (**self).read_commit()
    }
    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        (**self).write_commit(record)
    }
}
