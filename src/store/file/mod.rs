//! `FileStore`: a tree's records in one file, copy on write by address.
//!
//! The layout is in `layout.rs` (and `docs/format.md`): a header, two
//! superblock slots, then record frames and free space.
//!
//! # Commit protocol
//!
//! A checkpoint appends records (into free space: best fit, else at the
//! end), hands back the addresses of the records its image no longer names
//! ([`Store::free`]), seals them ([`Store::seal`]: written out, and from
//! now on this commit's), then calls [`Store::sync`] and
//! [`Store::write_commit`]:
//!
//! 1. `sync` writes a new free-list record (the free space as it will be
//!    after this commit: the current free space, plus the records the seal
//!    covers as freed, plus the orphans, plus the previous free-list
//!    record), then `fdatasync`s. Nothing the last commit names is written
//!    over: every byte written lies in space free at the last commit.
//! 2. `write_commit` writes the superblock (sequence + 1, naming the commit
//!    record, the free list, where used space ends) into the slot that does
//!    not hold the last commit, as the whole slot (zeros after it), then
//!    `fdatasync`s. Only then do the freed
//!    records become free space for the next checkpoint.
//!
//! Appends and frees after the seal (a spill beside the commit) are the
//! next commit's: they take space free now (listed free by this commit,
//! which names none of them), and what they free is released only by the
//! next commit, since this one still names it.
//!
//! So at every instant the newest valid superblock on disk names records
//! that are whole: a crash during step 1 leaves the old superblock, and
//! one during step 2 a torn new one (its checksum fails) beside the old, or
//! the new one whole. Open takes the newest valid superblock.
//!
//! A failed `sync` or `write_commit` (disk full, EIO) changes none of
//! that: the superblock that was last written durably stays the newest
//! valid one, and the next attempt writes into the same slot. What the
//! failed attempt sealed goes back to the next commit, as if settled; its
//! free-list record is freed at once if no superblock was written, else
//! only by the next successful commit (the attempt's superblock may have
//! reached the disk whole).
//!
//! A spill (`Store::settle`) writes the buffered records out, without a
//! sync: the tree evicts the nodes it wrote and reads them back from
//! there, and the next commit names them. A failed attempt after it keeps
//! its frames and its frees; until that commit, they lie in space free at
//! the last one, like every other append. After a failed sync, those
//! frames may never reach the disk (Linux marks the pages clean after a
//! writeback error, and the next `fdatasync` succeeds without them), so
//! the next commit first writes them again from the page cache, checked
//! against the checksums they had when appended (a lost page reads back as
//! whatever the disk holds there: maybe an older, valid record).
//!
//! A new file is written whole under a temporary name, synced, renamed into
//! place, and its directory synced: a crash leaves no file or a valid one.
//!
//! # Concurrency
//!
//! Reads are positioned (`pread`), so loads on many threads never share a
//! cursor; they take a read lock only to look for a record appended but
//! not yet written out. Appends, frees, seals and commits serialize on one
//! mutex (the writer), which the commit releases for its two `fdatasync`s:
//! a spill appends beside them. The tree keeps one walk and one commit at a
//! time.

mod disk;
pub(crate) mod layout;
mod space;
// Not in the loom build: whole trees, outside any model.
#[cfg(all(test, not(loom)))]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use self::disk::Disk;
use self::layout::{DATA_START, Extent, Kind, PAGE, SUPERBLOCK_AT, SUPERBLOCK_LEN, Superblock};
use self::space::Space;
use super::{Address, Store, Usage};

/// How often, and how long apart, a lock held elsewhere is tried again.
const LOCK_TRIES: u32 = 10;
const LOCK_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Buffered record bytes that make `append` write them out before `sync`.
const WRITE_OUT_AT: usize = 8 << 20;

/// A [`Store`] in one file. Opened by [`BTree::open_file`](crate::BTree::open_file),
/// or with [`FileStore::open`] to pass to [`BTree::open`](crate::BTree::open).
///
/// The file is locked for the store's life: a second open of the same file,
/// from this process or another, fails until this store is dropped (or the
/// process ends).
pub struct FileStore {
    path: PathBuf,
    disk: Box<dyn Disk>,
    writer: Mutex<Writer>,
    /// Frames appended and not written out yet, by offset.
    unwritten: RwLock<BTreeMap<u64, Vec<u8>>>,
}

