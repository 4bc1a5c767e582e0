//! sled 0.34: one `Db`, `insert` from every thread, `flush` for durability.
//! Keys big-endian so byte order is key order.

use std::path::Path;
use std::time::Duration;

use crate::data::Permutation;
use crate::store::{self, Db, Reader, Result, Work, WriteCount};

pub struct Sled(sled::Db);

fn decode(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8-byte entries"))
}

impl Db for Sled {
    fn open(dir: &Path, budget: usize) -> Result<Self> {
        // Its own 500 ms background flush is off: the workloads flush
        // every 100 ms themselves, like every other store's commit.
        let db = sled::Config::new().path(dir).cache_capacity(budget as u64).flush_every_ms(None).open()?;
        Ok(Sled(db))
    }

    fn load(&self, keys: &Permutation) -> Result<()> {
        for i in 0..keys.len() {
            let k = keys.at(i);
            self.0.insert(k.to_be_bytes(), &crate::data::value(k, 0).to_be_bytes())?;
        }
        self.0.flush()?;
        Ok(())
    }

    fn reader(&self) -> Result<impl Reader + '_> {
        Ok(SledReader(&self.0))
    }

    fn scan(&self, f: &mut dyn FnMut(u64, u64)) -> Result<()> {
        for entry in self.0.iter() {
            let (k, v) = entry?;
            f(decode(&k), decode(&v));
        }
        Ok(())
    }

    fn write(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        store::concurrent_writes(
            threads,
            work,
            every,
            &|k, v| {
                self.0.insert(k.to_be_bytes(), &v.to_be_bytes())?;
                Ok(())
            },
            &|| {
                self.0.flush()?;
                Ok(())
            },
        )
    }

    fn close(self) -> Result<()> {
        self.0.flush()?;
        drop(self.0);
        Ok(())
    }
}

struct SledReader<'a>(&'a sled::Db);

impl Reader for SledReader<'_> {
    fn get(&mut self, key: u64) -> Result<Option<u64>> {
        Ok(self.0.get(key.to_be_bytes())?.map(|v| decode(&v)))
    }
}
