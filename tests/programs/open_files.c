/* Opens of regular files (and of what is not one) as the syscall hook meets them, for
   tests/test_sysbuf_opens_files.py. Usage: open_files DIR FIFO OUTFILE
   DIR holds f0..f19, m and rw; FIFO is a FIFO; OUTFILE is relive's stdout's file, or "-".

   1. files: f0..f19 opened (alternately with O_RDONLY|O_CLOEXEC and tar's
      O_RDONLY|O_NOCTTY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC), read, closed; a missing file both
      ways; rw opened O_RDWR, written and read back with pwrite/pread. Prints a checksum.
   2. fifo: a child opens FIFO for writing while the parent opens it for reading (both wait
      for the other end: no O_NONBLOCK) and sends a line; then FIFO is opened O_NONBLOCK (no
      writer now: read gives 0).
   3. status: /proc/self/status opened both ways; prints its Cpus_allowed_list line.
   4. mapped: m opened tar's way and read, then mapped shared; a pwrite of the descriptor
      changes the mapping; prints the mapping's first bytes.
   5. vfork: a pipe's read end at number N, written by a child 100 ms later; a vfork child
      closes N, opens f0 (tar's way: number N), reads it and _exits; the parent then reads
      the pipe at N.
   6. stdout: a line through stdout, then OUTFILE opened for appending (tar's flags but
      O_WRONLY|O_APPEND) and a line written through that descriptor. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TAR_FLAGS (O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)

static unsigned long sum = 5381;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = sum * 33 + c[i];
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void files(const char *dir)
{
    char path[4096], buf[512];
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "%s/f%d", dir, i);
        int fd = openat(AT_FDCWD, path, i % 2 ? TAR_FLAGS : O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die("open f");
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            mix(buf, (size_t)n);
        close(fd);
    }
    snprintf(path, sizeof path, "%s/missing", dir);
    int a = openat(AT_FDCWD, path, O_RDONLY), ea = errno;
    int b = openat(AT_FDCWD, path, TAR_FLAGS), eb = errno;
    snprintf(path, sizeof path, "%s/rw", dir);
    int fd = openat(AT_FDCWD, path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("open rw");
    char back[16] = {0};
    if (pwrite(fd, "rewritten", 9, 3) != 9 || pread(fd, back, 15, 0) < 0)
        die("rw");
    close(fd);
    printf("files: sum %lx, missing %d/%d %d/%d, rw %s\n", sum, a, ea, b, eb, back);
}

static void fifo(const char *path)
{
    pid_t child = fork();
    if (child == 0) {
        int w = open(path, O_WRONLY);
        if (w < 0 || write(w, "through the fifo\n", 17) != 17)
            _exit(1);
        _exit(0);
    }
    char buf[64] = {0};
    int r = open(path, O_RDONLY);
    if (r < 0)
        die("open fifo");
    ssize_t n = read(r, buf, sizeof buf - 1);
    close(r);
    waitpid(child, NULL, 0);
    int nb = open(path, TAR_FLAGS);
    if (nb < 0)
        die("open fifo nonblock");
    ssize_t m = read(nb, buf + 32, 8);
    close(nb);
    printf("fifo read %zd: %.*s, nonblocking read %zd\n", n, (int)(n > 0 ? n - 1 : 0), buf, m);
}

static void status(void)
{
    for (int way = 0; way < 2; way++) {
        char buf[8192] = {0};
        int fd = open("/proc/self/status", way ? TAR_FLAGS : O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die("open status");
        ssize_t n, got = 0;
        while ((n = read(fd, buf + got, sizeof buf - 1 - (size_t)got)) > 0)
            got += n;
        close(fd);
        char *line = strstr(buf, "Cpus_allowed_list:");
        printf("status %d: %.*s\n", way, line ? (int)strcspn(line, "\n") : 0, line ? line : "");
    }
}

static void mapped(const char *dir)
{
    char path[4096], buf[8] = {0};
    snprintf(path, sizeof path, "%s/m", dir);
    int fd = open(path, (TAR_FLAGS & ~O_ACCMODE) | O_RDWR);
    if (fd < 0)
        die("open m");
    if (read(fd, buf, 4) != 4)
        die("read m");
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        die("mmap m");
    if (pwrite(fd, "XYZ", 3, 0) != 3)
        die("pwrite m");
    printf("mapped: read %.4s, then the mapping says %.6s\n", buf, map);
    munmap(map, 4096);
    close(fd);
}

static void vforked(const char *dir)
{
    int p[2];
    if (pipe(p))
        die("pipe");
    pid_t writer = fork();
    if (writer == 0) {
        close(p[0]);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        _exit(write(p[1], "ping", 4) == 4 ? 0 : 1);
    }
    close(p[1]);
    char path[4096];
    snprintf(path, sizeof path, "%s/f0", dir);
    int in_child = -1;
    volatile int *seen = &in_child;
    pid_t child = vfork();
    if (child == 0) {
        char buf[64];
        close(p[0]);
        int fd = open(path, TAR_FLAGS);
        if (fd >= 0 && read(fd, buf, sizeof buf) > 0)
            *seen = fd;
        _exit(0);  /* (its descriptors close with it; no close of fd through the hook) */
    }
    waitpid(child, NULL, 0);
    char got[8] = {0};
    ssize_t n = read(p[0], got, sizeof got);
    waitpid(writer, NULL, 0);
    printf("vfork: child's file at %d, pipe at %d read %zd %.4s\n", in_child, p[0], n, got);
    close(p[0]);
}

static void own_stdout(const char *outfile)
{
    printf("through stdout\n");
    fflush(stdout);
    if (strcmp(outfile, "-") == 0)
        return;
    int fd = open(outfile, (TAR_FLAGS & ~O_ACCMODE) | O_WRONLY | O_APPEND);
    if (fd < 0)
        die("open outfile");
    if (write(fd, "through another descriptor\n", 27) != 27)
        die("write outfile");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: open_files DIR FIFO OUTFILE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    files(argv[1]);
    fifo(argv[2]);
    status();
    mapped(argv[1]);
    vforked(argv[1]);
    own_stdout(argv[3]);
    return 0;
}