impl Writer {
    /// About what the write side holds in memory: its maps at the size of
    /// their entries and half again (B-tree nodes are half to full), its
    /// lists at their capacity, the frames not written out.
    fn memory_bytes(&self) -> usize {
        let lists = [
            &self.appended,
            &self.freed,
            &self.settled,
            &self.settled_freed,
            &self.sealed,
            &self.sealed_freed,
            &self.orphans,
        ];
        self.space.as_ref().map_or(0, Space::memory_bytes)
            + lists.iter().map(|list| list.capacity() * size_of::<Extent>()).sum::<usize>()
            + space::btree_bytes(self.checksums.len(), size_of::<(u64, u32)>())
            + self.unwritten_bytes
    }
}

/// The write side: the space map and where the commit protocol stands.
struct Writer {
    /// The last commit made durable (read at open, or written since).
    committed: Superblock,
    /// The slot the next superblock goes to.
    next_slot: usize,
    /// Free space: read from the committed free list at the first append
    /// or free, so that open reads no more than the superblocks.
    space: Option<Space>,
    /// Frames appended since the last commit or settle.
    appended: Vec<Extent>,
    /// Records freed for the next commit since the last commit or settle.
    freed: Vec<Extent>,
    /// Frames appended and records freed before a settle since the last
    /// seal (`Store::settle`): a failed attempt keeps them.
    settled: Vec<Extent>,
    settled_freed: Vec<Extent>,
    /// What the last seal ended (`Store::seal`): the commit under way. A
    /// failed sync or commit gives them back to `settled`.
    sealed: Vec<Extent>,
    sealed_freed: Vec<Extent>,
    /// The checksum of every frame appended since the last commit, by
    /// offset: a settled frame read back must be that frame, not an older
    /// valid one the page cache fell back to (`rewrite_sealed`).
    checksums: BTreeMap<u64, u32>,
    /// Frames of failed attempts, freed by the next successful commit.
    orphans: Vec<Extent>,
    /// What `sync` prepared for `write_commit`.
    prepared: Option<Prepared>,
    unwritten_bytes: usize,
    /// A sync failed since frames now settled or sealed were written: they
    /// may never reach the disk (Linux marks pages clean after a writeback
    /// error), so the next commit writes them again first.
    rewrite_settled: bool,
}

struct Prepared {
    free_list: Extent,
    /// Used space and free bytes after the commit.
    end: u64,
    free_bytes: u64,
    /// Free after the commit (the freed records, the old free list, orphans).
    released: Vec<Extent>,
    /// How many of `Writer::orphans` it includes (the first ones).
    orphans: usize,
}

