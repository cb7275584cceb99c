/* The choreo binary's allocator: jemalloc, linked only into the binary (CMake option
 * CHOREO_JEMALLOC), so that it serves the whole process, NNG's and SQLite's allocations too.
 *
 * Why: a consumer behind its producer holds hundreds of frames in NNG's receive queue, each
 * in memory the kernel had to fault in page by page; on the benchmark's machine those faults
 * were a fifth of a consumer's CPU per event (README, Performance). jemalloc's memory in huge
 * pages (transparent, asked for with madvise, so this works where the system's setting is
 * "madvise") takes a fault per 2 MiB instead of per 4 KiB. glibc can do the same, but only
 * from the GLIBC_TUNABLES environment variable read at start.
 *
 * One arena: each arena's huge pages are a host's memory from its first allocation (an idle
 * host: 7 MB resident with glibc, 40 MB with jemalloc's eight arenas, 14 MB with one), and the
 * threads' own caches keep them from waiting on its lock.
 *
 * jemalloc reads this string at its first allocation; MALLOC_CONF in the environment still
 * overrides it (e.g. MALLOC_CONF=thp:default). It must be exported for jemalloc to find it. */
#ifdef CHOREO_JEMALLOC
__attribute__((visibility("default"), used)) const char *malloc_conf = "thp:always,narenas:1";
#endif
