//! How the C allocator gives memory back: the one process-wide allocator
//! setting the server makes (unsafe: a call into libc).
//!
//! glibc's malloc serves a block of 128 KiB or more with a mapping of its own
//! and unmaps it when it is freed, until the first time that happens: from
//! then on it raises that threshold to the freed block's size, and blocks up
//! to it come from the arenas, which keep them. An argon2id verification
//! takes 19 MiB. So every verification after the first left its memory in
//! the arena of the thread that ran it, and the arenas fragmented: 100
//! parallel first logins left ~180 MB resident for good (docs/benchmarks.md
//! § "Idle sessions and a burst of first logins").
//!
//! Setting the thresholds turns the adjustment off: blocks of 4 MiB or more
//! (a password hash's memory: argon2, yescrypt; nothing on a transfer's path
//! is as large) are mapped and unmapped each time, and an arena gives back
//! free memory above its top 4 MiB.
#![allow(unsafe_code)]

/// The size from which a block gets a mapping of its own, and the free memory
/// an arena keeps at its top.
const LARGE_BLOCK: i32 = 4 << 20;

/// Makes the C allocator return large blocks to the system when they are
/// freed. Call once, early; without glibc it does nothing.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tunables, under malloc's own
    // locks; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK);
        libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE_BLOCK);
    }
}
