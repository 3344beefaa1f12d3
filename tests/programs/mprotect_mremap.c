/* mprotect_mremap.c - mmaps 1 anonymous page, fills it with per-run data
 * (pid, monotonic nsec), mprotects it read-only, then mremaps it to 64 pages
 * with MREMAP_MAYMOVE (a PROT_NONE guard page right after it forces a move),
 * makes the grown region writable again, writes at its end, and prints the
 * contents, the old and new addresses (ASLR: vary per run) and whether the
 * address moved.
 * Exit status: 0, or 6 on failure. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 6; } while (0)

int main(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);

    /* Two pages; the second becomes a PROT_NONE guard (a separate VMA), so
     * growing the first page in place is impossible and mremap must move. */
    char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        FAIL("mmap");
    char *guard = p + pg;
    int guarded = mprotect(guard, pg, PROT_NONE) == 0;

    snprintf(p, pg, "pid=%d mono_nsec=%09ld", (int)getpid(), ts.tv_nsec);
    printf("initial: %s\n", p);

    if (mprotect(p, pg, PROT_READ) != 0)
        FAIL("mprotect ro");
    printf("after mprotect(PROT_READ): %s\n", p);

    size_t newlen = 64 * pg;
    char *q = mremap(p, pg, newlen, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        FAIL("mremap");
    printf("guard page placed: %s\n", guarded ? "yes" : "no");
    printf("old address: %p\n", (void *)p);
    printf("new address: %p\n", (void *)q);
    printf("moved: %s\n", q != p ? "yes" : "no");
    printf("after mremap: %s\n", q);

    if (mprotect(q, newlen, PROT_READ | PROT_WRITE) != 0)
        FAIL("mprotect rw");
    snprintf(q + newlen - 64, 64, "end nsec=%09ld", ts.tv_nsec);
    printf("tail of grown region: %s\n", q + newlen - 64);
    printf("grown region middle zero: %s\n", q[newlen / 2] == 0 ? "yes" : "no");

    munmap(q, newlen);
    munmap(guard, pg);
    return 0;
}
