/* randomness.c - prints bytes from getrandom(2), /dev/urandom, the
 * kernel-supplied AT_RANDOM auxv bytes, and the (ASLR-dependent) addresses
 * of a stack variable and of malloc'd memory.  All differ per run (the
 * addresses only when ASLR is on).
 * Exit status: 0, or 1 if a source fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <unistd.h>

static void print_hex(const char *label, const unsigned char *buf, size_t n)
{
    printf("%s: ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", buf[i]);
    printf("\n");
}

int main(void)
{
    unsigned char buf[16];
    int stack_var = 42;

    ssize_t got = getrandom(buf, sizeof buf, 0);
    if (got != (ssize_t)sizeof buf) {
        perror("getrandom");
        return 1;
    }
    print_hex("getrandom", buf, sizeof buf);

    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
        perror("/dev/urandom");
        return 1;
    }
    close(fd);
    print_hex("urandom", buf, sizeof buf);

    const unsigned char *atr = (const unsigned char *)getauxval(AT_RANDOM);
    if (atr == NULL) {
        fprintf(stderr, "no AT_RANDOM\n");
        return 1;
    }
    print_hex("at_random", atr, 16);

    void *heap = malloc(64);
    printf("stack: %p\n", (void *)&stack_var);
    printf("heap: %p\n", heap);
    free(heap);
    return 0;
}
