// LD_PRELOAD helper for tools/bench/udp-echo: counts every heap allocation
// (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) in the
// process and prints "allocations=N" to stderr at exit. Running the echo
// server for two different packet counts shows whether allocations grow
// with packets (they must not: the hot path allocates nothing).
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
    char b[64];
    int k = snprintf(b, sizeof b, "allocations=%lu\n", (unsigned long)atomic_load(&count));
    if (k > 0) (void)!write(2, b, (size_t)k);
}
