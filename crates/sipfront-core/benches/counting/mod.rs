//! The counting global allocator the core's count benches share: heap
//! allocations and bytes counted only inside [`counted`] (the core's own
//! calls), live heap bytes counted always.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

struct Counting;

pub static ALLOCS: AtomicU64 = AtomicU64::new(0);
pub static BYTES: AtomicU64 = AtomicU64::new(0);
/// Live heap bytes, everything included (the driver holds nothing that
/// grows between the two readings).
pub static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if ON.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

#[allow(clippy::cast_possible_wrap)] // allocation sizes are far below 2^63
fn live(delta: usize, sign: i64) {
    LIVE.fetch_add(sign * delta as i64, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        live(layout.size(), 1);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(layout.size(), -1);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        live(layout.size(), -1);
        live(new_size, 1);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with the counter on (callgrind's `--toggle-collect` target).
#[inline(never)]
pub fn counted<T>(f: impl FnOnce() -> T) -> T {
    ON.with(|c| c.set(true));
    let out = f();
    ON.with(|c| c.set(false));
    out
}
