//! What the harness asks of the OS: resident memory, the page cache, and
//! the size of a store's files.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
            return kib * 1024;
        }
    }
    panic!("no {field} in /proc/self/status");
}

/// Resident set size now.
pub fn rss() -> u64 {
    proc_status_bytes("VmRSS")
}

/// Every regular file under `dir` (a store's directory), recursively.
pub fn files(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes of the files under `dir`: (logical length, allocated on disk).
pub fn dir_bytes(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut allocated) = (0, 0);
    for f in files(dir)? {
        let m = fs::metadata(&f)?;
        len += m.len();
        allocated += m.blocks() * 512;
    }
    Ok((len, allocated))
}

/// Copies the directory `from` to `to` (which must not exist) and syncs
/// the copy, so no write-back of it runs during the measurement.
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            fs::File::open(&target)?.sync_all()?;
        }
    }
    fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// Drops the files under `dir` from the page cache: sync, then
/// `posix_fadvise(POSIX_FADV_DONTNEED)` over each whole file (the kernel
/// drops clean pages only, hence the sync first). Returns the pages of the
/// files still cached afterwards, from `mincore`, as a check.
pub fn drop_from_page_cache(dir: &Path) -> io::Result<u64> {
    let mut still = 0;
    for f in files(dir)? {
        let file = fs::OpenOptions::new().read(true).write(true).open(&f)?;
        file.sync_all()?;
        // SAFETY: a plain syscall on a file descriptor we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        still += cached_pages(&file)?;
    }
    Ok(still)
}

/// Pages of `file` in the page cache, from `mincore` over a read-only map.
fn cached_pages(file: &fs::File) -> io::Result<u64> {
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh shared read-only map of a file we hold open; it is
    // only passed to mincore and unmapped below, never read.
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `map` covers `len` bytes and `vec` has one byte per page.
    let rc = unsafe { libc::mincore(map, len, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: unmaps exactly the map made above.
    unsafe { libc::munmap(map, len) };
    if rc != 0 {
        return Err(err);
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64)
}
