//! What the process asks of its allocator, and why.
//!
//! On the machine measured (a 2-core KVM guest) a fresh page costs more than the
//! bytes put in it: at plant scale a run faulted in 55 GB of new pages (13.6 M
//! faults, 32 s of system time) when freed memory went back to the kernel within
//! seconds, and 3.4 GB (0.8 M faults, 8 s) when it was kept and reused. So the binary
//! allocates with jemalloc (one arena for every thread, as threads hand buffers
//! to each other all day, plus jemalloc's own for allocations of 8 MiB and up),
//! which with these options never gives freed pages back on its own; instead the run calls
//! [`settle`] between its steps, which gives them all back when the process
//! holds more than its memory limit. The limit bounds what is kept for reuse,
//! not what the run needs live (README, "How much memory a run takes").
//! glibc's `malloc`, which the binary no longer uses, cannot do this: it keeps
//! freed memory per arena and above a moving threshold (BENCHMARKS.md, issue 18).

/// The allocator's options, read before `main` (jemalloc's `malloc_conf`):
/// one arena, and no purging of freed pages on a timer. Its memory is in
/// ordinary pages: transparent huge pages (`thp:always`) took 4 % off a plant
/// run's CPU on one host and added 29 % to its wall time on another, where the
/// kernel zeroing each fresh 2 MiB page was a sixth of the run's samples, and
/// they raised the peak by the parts of huge pages left untouched
/// (BENCHMARKS.md). `_RJEM_MALLOC_CONF=thp:always` asks for them at run time.
#[cfg(target_os = "linux")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 46] = b"narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

/// The memory limit when the job file sets none: 2 GiB.
pub const DEFAULT_LIMIT: u64 = 2 << 30;

static LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(DEFAULT_LIMIT);

/// Sets the limit [`settle`] keeps the process under (the job's `[limits] memory`).
pub fn set_limit(bytes: u64) {
    LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

fn limit() -> u64 {
    LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Gives freed pages back to the kernel if the process holds more than 13/16
/// of its limit. The margin is for what the run's steps allocate between two
/// calls (an hour's dedup, features and batches): at plant scale the process
/// peaked 150-300 MB above the level it was settled to.
pub fn settle() {
    settle_to(limit() / 16 * 13);
}

/// [`settle`] with a limit of `bytes`; whether pages were given back.
fn settle_to(bytes: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        let resident = jemalloc::resident();
        tracing::trace!(?resident, allocated = ?jemalloc::allocated(), "memory held");
        if resident.is_some_and(|r| r > bytes) {
            jemalloc::purge();
            tracing::debug!(?resident, after = ?jemalloc::resident(), "freed memory given back");
            return true;
        }
    }
    let _ = bytes;
    false
}

#[cfg(target_os = "linux")]
mod jemalloc {
    use std::ffi::c_void;
    use std::ptr::null_mut;
    use tikv_jemalloc_sys::mallctl;

    /// Bytes of physical memory the allocator holds (its statistics refreshed first).
    pub fn resident() -> Option<u64> {
        stat(c"stats.resident")
    }

    /// Bytes the program has allocated and not freed (as of the last refresh).
    pub fn allocated() -> Option<u64> {
        stat(c"stats.allocated")
    }

    /// One of jemalloc's `size_t` statistics, refreshed first.
    fn stat(name: &std::ffi::CStr) -> Option<u64> {
        let mut epoch: u64 = 1;
        // SAFETY: "epoch" takes a u64, as jemalloc's manual says; the pointer
        // is to a local of that type.
        let refreshed = unsafe {
            mallctl(
                c"epoch".as_ptr(),
                null_mut(),
                null_mut(),
                (&raw mut epoch).cast::<c_void>(),
                std::mem::size_of::<u64>(),
            ) == 0
        };
        // SAFETY: the `stats.*` sizes are size_t, as jemalloc's manual says.
        let value = unsafe { read::<usize>(name) };
        value.filter(|_| refreshed).map(|v| v as u64)
    }

    /// The value jemalloc holds under `name`.
    ///
    /// # Safety
    /// `T` is the type jemalloc's manual gives `name`.
    pub unsafe fn read<T: Copy + Default>(name: &std::ffi::CStr) -> Option<T> {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: the pointer is to a local of `name`'s type (the caller's
        // promise), and `len` is its size.
        let ok = unsafe {
            mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &mut len,
                null_mut(),
                0,
            ) == 0
        };
        ok.then_some(value)
    }

    /// Returns every arena's unused pages to the kernel.
    pub fn purge() {
        // SAFETY: "arena.<MALLCTL_ARENAS_ALL>.purge" takes and gives nothing.
        unsafe {
            mallctl(
                c"arena.4096.purge".as_ptr(),
                null_mut(),
                null_mut(),
                null_mut(),
                0,
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn settling_gives_freed_pages_back_only_above_the_limit() {
        // The tests' allocator is not jemalloc: allocate from it directly.
        let layout = Layout::from_size_align(64 << 20, 4096).unwrap();
        let jemalloc = tikv_jemallocator::Jemalloc;
        // SAFETY: a non-zero size; every page is written, then the block freed once.
        unsafe {
            let p = jemalloc.alloc(layout);
            assert!(!p.is_null());
            for i in (0..layout.size()).step_by(4096) {
                p.add(i).write(1);
            }
            jemalloc.dealloc(p, layout);
        }
        let held = jemalloc::resident().unwrap();
        assert!(held >= 64 << 20, "the freed block is kept: {held}");
        assert!(
            !settle_to(held + (1 << 30)),
            "under the limit nothing is given back"
        );
        assert!(jemalloc::resident().unwrap() >= 64 << 20);
        assert!(settle_to(1 << 20));
        let after = jemalloc::resident().unwrap();
        assert!(after + (60 << 20) <= held, "{held} then {after}");
    }

    /// One of jemalloc's string options, as it read them at start-up.
    fn option(name: &std::ffi::CStr) -> String {
        // SAFETY: `opt.thp` and `opt.metadata_thp` are `const char *`, as
        // jemalloc's manual says.
        let value = unsafe { jemalloc::read::<*const std::ffi::c_char>(name) };
        let value = value.filter(|v| !v.is_null());
        let value = value.unwrap_or_else(|| panic!("{name:?}"));
        // SAFETY: a NUL-terminated static string of jemalloc's.
        unsafe { std::ffi::CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn the_allocator_runs_with_the_options_the_binary_gives_it() {
        // Ordinary pages: no huge pages asked for, for the heap or the metadata.
        assert_eq!(option(c"opt.thp"), "default");
        assert_eq!(option(c"opt.metadata_thp"), "disabled");
        // SAFETY: `opt.narenas` is an unsigned, as jemalloc's manual says.
        let narenas = unsafe { jemalloc::read::<u32>(c"opt.narenas") };
        assert_eq!(narenas, Some(1));
        // Freed pages are kept until `settle` gives them back.
        // SAFETY: `opt.dirty_decay_ms` and `opt.muzzy_decay_ms` are ssize_t.
        let decay = unsafe {
            (
                jemalloc::read::<isize>(c"opt.dirty_decay_ms"),
                jemalloc::read::<isize>(c"opt.muzzy_decay_ms"),
            )
        };
        assert_eq!(decay, (Some(-1), Some(-1)));
    }
}
