//! What the process asks of glibc's allocator, and why.
//!
//! glibc gives a thread that finds the arenas busy an arena of its own, up to
//! eight per core, and memory freed in one arena is not reused by another. A run
//! allocates on tokio's workers and blocking threads (blob pieces), rayon's
//! (decoding) and Polars' (dedup, features): at plant scale its heap peaked at
//! 2.5 GB while the process held 3.6 GB. One arena per core took that peak to
//! 3.0 GB.
//!
//! glibc also raises its threshold for mapping an allocation on its own as large
//! blocks are freed, up to 32 MiB, after which an hour's columns, dedup's keys
//! and Parquet's buffers come from the arenas and stay there once freed. A fixed
//! threshold of 4 MiB gives those back to the kernel when they are freed: the
//! plant day's peak went to 2.3 GB. The price is fresh pages for each of them, about
//! 10 s more system time over the plant day's 150 s of CPU (BENCHMARKS.md, issue 18).
//! `malloc_trim` after every hour took another 130 MB off but cost the small day 12 %
//! of its wall time, so it is not called. Elsewhere (musl, macOS) these are no-ops.

/// Allocations from this size up are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Caps glibc's arenas at one per core, and maps every allocation of
/// [`MMAP_THRESHOLD`] or more on its own; call before any thread is started.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets parameters of the allocator; it is called
        // before the runtime starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as i32);
        }
    }
}