impl FileStore {
    /// Opens the store in the file at `path`, creating it if it does not
    /// exist. Reads the header and the two superblocks, nothing more.
    ///
    /// Fails with a message naming the path and the problem if `path` is a
    /// directory, its directory does not exist, it is not writable, it is
    /// locked by another open store, or it is not a ghostbtree file (or a
    /// damaged or newer one).
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileStore> {
        let path = path.as_ref();
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(error(ErrorKind::IsADirectory, path, "is a directory, not a ghostbtree file"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => create(path)?,
            Err(e) => return Err(context(e, path, "cannot look at the file")),
        }
        let file = open_for_reads_and_writes(path).map_err(|e| {
            let why = match e.kind() {
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                    "cannot open it for writing, which a ghostbtree store needs"
                }
                _ => "cannot open the file",
            };
            context(e, path, why)
        })?;
        // A child process forked (to exec) in this process holds a copy of
        // the lock until it execs: a reopen right after a close can meet
        // it, so a lock held elsewhere is tried again for a moment.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_PAUSE);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(error(
                        ErrorKind::ResourceBusy,
                        path,
                        "is open already, by this process or another (it is locked)",
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(context(e, path, "cannot lock the file")),
            }
        }
        if file.metadata().map_err(|e| context(e, path, "cannot look at the file"))?.len() == 0 {
            // An empty file (made by a tempfile helper, say): make it ours.
            initialize(&file).map_err(|e| context(e, path, "cannot initialize the empty file"))?;
        }
        FileStore::with_disk(path, Box::new(file))
    }

    /// A store over `disk`, which holds a ghostbtree file (at least the
    /// header); `path` is for messages.
    pub(crate) fn with_disk(path: &Path, disk: Box<dyn Disk>) -> io::Result<FileStore> {
        let len = disk.len().map_err(|e| context(e, path, "cannot read the file's length"))?;
        let mut head = vec![0u8; DATA_START.min(len) as usize];
        disk.read_exact_at(&mut head, 0).map_err(|e| context(e, path, "cannot read the header"))?;
        layout::decode_header(&head).map_err(|why| error(ErrorKind::InvalidData, path, &why))?;
        if len < DATA_START || head[layout::HEADER_LEN..PAGE as usize].iter().any(|&b| b != 0) {
            let why = if len < DATA_START {
                format!("is truncated: {len} bytes, where a ghostbtree file has at least {DATA_START}")
            } else {
                "has a damaged header page (bytes after the header are not zero)".into()
            };
            return Err(error(ErrorKind::InvalidData, path, &why));
        }
        let newer = SUPERBLOCK_AT
            .iter()
            .filter_map(|&at| layout::superblock_version(&head[at as usize..(at + PAGE) as usize]))
            .find(|&version| version > layout::FORMAT_VERSION);
        if let Some(version) = newer {
            let why = format!(
                "has a checkpoint in format version {version}, newer than this build of ghostbtree reads ({})",
                layout::FORMAT_VERSION
            );
            return Err(error(ErrorKind::InvalidData, path, &why));
        }
        let slots = SUPERBLOCK_AT.map(|at| {
            let slot = &head[at as usize..(at + PAGE) as usize];
            let tail_clean = slot[SUPERBLOCK_LEN..].iter().all(|&b| b == 0);
            match layout::decode_superblock(&slot[..SUPERBLOCK_LEN]) {
                Ok(superblock) if tail_clean => Ok(superblock),
                Ok(_) => Err("non-zero bytes after the superblock".to_string()),
                Err(why) => Err(why),
            }
        });
        let newest = match &slots {
            [Ok(Some(a)), Ok(Some(b))] => Some(if a.sequence >= b.sequence { 0 } else { 1 }),
            [Ok(Some(_)), _] => Some(0),
            [_, Ok(Some(_))] => Some(1),
            [Ok(None), Ok(None)] => None,
            [a, b] => {
                let why = |slot: &Result<_, String>| match slot {
                    Err(why) => why.clone(),
                    Ok(_) => "never written".into(),
                };
                let why = format!("has no valid superblock (slot 0: {}; slot 1: {})", why(a), why(b));
                return Err(error(ErrorKind::InvalidData, path, &why));
            }
        };
        let (committed, next_slot) = match newest {
            Some(i) => {
                let [a, b] = slots;
                let superblock = [a, b].into_iter().nth(i).expect("two slots").ok().flatten().expect("valid");
                if superblock.end > len {
                    let why = format!(
                        "is truncated: its last checkpoint needs {} bytes, the file has {len}",
                        superblock.end
                    );
                    return Err(error(ErrorKind::InvalidData, path, &why));
                }
                (superblock, 1 - i)
            }
            None => (
                Superblock {
                    sequence: 0,
                    end: DATA_START,
                    free_list: None,
                    free_bytes: 0,
                    commit: Vec::new(),
                },
                0,
            ),
        };
        Ok(FileStore {
            path: path.to_owned(),
            disk,
            writer: Mutex::new(Writer {
                committed,
                next_slot,
                space: None,
                appended: Vec::new(),
                freed: Vec::new(),
                settled: Vec::new(),
                settled_freed: Vec::new(),
                sealed: Vec::new(),
                sealed_freed: Vec::new(),
                checksums: BTreeMap::new(),
                orphans: Vec::new(),
                prepared: None,
                unwritten_bytes: 0,
                rewrite_settled: false,
            }),
            unwritten: RwLock::new(BTreeMap::new()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn invalid(&self, why: &str) -> io::Error {
        error(ErrorKind::InvalidData, &self.path, why)
    }

    /// A seal or sync came between a commit's sync and its commit record:
    /// the `Store` contract's misuse, an error rather than a panic.
    fn interleaved(&self) -> io::Error {
        error(
            ErrorKind::InvalidInput,
            &self.path,
            "a seal or sync came between a commit's sync and its commit record",
        )
    }

    /// The free space, read from the committed free list the first time.
    fn space<'w>(&self, writer: &'w mut Writer) -> io::Result<&'w mut Space> {
        if writer.space.is_none() {
            let committed = &writer.committed;
            let mut space = Space::new(committed.end);
            if let Some(list) = committed.free_list {
                let frame = self.read_frame(list)?;
                let payload = layout::decode_frame(&frame, Kind::FreeList).map_err(|why| {
                    self.invalid(&format!("free-list record at offset {}: {why}", list.offset))
                })?;
                let extents = layout::decode_free_list(payload, committed.end).map_err(|why| {
                    self.invalid(&format!("free-list record at offset {}: {why}", list.offset))
                })?;
                space = Space::with_free(committed.end, extents);
                if space.free_bytes() != committed.free_bytes {
                    return Err(self.invalid(&format!(
                        "the free list holds {} bytes, the superblock says {}",
                        space.free_bytes(),
                        committed.free_bytes
                    )));
                }
            }
            writer.space = Some(space);
        }
        Ok(writer.space.as_mut().expect("set above"))
    }

    fn read_frame(&self, extent: Extent) -> io::Result<Vec<u8>> {
        let mut frame = Vec::new();
        self.read_frame_into(extent, &mut frame)?;
        Ok(frame)
    }

    /// The node record at `address`, checked: its frame goes into `frame`
    /// (replacing what it held, reusing its allocation), and the payload's
    /// range in it is returned.
    fn read_node(&self, address: Address, frame: &mut Vec<u8>) -> io::Result<std::ops::Range<usize>> {
        let Some(extent) = Extent::of(address) else {
            return Err(self.invalid(&format!("{address} is not a record address of a file store")));
        };
        let unwritten = self.unwritten.read().unwrap_or_else(PoisonError::into_inner);
        match unwritten.get(&extent.offset) {
            Some(appended) => {
                frame.clear();
                frame.extend_from_slice(appended);
            }
            None => {
                drop(unwritten);
                self.read_frame_into(extent, frame)?;
            }
        }
        let payload = layout::decode_frame(frame, Kind::Node)
            .map_err(|why| self.invalid(&format!("record at offset {}: {why}", extent.offset)))?;
        // `decode_frame` returns the payload that follows the 8-byte header.
        Ok(8..8 + payload.len())
    }

    fn read_frame_into(&self, extent: Extent, frame: &mut Vec<u8>) -> io::Result<()> {
        frame.clear();
        frame.resize(extent.len as usize, 0);
        self.disk.read_exact_at(frame, extent.offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                self.invalid(&format!(
                    "record at offset {} ({} bytes) lies past the end of the file (truncated?)",
                    extent.offset, extent.len
                ))
            } else {
                context(e, &self.path, &format!("cannot read the record at offset {}", extent.offset))
            }
        })
    }

    /// Writes the unwritten frames out, adjacent ones in one write. Under
    /// the read lock, so loads go on meanwhile; appends cannot (they need
    /// `writer`), so the frames are dropped after the writes under a short
    /// write lock.
    fn write_out(&self, writer: &mut Writer) -> io::Result<()> {
        let unwritten = self.unwritten.read().unwrap_or_else(PoisonError::into_inner);
        let mut run: Vec<u8> = Vec::new();
        let mut run_at = 0;
        for (&offset, frame) in unwritten.iter() {
            if run_at + run.len() as u64 != offset && !run.is_empty() {
                self.write_at(&run, run_at)?;
                run.clear();
            }
            if run.is_empty() {
                run_at = offset;
            }
            run.extend_from_slice(frame);
        }
        if !run.is_empty() {
            self.write_at(&run, run_at)?;
        }
        drop(unwritten);
        self.unwritten.write().unwrap_or_else(PoisonError::into_inner).clear();
        writer.unwritten_bytes = 0;
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.disk.write_all_at(bytes, offset).map_err(|e| {
            context(e, &self.path, &format!("cannot write {} bytes at offset {offset}", bytes.len()))
        })
    }

    fn sync_disk(&self) -> io::Result<()> {
        self.disk.sync().map_err(|e| context(e, &self.path, "cannot sync the file (fdatasync)"))
    }

    /// Step 1 of the commit protocol (module docs), for what the last seal
    /// ended. The writer is unlocked for the `fdatasync`: spills append and
    /// free beside it, for the commit after.
    fn prepare(&self) -> io::Result<()> {
        let mut writer = self.writer();
        self.forget_prepared(&mut writer)?;
        let orphans = writer.orphans.len();
        let mut released = writer.sealed_freed.clone();
        released.extend(writer.orphans.iter().copied());
        released.extend(writer.committed.free_list);
        let space = self.space(&mut writer)?;
        // The list's own frame comes out of the space first (so it lists
        // what is free with it in place); allocating takes or shrinks one
        // extent and freeing coalesces, so this many extents is an upper
        // bound, and the payload is padded to it.
        let bound = space.len() + released.len() + 1;
        let frame_len = layout::frame_len(8 + 16 * bound);
        let free_list = Extent { offset: space.alloc(frame_len), len: frame_len };
        let mut after = space.clone();
        let written = (|| {
            for extent in &released {
                after.free(extent.offset, extent.len).map_err(|why| {
                    self.invalid(&format!("freeing the record at offset {}: {why}", extent.offset))
                })?;
            }
            let extents: Vec<(u64, u64)> = after.extents().collect();
            let mut payload = layout::encode_free_list(&extents);
            payload.resize(frame_len as usize - 12, 0);
            let frame = layout::encode_frame(Kind::FreeList, &payload);
            debug_assert_eq!(frame.len() as u64, frame_len);
            if !free_list.addressable() {
                return Err(self.invalid("the file is past the 16 TiB a file store addresses"));
            }
            self.unwritten.write().unwrap_or_else(PoisonError::into_inner).insert(free_list.offset, frame);
            if writer.rewrite_settled {
                self.rewrite_sealed(&writer)?;
            }
            self.write_out(&mut writer)
        })();
        let synced = written.and_then(|()| {
            drop(writer);
            self.sync_disk()
        });
        let mut writer = self.writer();
        if let Err(e) = synced {
            writer.rewrite_settled |= !(writer.sealed.is_empty() && writer.settled.is_empty());
            unseal(&mut writer);
            // Named by no superblock: free at once.
            self.unwritten.write().unwrap_or_else(PoisonError::into_inner).remove(&free_list.offset);
            let space = writer.space.as_mut().expect("loaded above");
            space.free(free_list.offset, free_list.len).map_err(|why| self.invalid(&why))?;
            return Err(e);
        }
        writer.rewrite_settled = false;
        writer.prepared =
            Some(Prepared { free_list, end: after.end(), free_bytes: after.free_bytes(), released, orphans });
        Ok(())
    }

    /// Writes the sealed frames again, as the page cache still has them
    /// (a sync failed since they were written: module docs). A frame the
    /// page cache lost too fails its checksum, or shows another frame's (an
    /// older record of the same length the disk still holds there): its
    /// node is gone, and no commit can name it.
    fn rewrite_sealed(&self, writer: &Writer) -> io::Result<()> {
        for &extent in &writer.sealed {
            let frame = self.read_frame(extent)?;
            let lost = |why: &str| {
                self.invalid(&format!(
                    "the record at offset {}, written back before a sync failed, is lost: {why}",
                    extent.offset
                ))
            };
            layout::decode_frame(&frame, Kind::Node).map_err(|why| lost(&why))?;
            if writer.checksums.get(&extent.offset).copied() != layout::frame_checksum(&frame) {
                return Err(lost("an older record is in its place"));
            }
            self.write_at(&frame, extent.offset)?;
        }
        Ok(())
    }

    /// Drops what a `sync` prepared that no commit followed.
    fn forget_prepared(&self, writer: &mut Writer) -> io::Result<()> {
        if let Some(stale) = writer.prepared.take() {
            // Never named by a superblock written: free at once.
            let space = writer.space.as_mut().expect("loaded by the last prepare");
            space.free(stale.free_list.offset, stale.free_list.len).map_err(|why| self.invalid(&why))?;
        }
        Ok(())
    }

    /// A failed attempt: its frames stay taken until a commit succeeds.
    /// What was settled or sealed stays as it is, and so does a commit
    /// under way.
    fn abandon_attempt(&self, writer: &mut Writer) {
        let appended = std::mem::take(&mut writer.appended);
        writer.orphans.extend(appended);
        writer.freed.clear();
        self.unwritten.write().unwrap_or_else(PoisonError::into_inner).clear();
        writer.unwritten_bytes = 0;
    }

    /// Step 2 of the commit protocol (module docs), the writer unlocked for
    /// the `fdatasync` as in `prepare`.
    fn commit_prepared(&self, commit: &[u8]) -> io::Result<()> {
        if self.writer().prepared.is_none() {
            self.prepare()?;
        }
        let writer = self.writer();
        let Some(prepared) = writer.prepared.as_ref() else { return Err(self.interleaved()) };
        let superblock = Superblock {
            sequence: writer.committed.sequence + 1,
            end: prepared.end,
            free_list: Some(prepared.free_list),
            free_bytes: prepared.free_bytes,
            commit: commit.to_vec(),
        };
        // The whole slot: open rejects a slot with anything but zeros after
        // the superblock, and garbage left there would outlive this commit.
        let mut bytes = layout::encode_superblock(&superblock);
        bytes.resize(PAGE as usize, 0);
        let synced = self.write_at(&bytes, SUPERBLOCK_AT[writer.next_slot]).and_then(|()| {
            drop(writer);
            self.sync_disk()
        });
        let mut writer = self.writer();
        let Some(prepared) = writer.prepared.take() else { return Err(self.interleaved()) };
        if let Err(e) = synced {
            // The superblock may be on the disk whole, naming the free
            // list: that stays taken until a commit overwrites the slot.
            writer.orphans.push(prepared.free_list);
            writer.rewrite_settled |= !writer.settled.is_empty();
            unseal(&mut writer);
            return Err(e);
        }
        // Durable: what it released is free space now.
        let space = writer.space.as_mut().expect("loaded by prepare");
        for extent in &prepared.released {
            // Checked on the copy `prepare` made; cannot fail here.
            space.free(extent.offset, extent.len).map_err(|why| self.invalid(&why))?;
        }
        let writer = &mut *writer;
        writer.committed = superblock;
        writer.next_slot = 1 - writer.next_slot;
        for extent in writer.sealed.drain(..).chain(writer.orphans.drain(..prepared.orphans)) {
            writer.checksums.remove(&extent.offset);
        }
        writer.sealed_freed.clear();
        Ok(())
    }
}

