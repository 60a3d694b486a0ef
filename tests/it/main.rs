//! The one integration-test binary: the real `coldpath` binary on the fixtures, tables read back with deltalake.

mod adf;
mod adf_expr;
mod azure;
mod azurite;
mod backfill;
mod catchup;
mod common;
mod consumers;
mod crash;
mod declared;
mod delta_rows;
mod drift;
mod edges;
mod exit_codes;
mod expectations;
mod features;
mod fuzz;
mod health;
mod held_out;
mod hostile;
mod hours;
mod layouts;
mod lock;
mod maintain;
mod minute;
mod mltable;
mod pyarrow14;
mod report_html;
mod run_local;
mod spill;
mod stop;
mod volume;

/// Counts the bytes each thread holds, so a test can bound what one call allocates.
pub mod memory {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = HELD.try_with(|h| {
            let now = h.get() + n;
            h.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }

    // SAFETY: every call is passed to the system allocator unchanged; only counters move.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// The most this thread held at once while `f` ran, above what it held before.
    pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = HELD.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(Cell::get) - base;
        (out, peak.max(0) as usize)
    }
}

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;
