//! ghostbtree against redb and sled (issue 10): the same data, the same
//! machine, one run, every (store, workload) in a fresh child process.
//!
//! ```sh
//! cargo run --release -p ghostbtree-peers -- --keys 1000000
//! cargo run --release -p ghostbtree-peers -- --stores redb,sled --workloads reads,writes --threads 1,2
//! ```
//!
//! Options: `--keys N` (1000000), `--stores a,b` (all), `--workloads a,b`
//! (load, open, reads, writes, scan, rss, rewrite), `--threads 1,2,8`,
//! `--reps 3`, `--secs 3` (each timed workload), `--dir D` (or
//! `GB_PEERS_DIR`; default /tmp). Every figure is the median of `--reps`
//! children with the spread (min-max); markdown tables go to stdout,
//! progress to stderr.

mod data;
mod os;
mod parent;
mod report;
mod store;
mod stores;
mod workload;

use std::path::PathBuf;

/// Versions pinned in peers/Cargo.toml (checked by a test there).
pub const REDB_VERSION: &str = "4.6.0";
pub const SLED_VERSION: &str = "0.34.7";

pub const WORKLOADS: [&str; 7] = ["load", "open", "reads", "writes", "scan", "rss", "rewrite"];

#[derive(Clone, Debug)]
pub struct Options {
    pub keys: u64,
    pub stores: Vec<String>,
    pub workloads: Vec<String>,
    pub threads: Vec<usize>,
    pub reps: usize,
    pub secs: f64,
    pub dir: PathBuf,
}

impl Options {
    /// A tenth of the data: 16 bytes per entry.
    pub fn budget(&self) -> usize {
        (16 * self.keys / 10) as usize
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        keys: 1_000_000,
        stores: stores::ALL.iter().map(|s| s.to_string()).collect(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        threads: vec![1, 2, 8],
        reps: 3,
        secs: 3.0,
        dir: std::env::var_os("GB_PEERS_DIR").map(PathBuf::from).unwrap_or_else(|| "/tmp".into()),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--keys" => o.keys = value.replace('_', "").parse().map_err(|e| bad(&e))?,
            "--stores" => o.stores = list(value),
            "--workloads" => o.workloads = list(value),
            "--threads" => {
                o.threads =
                    list(value).iter().map(|t| t.parse()).collect::<Result<_, _>>().map_err(|e| bad(&e))?
            }
            "--reps" => o.reps = value.parse().map_err(|e| bad(&e))?,
            "--secs" => o.secs = value.parse().map_err(|e| bad(&e))?,
            "--dir" => o.dir = value.into(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    for s in &o.stores {
        if !stores::ALL.contains(&s.as_str()) {
            return Err(format!("unknown store {s} (ghostbtree, redb, redb-sorted, sled)"));
        }
    }
    for w in &o.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!("unknown workload {w} ({})", WORKLOADS.join(", ")));
        }
    }
    if o.keys < 1000 || o.reps == 0 || o.threads.is_empty() {
        return Err("--keys at least 1000, --reps and --threads not empty".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__child") {
        std::process::exit(parent::child_main(&args[1..]));
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("peers: {e}");
            std::process::exit(2);
        }
    };
    let results = parent::run(&options, &args);
    report::print(&options, &args, &results);
}

#[cfg(test)]
mod tests {
    #[test]
    fn pinned_versions_match_the_manifest() {
        let manifest = include_str!("../Cargo.toml");
        assert!(manifest.contains(&format!("redb = \"={}\"", super::REDB_VERSION)));
        assert!(manifest.contains(&format!("sled = \"={}\"", super::SLED_VERSION)));
    }
}
