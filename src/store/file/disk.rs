//! What the file store needs of a file: positioned reads and writes, a
//! flush to stable storage, and the length. `std::fs::File` is the one that
//! ships; the power-loss tests put a simulated disk here (`tests.rs`),
//! which forgets or tears writes that were not synced.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(crate) trait Disk: Send + Sync {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Returns once every write so far is on stable storage.
    fn sync(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
}

impl Disk for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        // Data and the metadata needed to read it back (the length, as the
        // file grows): `fdatasync`.
        self.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}
