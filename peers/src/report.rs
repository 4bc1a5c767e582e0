//! The markdown tables: one per workload, each cell the median of the
//! repetitions with their spread (min-max), and the ratio of the medians
//! to redb's in the same row.

use crate::Options;
use crate::parent::Results;

/// Which way a figure is better, for the ratio column's header.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

struct Col {
    header: &'static str,
    figure: &'static str,
    /// Divides the figure (e.g. 1 MiB for bytes).
    scale: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

fn col(header: &'static str, figure: &'static str, scale: f64) -> Col {
    Col { header, figure, scale }
}

struct Table {
    workload: &'static str,
    title: &'static str,
    note: &'static str,
    cols: Vec<Col>,
    /// The column the ratio to redb is taken on, and which way is better.
    ratio: (&'static str, Better),
}

fn tables() -> Vec<Table> {
    vec![
        Table {
            workload: "load",
            title: "Bulk load",
            note: "every key once in the shared random order, one thread, one durable commit at the end, clean close",
            cols: vec![
                col("time, s", "secs", 1.0),
                col("M keys/s", "mkeys", 1.0),
                col("file, MiB", "file_bytes", MIB),
            ],
            ratio: ("secs", Better::Lower),
        },
        Table {
            workload: "open",
            title: "Open + first get",
            note: "a fresh process opens the store and gets one random key; a kill -9 case first runs durable random writes (2 threads, a commit every 100 ms) for 1 s and is SIGKILLed; \"dropped\": the files were dropped from the page cache (POSIX_FADV_DONTNEED) before the open",
            cols: vec![
                col("open + first get, ms", "total_ms", 1.0),
                col("open, ms", "open_ms", 1.0),
                col("first get, ms", "get_ms", 1.0),
            ],
            ratio: ("total_ms", Better::Lower),
        },
        Table {
            workload: "reads",
            title: "Random reads",
            note: "uniform random gets of present keys, each checked, for --secs; cache budget a tenth of the data; redb: one read transaction per thread for the whole run",
            cols: vec![col("M gets/s", "mops", 1.0), col("peak RSS, MiB", "rss_peak", MIB)],
            ratio: ("mops", Better::Higher),
        },
        Table {
            workload: "writes",
            title: "Durable random writes",
            note: "updates of uniform random keys for --secs, a durable commit every 100 ms and a last one after; only writes covered by a commit are counted; RSS and ghostbtree's resident bytes sampled every 5 ms while the writers run",
            cols: vec![
                col("K writes/s", "kops", 1.0),
                col("commits", "commits", 1.0),
                col("mean commit, ms", "commit_ms", 1.0),
                col("max RSS, MiB", "rss_max", MIB),
                col("max resident / budget", "resident_over_budget", 1.0),
            ],
            ratio: ("kops", Better::Higher),
        },
        Table {
            workload: "scan",
            title: "Full scan",
            note: "every entry in key order, each checked",
            cols: vec![col("time, s", "secs", 1.0), col("M entries/s", "mops", 1.0)],
            ratio: ("mops", Better::Higher),
        },
        Table {
            workload: "rss",
            title: "Resident memory against the budget",
            note: "VmRSS sampled every 2 ms from before the open through random gets on 2 threads for --secs and a full scan; growth = max - before",
            cols: vec![
                col("budget, MiB", "budget", MIB),
                col("RSS before open, MiB", "rss_before", MIB),
                col("max RSS, MiB", "rss_max", MIB),
                col("max during the reads, MiB", "rss_max_reads", MIB),
                col("max during the scan, MiB", "rss_max_scan", MIB),
                col("growth, MiB", "rss_growth", MIB),
                col("growth / budget", "growth_over_budget", 1.0),
                col("max / budget", "max_over_budget", 1.0),
            ],
            ratio: ("rss_growth", Better::Lower),
        },
        Table {
            workload: "rewrite",
            title: "File size after rewriting every key three times",
            note: "three passes over all keys, each in a fresh random order, 2 writer threads, a durable commit every 100 ms, then a clean close; live data = 16 bytes per entry",
            cols: vec![
                col("before, MiB", "file_bytes_before", MIB),
                col("after, MiB", "file_bytes", MIB),
                col("after / live", "over_live", 1.0),
                col("rewrite time, s", "secs", 1.0),
                col("K writes/s", "kops", 1.0),
            ],
            ratio: ("file_bytes", Better::Lower),
        },
    ]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2] // an odd count in practice (--reps 3)
}

/// Three significant digits, no exponent.
fn num(x: f64) -> String {
    let a = x.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else if a >= 0.1 {
        3
    } else {
        4
    };
    format!("{x:.decimals$}")
}

fn cell(v: &[f64], scale: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let m = median(v) / scale;
    if v.len() == 1 {
        return num(m);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min) / scale;
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max) / scale;
    format!("{} ({}-{})", num(m), num(lo), num(hi))
}

