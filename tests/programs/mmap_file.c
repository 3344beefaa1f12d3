/* mmap_file.c - file-backed and anonymous mmap.
 *  1. writes a file whose contents embed per-run values (pid, realtime
 *     nanoseconds), mmaps it MAP_PRIVATE/PROT_READ, closes and unlinks the
 *     file, then prints the mapped contents (the file no longer exists, so a
 *     replayer must restore the mapping from the trace).
 *  2. writes a second file, mmaps it MAP_PRIVATE/PROT_READ, then modifies the
 *     FILE with pwrite() at an offset after mapping, and prints the mapping:
 *     on Linux an untouched MAP_PRIVATE page shares the page cache, so the
 *     later write() is visible through the mapping ("visible: yes").
 *  3. mmaps anonymous memory, checks it is zero-filled, writes per-run data
 *     into it and prints it.
 * Files go in argv[1] (default /tmp).
 * Exit status: 0, or 5 on failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 5; } while (0)
#define FILE_SIZE 4096

static int make_file(const char *dir, const char *tag, char *path, size_t pathlen,
                     const char *content)
{
    snprintf(path, pathlen, "%s/relive-mmap-%s-XXXXXX", dir, tag);
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    char page[FILE_SIZE];
    memset(page, '.', sizeof page);
    memcpy(page, content, strlen(content));
    if (write(fd, page, sizeof page) != (ssize_t)sizeof page) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096];
    char content[128];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(content, sizeof content, "pid=%d nsec=%09ld",
             (int)getpid(), ts.tv_nsec);

    /* 1. map, close, unlink, then read the mapping */
    int fd = make_file(dir, "a", path, sizeof path, content);
    if (fd < 0)
        FAIL("file a");
    char *a = mmap(NULL, FILE_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED)
        FAIL("mmap a");
    close(fd);
    if (unlink(path) != 0)
        FAIL("unlink a");
    printf("a (closed+unlinked): %.*s\n", (int)strlen(content), a);
    printf("a tail byte: %c\n", a[FILE_SIZE - 1]);

    /* 2. map, then modify the file via pwrite() and look again */
    fd = make_file(dir, "b", path, sizeof path, "ORIGINAL-CONTENTS");
    if (fd < 0)
        FAIL("file b");
    char *b = mmap(NULL, FILE_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
    if (b == MAP_FAILED)
        FAIL("mmap b");
    printf("b before write: %.17s\n", b);
    char patch[32];
    snprintf(patch, sizeof patch, "PATCHED-%08ld", ts.tv_nsec % 100000000L);
    if (pwrite(fd, patch, strlen(patch), 0) != (ssize_t)strlen(patch))
        FAIL("pwrite b");
    printf("b after write:  %.17s\n", b);
    printf("b write visible through MAP_PRIVATE mapping: %s\n",
           memcmp(b, patch, strlen(patch)) == 0 ? "yes" : "no");
    close(fd);
    unlink(path);
    munmap(b, FILE_SIZE);
    munmap(a, FILE_SIZE);

    /* 3. anonymous memory */
    size_t len = 3 * 4096;
    unsigned char *anon = mmap(NULL, len, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        FAIL("mmap anon");
    int zero = 1;
    for (size_t i = 0; i < len; i++)
        if (anon[i] != 0)
            zero = 0;
    printf("anon zero-filled: %s\n", zero ? "yes" : "no");
    snprintf((char *)anon + 4096, 64, "anon nsec=%09ld", ts.tv_nsec);
    printf("anon page1: %s\n", (char *)anon + 4096);
    munmap(anon, len);
    return 0;
}
