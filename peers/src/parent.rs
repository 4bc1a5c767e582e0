//! The parent: builds one loaded copy of each store (the base), then runs
//! every (workload, case, repetition) over a fresh copy of it in a child
//! process, stores alternating within each repetition so drift of the
//! machine spreads over all of them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Options;
use crate::workload::{self, Job};

/// One child's figures.
#[derive(Debug, Clone)]
pub struct Run {
    pub store: String,
    pub workload: String,
    pub case: String,
    pub figures: BTreeMap<String, f64>,
    /// The store's error, if the child failed (no figures then).
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Results {
    pub runs: Vec<Run>,
    pub started: String,
    pub wall: Duration,
    /// `/proc/loadavg`'s three load averages at the start and at the end.
    pub load: (String, String),
}

impl Run {
    fn new(store: &str, workload: &str, case: &str, outcome: Result<BTreeMap<String, f64>, String>) -> Run {
        let (figures, error) = match outcome {
            Ok(figures) => (figures, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        };
        Run { store: store.into(), workload: workload.into(), case: case.into(), figures, error }
    }
}

impl Results {
    /// The values of `figure` over the repetitions of one cell.
    pub fn values(&self, store: &str, workload: &str, case: &str, figure: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.store == store && r.workload == workload && r.case == case)
            .filter_map(|r| r.figures.get(figure).copied())
            .collect()
    }

    /// The distinct errors of one cell's failed repetitions.
    pub fn errors(&self, store: &str, workload: &str, case: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in self.runs.iter().filter(|r| r.store == store && r.workload == workload && r.case == case) {
            if let Some(e) = r.error.as_deref().filter(|e| !out.contains(e)) {
                out.push(e);
            }
        }
        out
    }
}

/// How the parent readies a store's copy before a child.
#[derive(Clone, Copy, PartialEq)]
enum Cache {
    /// Left in the page cache (the copy was just written and synced).
    Warm,
    /// Dropped from it with `POSIX_FADV_DONTNEED`.
    Cold,
}

struct Case {
    workload: &'static str,
    /// The label in the tables.
    label: String,
    cache: Cache,
    threads: usize,
    /// Kill a writer over the copy first (open after kill -9).
    killed: bool,
}

fn cases(o: &Options) -> Vec<Case> {
    let mut out = Vec::new();
    let case =
        |workload, label: String, cache, threads, killed| Case { workload, label, cache, threads, killed };
    for w in &o.workloads {
        match w.as_str() {
            "load" => {} // runs first, building the bases
            "open" => {
                for (killed, k) in [(false, "clean close"), (true, "kill -9")] {
                    for (cache, c) in [(Cache::Warm, "in page cache"), (Cache::Cold, "dropped")] {
                        out.push(case("open", format!("{k}, {c}"), cache, 2, killed));
                    }
                }
            }
            "reads" => {
                for (cache, c) in [(Cache::Warm, "in page cache"), (Cache::Cold, "dropped")] {
                    for &t in &o.threads {
                        out.push(case(
                            "reads",
                            format!("{c}, {t} thread{}", if t == 1 { "" } else { "s" }),
                            cache,
                            t,
                            false,
                        ));
                    }
                }
            }
            "writes" => {
                for &t in &o.threads {
                    out.push(case(
                        "writes",
                        format!("{t} thread{}", if t == 1 { "" } else { "s" }),
                        Cache::Warm,
                        t,
                        false,
                    ));
                }
            }
            "scan" => out.push(case("scan", "in page cache".into(), Cache::Warm, 1, false)),
            "rss" => out.push(case("rss", "2 reader threads, then a scan".into(), Cache::Warm, 2, false)),
            "rewrite" => out.push(case("rewrite", "2 writer threads".into(), Cache::Warm, 2, false)),
            other => unreachable!("{other}"),
        }
    }
    out
}

pub fn run(o: &Options, _args: &[String]) -> Results {
    let started = Instant::now();
    let root = o.dir.join(format!("ghostbtree-peers-{}", std::process::id()));
    fs::create_dir_all(&root).expect("the work directory");
    let mut results = Results { started: now_utc(), ..Results::default() };
    results.load.0 = load_average();
    let stores: Vec<&str> = o.stores.iter().map(String::as_str).collect();
    let base = |s: &str| root.join(s).join("base");
    let work = |s: &str| root.join(s).join("work");

    // The bases: the first load of each store; more loads are measured
    // only when the load workload was asked for.
    let loads = if o.workloads.iter().any(|w| w == "load") { o.reps } else { 1 };
    for rep in 0..loads {
        for s in &stores {
            let dir = if rep == 0 { base(s) } else { work(s) };
            fs::create_dir_all(&dir).expect("a store directory");
            let outcome = child(o, s, "load", &dir, 1, rep as u64);
            eprintln!("{s} load rep {rep}: {outcome:?}");
            results.runs.push(Run::new(s, "load", "", outcome));
            if rep > 0 {
                fs::remove_dir_all(&dir).expect("removing a copy");
            }
        }
    }

    for case in cases(o) {
        for rep in 0..o.reps {
            for s in &stores {
                let dir = work(s);
                os_prepare(&base(s), &dir, case.cache, !case.killed);
                let outcome = match case.killed {
                    true => kill_a_writer(o, s, &dir, rep as u64),
                    false => Ok(()),
                }
                .and_then(|()| {
                    if case.killed && case.cache == Cache::Cold {
                        drop_cache(&dir);
                    }
                    child(o, s, case.workload, &dir, case.threads, 1000 + rep as u64)
                });
                eprintln!("{s} {} [{}] rep {rep}: {outcome:?}", case.workload, case.label);
                results.runs.push(Run::new(s, case.workload, &case.label, outcome));
                fs::remove_dir_all(&dir).expect("removing a copy");
            }
        }
    }
    fs::remove_dir_all(&root).expect("removing the work directory");
    results.wall = started.elapsed();
    results.load.1 = load_average();
    results
}

/// A fresh copy of `base` at `dir`, synced, and dropped from the page cache
/// when the case asks (and `now`: a killed case drops after the kill).
fn os_prepare(base: &Path, dir: &Path, cache: Cache, now: bool) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("removing an old copy");
    }
    crate::os::copy_dir(base, dir).expect("copying a store");
    if cache == Cache::Cold && now {
        drop_cache(dir);
    }
}

