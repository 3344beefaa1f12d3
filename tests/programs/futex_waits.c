/* futex_waits.c - futex waits that do not sleep, N of each kind (argv[1], default 2000):
 * FUTEX_WAIT and FUTEX_WAIT_BITSET on a word that no longer holds the value (EAGAIN), with and
 * without a timeout, private and shared; then the waits that fail or time out at once: a bad
 * address (EFAULT), an unaligned one (EINVAL), a bitset of 0 (EINVAL), an invalid timeout
 * (EINVAL), an expired timeout on a word that holds the value (ETIMEDOUT). Prints how many of
 * each result it got. Deterministic. Exit status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static unsigned word = 7;

static const char *wait_result(void *addr, int op, unsigned val, const struct timespec *t,
                               unsigned bitset)
{
    long r = syscall(SYS_futex, addr, op, val, t, NULL, bitset);
    if (r == 0)
        return "woken";
    switch (errno) {
    case EAGAIN: return "EAGAIN";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EINTR: return "EINTR";
    default: return "other";
    }
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 2000;
    struct timespec rel = {1, 0}, zero = {0, 0}, bad = {0, 2000000000L};
    struct timespec abs_past = {0, 0};
    const char *seen[6] = {0};
    unsigned long again = 0;
    for (unsigned long i = 0; i < n; i++) {
        word = (unsigned)i;  /* the waits ask for another value */
        again += wait_result(&word, FUTEX_WAIT_PRIVATE, word + 1, NULL, 0)[1] == 'A';
        again += wait_result(&word, FUTEX_WAIT, word + 2, NULL, 0)[1] == 'A';
        again += wait_result(&word, FUTEX_WAIT_BITSET_PRIVATE, word + 3, NULL, ~0U)[1] == 'A';
        again += wait_result(&word, FUTEX_WAIT_PRIVATE, word + 4, &rel, 0)[1] == 'A';
        again += wait_result(&word, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME,
                             word + 5, &rel, ~0U)[1] == 'A';
    }
    printf("EAGAIN %lu of %lu\n", again, 5 * n);
    seen[0] = wait_result((void *)8, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    seen[1] = wait_result((char *)&word + 1, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    seen[2] = wait_result(&word, FUTEX_WAIT_BITSET_PRIVATE, word + 1, NULL, 0);
    seen[3] = wait_result(&word, FUTEX_WAIT_PRIVATE, word + 1, &bad, 0);
    seen[4] = wait_result(&word, FUTEX_WAIT_PRIVATE, word, &zero, 0);
    seen[5] = wait_result(&word, FUTEX_WAIT_BITSET_PRIVATE, word, &abs_past, ~0U);
    printf("bad address %s, unaligned %s, no bitset %s, bad timeout %s, expired %s %s\n",
           seen[0], seen[1], seen[2], seen[3], seen[4], seen[5]);
    return 0;
}
