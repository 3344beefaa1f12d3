/* scratch_boundary.c - the IS_SCRATCH failure built on purpose (DESIGN.md section 4).
 * Two threads block in read() on empty pipes, so under relive each gets a
 * scratch area (both thread stacks exist first, so nothing is mapped between the
 * two areas).  With RELIVE_SCRATCH_GUARD=0 the areas are adjacent and the kernel
 * merges them into one VMA (with the main thread's own area, made when it reads
 * /proc/self/maps, below them); an area holds its owner's in-flight read buffer
 * at its very start, i.e. right at a boundary.  The program finds that merged
 * region (an anonymous rw region of 2 to 4 areas) in /proc/self/maps, puts its
 * sigaltstack just below the boundary between the lowest two areas and raises
 * SIGUSR1: the signal frame lands at the boundary, and the
 * recorder's guessed-size frame write must stop there.  Prints the read bytes,
 * whether the region was found and where the frame landed relative to the
 * boundary; natively (no scratch areas) it prints "no merged scratch region".
 * Argument: the scratch area size in KiB (relive's SCRATCH_SIZE).  Exit 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pipes[2][2];
static unsigned long area_size;
static volatile unsigned long handler_sp;

static void *reader(void *arg)
{
    long i = (long)arg;
    char c = 0;
    if (read(pipes[i][0], &c, 1) != 1)
        return NULL;
    return (void *)(long)c;
}

static void on_usr1(int sig)
{
    volatile char here = 0;
    (void)sig;
    handler_sp = (unsigned long)&here;
}

static unsigned long find_region(unsigned long size)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long found = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        int name = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &name) < 3)
            continue;
        unsigned long n = (hi - lo) / size;
        if ((hi - lo) % size == 0 && n >= 2 && n <= 4 && strcmp(perms, "rw-p") == 0
            && (line[name] == '\n' || line[name] == '\0'))
            found = lo;
    }
    if (f)
        fclose(f);
    return found;
}

static int finish(pthread_t *t, void **got)
{
    for (long i = 0; i < 2; i++) {
        if (write(pipes[i][1], i ? "B" : "A", 1) != 1)
            return 1;
        pthread_join(t[i], &got[i]);
        printf("reader %ld read %c\n", i, (char)(long)got[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    pthread_t t[2];
    void *got[2];
    area_size = (argc > 1 ? strtoul(argv[1], NULL, 10) : 256) * 1024;
    for (long i = 0; i < 2; i++)
        if (pipe(pipes[i]) != 0)
            return 1;
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, (void *)i);
    usleep(20000);  /* both readers are blocked in read() now */
    unsigned long region = find_region(area_size);
    if (!region) {
        puts("no merged scratch region");
        return finish(t, got);
    }
    unsigned long boundary = region + area_size;
    stack_t ss = {.ss_sp = (void *)(boundary - 16384), .ss_size = 16384};
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
    sigaltstack(&ss, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("merged scratch region found; handler ran %s the boundary\n",
           handler_sp < boundary && handler_sp > boundary - 16384 ? "just below" : "away from");
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    return finish(t, got);
}
