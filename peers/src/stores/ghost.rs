//! ghostbtree over its file store: `insert` from every thread (lock-free,
//! no transaction), `flush` for a durable checkpoint. `GB_PEERS_LEAF=n`
//! sets its leaf capacity (default: the crate's).

use std::path::Path;
use std::time::Duration;

use ghostbtree::{BTree, Config};

use crate::data::{self, Permutation};
use crate::store::{self, Db, Reader, Result, Work, WriteCount};

pub struct Ghost(BTree<u64, u64>);

impl Db for Ghost {
    fn open(dir: &Path, budget: usize) -> Result<Self> {
        let mut config = Config::new().memory_budget(budget);
        if let Some(leaf) = std::env::var("GB_PEERS_LEAF").ok().and_then(|leaf| leaf.parse().ok()) {
            config = config.leaf_capacity(leaf);
        }
        let tree = BTree::open_file(dir.join("data.gbt"), config)?;
        Ok(Ghost(tree))
    }

    fn load(&self, keys: &Permutation) -> Result<()> {
        for i in 0..keys.len() {
            let k = keys.at(i);
            self.0.insert(k, data::value(k, 0))?;
        }
        self.0.flush()?;
        Ok(())
    }

    fn reader(&self) -> Result<impl Reader + '_> {
        Ok(GhostReader(&self.0))
    }

    fn scan(&self, f: &mut dyn FnMut(u64, u64)) -> Result<()> {
        for entry in self.0.iter() {
            let (k, v) = entry?;
            f(k, v);
        }
        Ok(())
    }

    fn write(&self, threads: usize, work: &Work, every: Duration) -> Result<WriteCount> {
        store::concurrent_writes(
            threads,
            work,
            every,
            &|k, v| {
                self.0.insert(k, v)?;
                Ok(())
            },
            &|| Ok(self.0.flush()?),
        )
    }

    fn close(self) -> Result<()> {
        self.0.close()?;
        Ok(())
    }

    fn counters(&self) -> Vec<(&'static str, f64)> {
        let s = self.0.stats();
        vec![
            ("gb_resident_bytes", s.resident_bytes as f64),
            ("gb_file_bytes", s.file_bytes as f64),
            ("gb_live_bytes", s.live_bytes as f64),
            ("gb_store_memory_bytes", s.store_memory_bytes as f64),
            ("gb_checkpoints", s.checkpoints as f64),
            ("gb_loads", s.loads as f64),
            ("gb_reads_through", s.reads_through as f64),
            ("gb_evictions", s.evictions as f64),
            ("gb_store_writes", s.store_writes as f64),
        ]
    }

    fn resident(&self) -> Option<u64> {
        Some(self.0.stats().resident_bytes)
    }
}

struct GhostReader<'a>(&'a BTree<u64, u64>);

impl Reader for GhostReader<'_> {
    fn get(&mut self, key: u64) -> Result<Option<u64>> {
        Ok(self.0.get(&key)?)
    }
}
