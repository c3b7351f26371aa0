//! Process memory behaviour.

/// Makes the C allocator hand large blocks back to the system when they are freed.
///
/// Each argon2id password check allocates `passwords.memory_kib` (19 MiB by default) at once.
/// glibc serves such blocks with `mmap` and unmaps them on free, but after the first free it
/// raises its mmap threshold to the block's size (up to 32 MiB), so the next blocks come from
/// the heap and stay in the process after use: idle memory grows by tens of MiB per worker
/// thread that ever checked a password. A fixed threshold keeps every large block on `mmap`.
pub fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once at start, before threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
