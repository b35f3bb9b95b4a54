//! The one foreign call the server makes that no maintained crate wraps safely: glibc's
//! `malloc_trim`. It lives in this crate so that the server crate can forbid `unsafe`
//! outright; the policy of when to trim stays in the server (`confab::memory`).

#![deny(unsafe_code)]

/// Asks the allocator to give its free pages back to the operating system; true if it
/// released any. glibc only: other allocators (musl, macOS, Windows) have no such call,
/// and there this does nothing and returns false.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition: it only walks and
    // releases the allocator's own free memory, under the allocator's own locks, like any
    // malloc or free (the manual lists it MT-Safe). Rust's global allocator on this target
    // is that same malloc, so it sees nothing it does not own.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to give its free pages back to the operating system; true if it
/// released any. glibc only: other allocators (musl, macOS, Windows) have no such call,
/// and there this does nothing and returns false.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn trims_after_frees_without_harming_live_memory() {
        let live = vec![7u8; 1 << 20];
        let freed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        drop(freed);
        super::trim();
        assert!(live.iter().all(|&b| b == 7), "a trim leaves live allocations alone");
    }
}
