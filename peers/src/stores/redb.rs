//! redb: one write transaction at a time, committed with
//! `Durability::Immediate` (its default); readers hold a read transaction.
//!
//! Writes from several threads reach the one write transaction in one of
//! two ways (`GB_PEERS_REDB_WRITES`): `mutex` (default) shares the
//! transaction behind a mutex, each write opening the table, and a
//! committer thread takes the lock to commit every 100 ms; `channel` sends
//! the writes to one writer thread that owns the transaction and its open
//! table and commits every 100 ms. On this machine `mutex` was as fast at
//! 1 thread and faster at 2 and 8 (docs/benchmarks.md), so it is the
//! default.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::data::{self, Permutation};
use crate::store::{self, Db, Reader, Result, Work, WriteCount};

const TABLE: TableDefinition<u64, u64> = TableDefinition::new("data");

pub struct Redb(redb::Database);

impl Db for Redb {
    fn open(dir: &Path, budget: usize) -> Result<Self> {
        let db = redb::Builder::new().set_cache_size(budget).create(dir.join("data.redb"))?;
        Ok(Redb(db))
    }

    fn load(&self, keys: &Permutation) -> Result<()> {
        let txn = self.0.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for i in 0..keys.len() {
                let k = keys.at(i);
                table.insert(k, data::value(k, 0))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<impl Reader + '_> {
        Ok(RedbReader(self.0.begin_read()?.open_table(TABLE)?))
    }

    fn scan(&self, f: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let table = self.0.begin_read()?.open_table(TABLE)?;
        for entry in table.iter()? {
            let (k, v) = entry?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    fn write(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        match std::env::var("GB_PEERS_REDB_WRITES").as_deref() {
            Ok("mutex") | Err(_) => self.write_through_mutex(threads, work, every),
            Ok("channel") => self.write_through_channel(threads, work, every),
            Ok(other) => Err(format!("GB_PEERS_REDB_WRITES={other}: channel or mutex").into()),
        }
    }

    fn close(self) -> Result<()> {
        self.0.close()?;
        Ok(())
    }
}

/// redb bulk loaded in key order, in one transaction: the compact file a
/// user gets who loads sorted data (its B-tree pages filled left to right),
/// beside [`Redb`]'s load in the harness's random order. Everything after
/// the load is `Redb`'s.
pub struct RedbSorted(Redb);

impl Db for RedbSorted {
    fn open(dir: &Path, budget: usize) -> Result<Self> {
        Ok(RedbSorted(Redb::open(dir, budget)?))
    }

    fn load(&self, keys: &Permutation) -> Result<()> {
        let txn = self.0.0.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for k in 0..keys.len() {
                table.insert(k, data::value(k, 0))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<impl Reader + '_> {
        self.0.reader()
    }

    fn scan(&self, f: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.0.scan(f)
    }

    fn write(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        self.0.write(threads, work, every)
    }

    fn close(self) -> Result<()> {
        self.0.close()
    }
}

impl Redb {
    fn write_through_channel(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        let (tx, rx) = mpsc::sync_channel::<(u64, u64)>(4096);
        thread::scope(|s| {
            for t in 0..threads {
                let tx = tx.clone();
                s.spawn(move || {
                    let mut source = work.thread(t);
                    while let Some(kv) = source.next() {
                        if tx.send(kv).is_err() {
                            break; // the writer failed
                        }
                    }
                });
            }
            drop(tx);
            let mut count = WriteCount::default();
            // Commits start every `every` (at once again after a commit
            // that took longer), as the other stores' flushes do.
            let mut deadline = Instant::now() + every;
            loop {
                let (ops, more, committed_at) = self.one_transaction(&rx, deadline, &mut count)?;
                count.ops += ops;
                if !more {
                    return Ok(count);
                }
                deadline = committed_at + every;
            }
        })
    }

    /// One write transaction: inserts what arrives until `deadline` or until
    /// every sender is gone, then commits. Returns the writes it committed,
    /// whether more may come, and when the commit started.
    fn one_transaction(
        &self,
        rx: &Receiver<(u64, u64)>,
        deadline: Instant,
        count: &mut WriteCount,
    ) -> Result<(u64, bool, Instant)> {
        let txn = self.0.begin_write()?;
        let mut ops = 0;
        let mut more = true;
        {
            let mut table = txn.open_table(TABLE)?;
            loop {
                // Take what is queued without a timed wait; check the clock
                // every 64 writes.
                if let Ok((k, v)) = rx.try_recv() {
                    table.insert(k, v)?;
                    ops += 1;
                    if ops % 64 != 0 || Instant::now() < deadline {
                        continue;
                    }
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok((k, v)) => {
                        table.insert(k, v)?;
                        ops += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        more = false;
                        break;
                    }
                }
            }
        }
        let start = Instant::now();
        txn.commit()?;
        count.commits += 1;
        count.commit_time += start.elapsed();
        Ok((ops, more, start))
    }

    fn write_through_mutex(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        let txn = Mutex::new(Some(self.0.begin_write()?));
        let commit = |count: &mut WriteCount, reopen: bool| -> Result<()> {
            let mut guard = txn.lock().unwrap();
            let start = Instant::now();
            guard.take().expect("a live transaction").commit()?;
            count.commits += 1;
            count.commit_time += start.elapsed();
            if reopen {
                *guard = Some(self.0.begin_write()?);
            }
            Ok(())
        };
        let insert = |k: u64, v: u64| -> Result<()> {
            let guard = txn.lock().unwrap();
            guard.as_ref().expect("a live transaction").open_table(TABLE)?.insert(k, v)?;
            Ok(())
        };
        let mut count = store::concurrent_writes(threads, work, every, &insert, &|| {
            let mut c = WriteCount::default();
            commit(&mut c, true)
        })?;
        // concurrent_writes made its last commit with a fresh transaction
        // behind it; commit that empty one too, so none is left open.
        let mut last = WriteCount::default();
        commit(&mut last, false)?;
        count.commit_time += last.commit_time;
        Ok(count)
    }
}

struct RedbReader(redb::ReadOnlyTable<u64, u64>);

impl Reader for RedbReader {
    fn get(&mut self, key: u64) -> Result<Option<u64>> {
        Ok(self.0.get(key)?.map(|v| v.value()))
    }
}
