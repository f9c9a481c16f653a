//! How the training process asks glibc to manage its memory.
//!
//! Why: a training step allocates and frees hundreds of megabytes of activations,
//! gradients and im2col columns, every step the same sizes. By default glibc returns
//! large blocks to the kernel when they are freed (`mmap` / trim), so the next step faults
//! them in again 4 KiB at a time and the kernel zeroes every page: about a million page
//! faults per 64×64 step here. Keeping freed memory in the heap for reuse cuts them to a
//! few hundred thousand and the step by ~10% at the same peak RSS (BENCHMARKS.md).

/// Call once at the start of a training binary, before large allocations.
/// `MALLOC_*` environment variables set by the user still take precedence.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str, param: libc::c_int, value: libc::c_int| {
            if std::env::var_os(var).is_none() {
                // Advice to the allocator only: a refusal leaves glibc's defaults.
                unsafe { libc::mallopt(param, value) };
            }
        };
        // Every block from the heap (none mmapped on its own), the heap never trimmed,
        // one arena so that a freed block is found by whichever thread allocates next.
        set("MALLOC_MMAP_MAX_", libc::M_MMAP_MAX, 0);
        set("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        set("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 1);
    }
}
