//! What the engine asks of the platform beyond std.

/// Asks the allocator to give the free memory it holds back to the OS,
/// where that allocator is glibc's (elsewhere, and under Miri and loom,
/// nothing).
///
/// glibc gives threads arenas of their own and returns a freed block to
/// the arena it came from, keeping its pages. A tree's node versions are
/// loaded by one thread and evicted (freed) by whichever thread turns the
/// clock, so arenas fill with free space that other threads' loads do not
/// use: after random reads on two threads and a scan on a third, the
/// process held 3x the budget at 10M keys (`docs/benchmarks.md`).
/// `malloc_trim` walks every arena and gives back its whole free pages
/// (about 0.1 ms at a 16 MB budget, more with more threads); the clock
/// calls it after its queue's worth of evictions (`evict.rs`).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri), not(loom)))]
    {
        // SAFETY: glibc's declaration, `int malloc_trim(size_t pad)`.
        #[allow(unsafe_code)]
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` takes no pointer, locks each arena
        // while it trims it, and may be called from any thread at any time.
        #[allow(unsafe_code)]
        unsafe {
            malloc_trim(0)
        };
    }
}