impl FileStore {
    /// `Store::settle`, under the writer's lock. Not `prepared`: it is the
    /// commit under way's, if one is.
    fn settle_locked(&self, writer: &mut Writer) -> io::Result<()> {
        if let Err(e) = self.write_out(writer) {
            self.abandon_attempt(writer);
            return Err(e);
        }
        writer.settled.append(&mut writer.appended);
        writer.settled_freed.append(&mut writer.freed);
        Ok(())
    }
}

/// A failed sync or commit: what it sealed belongs to the next commit, as
/// if only settled.
fn unseal(writer: &mut Writer) {
    writer.settled.append(&mut writer.sealed);
    writer.settled_freed.append(&mut writer.sealed_freed);
}

impl Store for FileStore {
    /// Every record is read as a whole frame, whose CRC covers it
    /// (`layout::decode_frame`).
    fn checks_records(&self) -> bool {
        true
    }

    fn append(&self, record: &[u8]) -> io::Result<Address> {
        let frame = layout::encode_frame(Kind::Node, record);
        let len = frame.len() as u64;
        if len > layout::MAX_FRAME {
            return Err(error(
                ErrorKind::InvalidInput,
                &self.path,
                &format!(
                    "cannot hold a record of {} bytes (at most {})",
                    record.len(),
                    layout::MAX_FRAME - 16
                ),
            ));
        }
        let mut writer = self.writer();
        let extent = Extent { offset: self.space(&mut writer)?.alloc(len), len };
        writer.appended.push(extent);
        if let Some(checksum) = layout::frame_checksum(&frame) {
            writer.checksums.insert(extent.offset, checksum);
        }
        if !extent.addressable() {
            return Err(self.invalid("the file is past the 16 TiB a file store addresses"));
        }

        self.unwritten.write().unwrap_or_else(PoisonError::into_inner).insert(extent.offset, frame);
        writer.unwritten_bytes += len as usize;
        if writer.unwritten_bytes >= WRITE_OUT_AT
            && let Err(e) = self.write_out(&mut writer)
        {
            self.abandon_attempt(&mut writer);
            return Err(e);
        }
        Ok(extent.address())
    }

