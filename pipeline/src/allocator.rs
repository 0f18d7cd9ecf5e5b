//! The memory allocator set up for a daemon whose main user is tract. With glibc's defaults
//! a `scened run` of EfficientNet-Lite0 fp32 held ~20 MiB more than it does with this setup,
//! none of it live: freed blocks glibc could not hand back or reuse (docs/memory.md has the
//! measurements). An inference allocates ~1,100 blocks, 43 MB in all, the largest 4.8 MB, and
//! frees them again; what wastes memory is what sits between those large blocks:
//! - glibc gives each thread an arena of its own (up to 8 per core), so the capture, resize
//!   and inference threads each keep a heap sized for their own peak;
//! - each thread's cache of small freed blocks (tcache) keeps them allocated in glibc's view,
//!   scattered among the large free blocks, which then cannot merge;
//! - Rust's system allocator serves tract's 64-byte-aligned tensors with `posix_memalign`, which
//!   cuts the aligned block out of a larger free one and leaves the cut-off slivers free among
//!   the large blocks, where small allocations land and stay.
//!
//! One arena and no tcache are glibc tunables, read only when a process starts, so [`tune`]
//! executes scened again with them set; the slivers are avoided by [`Allocator`]. The binary
//! installs both (src/main.rs).

use std::alloc::{GlobalAlloc, Layout, System};

/// The glibc tunables scened runs with, unless `GLIBC_TUNABLES` already sets malloc's own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0";

/// Executes this program again with [`TUNABLES`] in its environment, before anything is
/// allocated that they would govern. Returns only if that cannot be done (the program then
/// runs with glibc's defaults) or is not needed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    use std::os::unix::process::CommandExt;

    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    // Also the guard against doing it twice: the second start finds them set.
    if current.contains("glibc.malloc.") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let tunables = match current.as_str() {
        "" => TUNABLES.to_string(),
        other => format!("{other}:{TUNABLES}"),
    };
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Returns only on failure.
    let _ = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Hands the free memory in the heap back to the system. After a reload has dropped a model:
/// its weights were taken from the heap (glibc raises its mmap threshold past the blocks it
/// has freed), and glibc would keep them resident, free, for a model that never comes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    // SAFETY: malloc_trim only walks glibc's own heap, under its lock.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}

/// The system allocator, except that blocks aligned beyond malloc's own 16 bytes (up to
/// [`MAX_ALIGN`]) are carved out of a plain `malloc` of `size + align` rather than taken from
/// `posix_memalign`; the address `malloc` returned is kept in the 8 bytes before the block.
pub struct Allocator;

/// malloc's own alignment on 64-bit glibc.
const MALLOC_ALIGN: usize = 16;
/// Alignments up to a cache line pair (crossbeam pads to 128) are over-allocated; larger ones
/// (pages) go to `posix_memalign`, where the slack would cost more than the slivers.
const MAX_ALIGN: usize = 128;

fn carved(layout: Layout) -> bool {
    layout.align() > MALLOC_ALIGN && layout.align() <= MAX_ALIGN
}

// SAFETY: every block comes from malloc (directly or through `System`) and goes back the way
// it came, decided by its layout, which the caller passes unchanged to `dealloc`.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !carved(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        let Some(size) = layout.size().checked_add(layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: malloc may be called with any size; a null result is passed on.
        let raw = unsafe { libc::malloc(size) }.cast::<u8>();
        if raw.is_null() {
            return raw;
        }
        // `raw` is 16-aligned, so the block starts 16 to `align` bytes in: room for the
        // address before it, and the `align` bytes of slack cover the shift.
        let offset = (raw as usize + 8).next_multiple_of(layout.align()) - raw as usize;
        // SAFETY: 16 ≤ `offset` ≤ align keeps the block inside the allocation and leaves
        // 8 bytes before it, 8-aligned, for the address.
        unsafe {
            let block = raw.add(offset);
            block.cast::<*mut u8>().sub(1).write(raw);
            block
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if !carved(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.dealloc(block, layout) };
        }
        // SAFETY: `alloc` wrote the malloc'd address just before the block.
        unsafe { libc::free(block.cast::<*mut u8>().sub(1).read().cast()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !carved(layout) {
            // SAFETY: the caller's contract, passed on; calloc skips zeroing fresh pages.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's contract; the block is `layout.size()` bytes.
        unsafe {
            let block = self.alloc(layout);
            if !block.is_null() {
                block.write_bytes(0, layout.size());
            }
            block
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !carved(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: the caller's contract: `layout` describes `block`, `new_size` fits `isize`.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carved_blocks_are_aligned_usable_and_freed() {
        for align in [32, 64, 128] {
            for size in [1, 63, 64, 4096, 1 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-sized layout, freed with the same layout.
                unsafe {
                    let block = Allocator.alloc_zeroed(layout);
                    assert_eq!(block as usize % align, 0, "{size} bytes at {align}");
                    assert!(std::slice::from_raw_parts(block, size)
                        .iter()
                        .all(|&b| b == 0));
                    block.write_bytes(0xAB, size);
                    let grown = Allocator.realloc(block, layout, size * 2);
                    assert_eq!(grown as usize % align, 0);
                    assert_eq!(*grown.add(size - 1), 0xAB);
                    Allocator.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                }
            }
        }
    }
}