pub fn print(o: &Options, args: &[String], results: &Results) {
    let command = format!(
        "cargo run --release -p ghostbtree-peers{}{}",
        if args.is_empty() { "" } else { " --" },
        args.iter().map(|a| format!(" {a}")).collect::<String>()
    );
    println!("Run of {}: `{command}`", results.started);
    println!();
    println!(
        "{} keys (u64 -> u64), budget {} bytes ({} MiB, a tenth of 16 bytes per entry), {} repetitions, --secs {}, redb {}, sled {}, ghostbtree {}; {}; whole run {:.0} s",
        o.keys,
        o.budget(),
        num(o.budget() as f64 / MIB),
        o.reps,
        o.secs,
        crate::REDB_VERSION,
        crate::SLED_VERSION,
        ghostbtree_commit(),
        machine(),
        results.wall.as_secs_f64()
    );
    println!();
    println!("Load average at the start: {}; at the end: {}.", results.load.0, results.load.1);
    let stores: Vec<&str> =
        crate::stores::ALL.iter().copied().filter(|s| results.runs.iter().any(|r| r.store == *s)).collect();
    for t in tables() {
        if !o.workloads.iter().any(|w| w == t.workload) {
            continue;
        }
        let mut cases: Vec<&str> = Vec::new();
        for r in results.runs.iter().filter(|r| r.workload == t.workload) {
            if !cases.contains(&r.case.as_str()) {
                cases.push(&r.case);
            }
        }
        println!();
        println!("### {}", t.title);
        println!();
        let mut note = t.note.to_string();
        note[..1].make_ascii_uppercase();
        println!("{note}.");
        println!();
        let ratio_header = match t.ratio.1 {
            Better::Higher => "x redb (higher is better)",
            Better::Lower => "x redb (lower is better)",
        };
        let case_col = cases.iter().any(|c| !c.is_empty());
        let mut header = String::from("|");
        if case_col {
            header.push_str(" case |");
        }
        header.push_str(" store |");
        for c in &t.cols {
            header.push_str(&format!(" {} |", c.header));
        }
        header.push_str(&format!(" {ratio_header} |"));
        println!("{header}");
        println!("{}", header.split('|').skip(1).map(|_| "|").collect::<Vec<_>>().join("---"));
        let mut failures: Vec<String> = Vec::new();
        for case in &cases {
            let redb = results.values("redb", t.workload, case, t.ratio.0);
            for s in &stores {
                let mut row = String::from("|");
                if case_col {
                    row.push_str(&format!(" {case} |"));
                }
                row.push_str(&format!(" {s} |"));
                let errors = results.errors(s, t.workload, case);
                for c in &t.cols {
                    let v = results.values(s, t.workload, case, c.figure);
                    let text = match (v.is_empty(), errors.is_empty()) {
                        (true, false) => "failed".to_string(),
                        _ => cell(&v, c.scale),
                    };
                    row.push_str(&format!(" {text} |"));
                }
                for e in errors {
                    let line = format!("{s}, {}: {e}", if case.is_empty() { t.workload } else { case });
                    if !failures.contains(&line) {
                        failures.push(line);
                    }
                }
                let mine = results.values(s, t.workload, case, t.ratio.0);
                let ratio = if mine.is_empty() || redb.is_empty() {
                    "-".to_string()
                } else {
                    num(median(&mine) / median(&redb))
                };
                row.push_str(&format!(" {ratio} |"));
                println!("{row}");
            }
        }
        if !failures.is_empty() {
            println!();
            println!("Failed repetitions (the store's error):");
            println!();
            for f in failures {
                println!("- {f}");
            }
        }
    }
}

/// The commit this tree is at (and whether it has changes), from git.
fn ghostbtree_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("at {commit}{}", if dirty { " with local changes" } else { "" })
}

/// Cores, CPU model and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!("{cores} cores ({model}), {:.0} GiB", mem_kib as f64 / (1024.0 * 1024.0))
}