    fn read(&self, address: Address) -> io::Result<Vec<u8>> {
        let mut frame = Vec::new();
        let payload = self.read_node(address, &mut frame)?;
        frame.truncate(payload.end);
        frame.drain(..payload.start);
        Ok(frame)
    }

    fn read_into<'b>(&self, address: Address, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        let payload = self.read_node(address, buf)?;
        Ok(&buf[payload])
    }

    fn free(&self, address: Address) -> io::Result<()> {
        let mut writer = self.writer();
        match Extent::of(address) {
            Some(extent) if extent.offset + extent.len <= self.space(&mut writer)?.end() => {
                writer.freed.push(extent);
                Ok(())
            }
            _ => Err(self.invalid(&format!("freeing {address}, which is not a record of this file"))),
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.prepare()
    }

    fn settle(&self) -> io::Result<()> {
        self.settle_locked(&mut self.writer())
    }

    fn seal(&self) -> io::Result<()> {
        let mut writer = self.writer();
        self.settle_locked(&mut writer)?;
        // A sync no commit followed: a seal starts the next attempt.
        self.forget_prepared(&mut writer)?;
        let writer = &mut *writer;
        writer.sealed.append(&mut writer.settled);
        writer.sealed_freed.append(&mut writer.settled_freed);
        Ok(())
    }

    fn read_commit(&self) -> io::Result<Option<Vec<u8>>> {
        let writer = self.writer();
        Ok(Some(writer.committed.commit.clone()).filter(|_| writer.committed.sequence > 0))
    }

    fn write_commit(&self, record: &[u8]) -> io::Result<()> {
        if record.len() > layout::MAX_COMMIT {
            return Err(error(
                ErrorKind::InvalidInput,
                &self.path,
                &format!("a commit record of {} bytes (at most {})", record.len(), layout::MAX_COMMIT),
            ));
        }
        self.commit_prepared(record)
    }

    fn abandon(&self) {
        self.abandon_attempt(&mut self.writer());
    }

    fn rollback(&self) {
        let mut writer = self.writer();
        let writer = &mut *writer;
        let _ = self.forget_prepared(writer);
        writer.orphans.append(&mut writer.settled);
        writer.orphans.append(&mut writer.sealed);
        writer.settled_freed.clear();
        writer.sealed_freed.clear();
        writer.checksums.clear();
        self.abandon_attempt(writer);
    }

    fn usage(&self) -> Usage {
        let writer = self.writer();
        let committed = &writer.committed;
        Usage::new(
            self.disk.len().unwrap_or(committed.end),
            committed.end - DATA_START - committed.free_bytes,
        )
        .with_memory_bytes(writer.memory_bytes() as u64)
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Creates a ghostbtree file at `path`, whole or not at all: written under
/// a temporary name, synced, renamed, and the directory synced.
fn create(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(error(
            ErrorKind::NotFound,
            path,
            &format!("cannot be created: the directory {} does not exist", dir.display()),
        ));
    }
    let name = path.file_name().ok_or_else(|| error(ErrorKind::InvalidInput, path, "has no file name"))?;
    let temporary = dir.join(format!(".{}.{}.creating", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temporary)?;
        initialize(&file)?;
        fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(|e| context(e, path, "cannot create the file"))
}

/// `path` opened to read and write, without access-time updates where the
/// platform has `O_NOATIME` and we own the file: the kernel otherwise looks
/// at the clock and the access time on every `pread` (`touch_atime`, 3.4 %
/// of a one-thread random read through the cache at 1M keys), for a time
/// nobody reads. Where it is refused (a file owned by another user), as
/// usual.
fn open_for_reads_and_writes(path: &Path) -> io::Result<File> {
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    ))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The generic value (asm-generic/fcntl.h), which these archs use.
        const O_NOATIME: i32 = 0o1_000_000;
        match OpenOptions::new().read(true).write(true).custom_flags(O_NOATIME).open(path) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
            opened => return opened,
        }
    }
    OpenOptions::new().read(true).write(true).open(path)
}

/// Writes the header page and two empty superblock slots, and syncs.
fn initialize(file: &File) -> io::Result<()> {
    let mut head = layout::encode_header();
    head.resize(DATA_START as usize, 0);
    Disk::write_all_at(file, &head, 0)?;
    file.sync_all()
}

fn error(kind: ErrorKind, path: &Path, why: &str) -> io::Error {
    io::Error::new(kind, format!("{}: {why}", path.display()))
}

fn context(e: io::Error, path: &Path, why: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {why}: {e}", path.display()))
}