fn drop_cache(dir: &Path) {
    let still = crate::os::drop_from_page_cache(dir).expect("posix_fadvise");
    if still > 0 {
        eprintln!(
            "peers: {still} pages of {} still in the page cache after POSIX_FADV_DONTNEED",
            dir.display()
        );
    }
}

fn child_command(o: &Options, store: &str, workload: &str, dir: &Path, threads: usize, seed: u64) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("our own path"));
    cmd.arg("__child").arg(store).arg(workload).arg(dir);
    for (k, v) in [
        ("--keys", o.keys.to_string()),
        ("--budget", o.budget().to_string()),
        ("--threads", threads.to_string()),
        ("--secs", o.secs.to_string()),
        ("--seed", seed.to_string()),
    ] {
        cmd.arg(k).arg(v);
    }
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    cmd
}

/// Runs one child to its end: its figures, or the store's error. A wrong
/// value (exit status 3) aborts the whole run.
fn child(
    o: &Options,
    store: &str,
    workload: &str,
    dir: &Path,
    threads: usize,
    seed: u64,
) -> Result<BTreeMap<String, f64>, String> {
    let out = child_command(o, store, workload, dir, threads, seed)
        .stderr(Stdio::piped())
        .output()
        .expect("starting a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if out.status.code() == Some(3) {
        eprintln!("peers: {store} {workload} returned a wrong value: run aborted");
        std::process::exit(3);
    }
    if !out.status.success() {
        let why = stderr.lines().last().unwrap_or("no message").trim();
        return Err(format!("{why} ({})", out.status));
    }
    let line = stdout.lines().find(|l| l.starts_with("RESULT")).ok_or("no RESULT line")?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect())
}

/// Starts random durable writes (2 threads) over `dir`, lets them run for a
/// second after the child says it is writing (about ten commits), then
/// SIGKILLs it.
fn kill_a_writer(o: &Options, store: &str, dir: &Path, seed: u64) -> Result<(), String> {
    let mut child = child_command(o, store, "kill-writer", dir, 2, 500 + seed)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting a writer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("its stdout"))
        .read_line(&mut line)
        .expect("reading the writer");
    if line.trim() != "WRITING" {
        let status = child.wait().expect("reaping the writer");
        return Err(format!("the writer to be killed failed to start ({status})"));
    }
    std::thread::sleep(Duration::from_secs(1));
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    let status = child.wait().expect("reaping the writer");
    if status.code() == Some(3) {
        eprintln!("peers: {store} kill-writer returned a wrong value: run aborted");
        std::process::exit(3);
    }
    if status.code().is_some() {
        return Err(format!("the writer to be killed stopped by itself ({status})"));
    }
    Ok(())
}

/// `__child STORE WORKLOAD DIR --keys N --budget B --threads T --secs S --seed X`
pub fn child_main(args: &[String]) -> i32 {
    let (store, workload, dir) = (&args[0], &args[1], PathBuf::from(&args[2]));
    let get = |flag: &str| -> String {
        let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} missing"));
        args[i + 1].clone()
    };
    let job = Job {
        dir: &dir,
        keys: get("--keys").parse().unwrap(),
        budget: get("--budget").parse().unwrap(),
        threads: get("--threads").parse().unwrap(),
        secs: get("--secs").parse().unwrap(),
        seed: get("--seed").parse().unwrap(),
    };
    let result = crate::with_store!(store.as_str(), D => workload::run::<D>(workload, &job));
    match result {
        Ok(figures) => {
            figures.print();
            0
        }
        Err(e) => {
            eprintln!("peers: {store} {workload}: {e}");
            1
        }
    }
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    let avg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
