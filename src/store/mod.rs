//! Where node versions live when they are not in memory.
//!
//! A [`Store`] is the minimum a persistent tree needs: append a record and
//! get its address back, read a record by address, say which records the
//! next commit no longer names, seal what the next commit holds, make it
//! durable, and keep one small commit record that names the root. The tree never rewrites a
//! record in place (copy on write by address), so a store may be a file, a
//! memory buffer, an object store or anything else with those operations.
//! [`FileStore`] keeps a tree in one file, reusing freed space;
//! [`MemoryStore`] keeps it in memory.

pub(crate) mod file;
mod memory;

pub use file::FileStore;
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

    /// [`read`](Store::read) into `buf`, whose contents and length it may
    /// replace; the record is the slice returned. The tree reads through
    /// one buffer per thread this way, so a store that reads into a buffer
    /// anyway (a file's) saves an allocation per read. By default, `read`.
    fn read_into<'b>(&self, address: Address, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        *buf = self.read(address)?;
        Ok(buf)
    }

    /// Whether every record [`read`](Store::read) and
    /// [`read_into`](Store::read_into) return was checked against a
    /// checksum the store keeps over the whole record, so that damage is an
    /// `InvalidData` error, never bytes. The tree then skips the check of
    /// the record's own CRC. By default `false`: the tree checks.
    fn checks_records(&self) -> bool {
        false
    }

    /// The commit being prepared (the commit after the next
    /// [`seal`](Store::seal)) no longer names the record at `address`: once
    /// that commit is durable, its space may be reused (an object store
    /// deletes it). Until then it must stay readable and intact, since the
    /// current commit may still name it. The tree frees each record once.
    /// Frees given after an attempt's last settle or seal are void if it
    /// fails ([`abandon`](Store::abandon)); settled and sealed ones stay,
    /// and belong to the next commit if this one fails.
    fn free(&self, address: Address) -> io::Result<()>;

    /// Settles (as [`settle`](Store::settle)) and ends the commit being
    /// prepared: the records appended and the frees given so far are what
    /// the next [`sync`](Store::sync) and
    /// [`write_commit`](Store::write_commit) commit; what is appended and
    /// freed after the seal belongs to the commit after. The tree seals
    /// with nothing else appending or freeing, then syncs and writes the
    /// commit record while later spills may append and free beside them:
    /// so a commit's syncs need not hold up writers that must spill. If the
    /// sync or the commit fails, what was sealed stays (not reused, not
    /// void) and belongs to the next commit, as if it had only been
    /// settled.
    fn seal(&self) -> io::Result<()>;

    /// Makes every record the last [`seal`](Store::seal) covers durable.
    /// Not called twice for one seal, nor with another `seal` between it
    /// and its `write_commit`.
    fn sync(&self) -> io::Result<()>;

    /// The records appended and the frees given so far belong to the
    /// commit being prepared, whatever becomes of the attempt that follows:
    /// the tree wrote nodes back to make room in memory (a *spill*) and now
    /// reads them from those records, so a later [`abandon`](Store::abandon)
    /// must neither reuse their space nor void those frees. Nothing need be
    /// durable. A store that buffers appends in memory writes them out here.
    ///
    /// A store whose `abandon` does nothing (the default) needs nothing
    /// here either.
    fn settle(&self) -> io::Result<()> {
        Ok(())
    }

    /// The current commit record, or `None` if none was ever written.
    fn read_commit(&self) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the commit record, atomically and durably: after a crash
    /// `read_commit` returns either the old or the new record, whole. The
    /// tree calls it only after [`sync`](Store::sync) of the records it
    /// names; once it succeeds, what the seal freed may be reused.
    fn write_commit(&self, record: &[u8]) -> io::Result<()>;

    /// The attempt under way failed before its seal or settle (an append
    /// or encoding failed, a codec panicked): no commit names the records
    /// it appended since the last settle or seal, and the frees it gave
    /// since then are void (the tree gives them again). Never called for a
    /// failed `sync` or `write_commit`, which keep what was sealed, nor
    /// while another thread appends.
    fn abandon(&self) {}

    /// Voids everything since the last commit, settled or not: the tree
    /// over the store is dropped, and no commit will name what it spilled.
    /// The default is
    /// [`abandon`](Store::abandon), enough for a store without
    /// [`settle`](Store::settle).
    fn rollback(&self) {
        self.abandon()
    }

    /// How much space the store takes and how much of it the last commit
    /// names. Zeros if the store does not know.
    fn usage(&self) -> Usage {
        Usage::default()
    }
}

/// What [`Store::usage`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes the store takes (a file store: the file's length).
    pub file_bytes: u64,
    /// Bytes of the records the last commit names (and their framing).
    pub live_bytes: u64,
    /// Bytes of memory the store holds for its own bookkeeping (a file
    /// store: its free-space map, and what it tracks of the records
    /// appended and freed since the last commit), reported in
    /// [`Stats::store_memory_bytes`](crate::Stats::store_memory_bytes); not
    /// (yet) bounded by the tree's memory budget. Not the records: a store
    /// that keeps them in memory ([`MemoryStore`](crate::MemoryStore))
    /// stands for a disk.
    pub memory_bytes: u64,
}

impl Usage {
    /// A usage report (for stores outside this crate).
    pub fn new(file_bytes: u64, live_bytes: u64) -> Usage {
        Usage { file_bytes, live_bytes, memory_bytes: 0 }
    }

    /// This report with `bytes` of the store's bookkeeping in memory.
    pub fn with_memory_bytes(self, bytes: u64) -> Usage {
        Usage { memory_bytes: bytes, ..self }
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn append(&self, record: &[u8]) -> io::Result<Address> {
        (**self).append(record)
    }
    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        (**self).read(address)
    }
    fn read_into<'b>(&self, address: Address, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        (**self).read_into(address, buf)
    }
    fn free(&self, address: Address) -> io::Result<()> {
        (**self).free(address)
    }
    fn checks_records(&self) -> bool {
        (**self).checks_records()
    }
    fn settle(&self) -> io::Result<()> {
        (**self).settle()
    }
    fn seal(&self) -> io::Result<()> {
        (**self).seal()
    }
    fn abandon(&self) {
        (**self).abandon()
    }
    fn rollback(&self) {
        (**self).rollback()
    }
    fn usage(&self) -> Usage {
        (**self).usage()
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
