//! A scratch directory per fuzz process, for the targets that work on
//! files: in `/dev/shm` where there is one (a tmpfs, so the tree's syncs
//! cost next to nothing), else in the temporary directory. Directories
//! left by processes that are gone (libFuzzer exits without running
//! destructors, and a crash aborts) are removed when the next one starts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PREFIX: &str = "ghostbtree-fuzz-";

/// The path of `name` in this process's scratch directory.
pub fn path(name: &str) -> PathBuf {
    dir().join(name)
}

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
        remove_stale(&base);
        let dir = base.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    })
}

/// Removes the scratch directories of processes that no longer run (on
/// Linux, where `/proc` tells).
fn remove_stale(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid =
            name.to_str().and_then(|name| name.strip_prefix(PREFIX)).and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
