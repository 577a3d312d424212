// LD_PRELOAD helper for the benchmarks (tools/bench/udp-echo, relay,
// srtp-roundtrip): counts every heap allocation (malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign) in the process.
// - At exit it prints "allocations=N" to stderr (unless MALLOC_COUNT_REPORT=0).
//   Running a server for two different packet counts shows whether
//   allocations grow with packets (they must not: the hot path allocates
//   nothing).
// - parley_malloc_calls() returns the count so far; a benchmark finds it with
//   dlsym(RTLD_DEFAULT, "parley_malloc_calls") and reads it around its timed
//   loop (tools/bench/srtp).
#define _GNU_SOURCE 1
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong count;
#define COUNT() atomic_fetch_add_explicit(&count, 1, memory_order_relaxed)

long parley_malloc_calls(void) { return (long)atomic_load(&count); }

void *malloc(size_t s) { COUNT(); return __libc_malloc(s); }
void *calloc(size_t a, size_t b) { COUNT(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t s) { COUNT(); return __libc_realloc(p, s); }
void *memalign(size_t a, size_t s) { COUNT(); return __libc_memalign(a, s); }
void *aligned_alloc(size_t a, size_t s) { COUNT(); return __libc_memalign(a, s); }
int posix_memalign(void **p, size_t a, size_t s) {
    COUNT();
    *p = __libc_memalign(a, s);
    return *p ? 0 : 12; // ENOMEM
}

__attribute__((destructor)) static void report(void) {
    const char *r = getenv("MALLOC_COUNT_REPORT");
    if (r && r[0] == '0') return;
    char b[64];
    int k = snprintf(b, sizeof b, "allocations=%lu\n", (unsigned long)atomic_load(&count));
    if (k > 0) (void)!write(2, b, (size_t)k);
}
