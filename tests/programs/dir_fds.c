/* Descriptors made and closed the way fts (find, du, rm -r) and tar make them, for
   tests/test_sysbuf_open.py. Usage: dir_fds DIR ROUNDS FIFO OUTFILE

   1. ROUNDS times, walk DIR one level as fts does: openat(O_DIRECTORY), fcntl F_GETFL,
      F_SETFD, F_DUPFD_CLOEXEC, getdents64, fchdir into it and back, and for each regular
      file in it openat (no O_DIRECTORY: a regular file), read, close; close both directory
      descriptors. Prints a checksum of the names and bytes read.
   2. openat(FIFO, O_RDONLY|O_DIRECTORY) fails with ENOTDIR at once (never waits for a
      writer); then a child opens FIFO for writing while the parent opens it for reading
      (both wait for the other end) and sends a line through it.
   3. A descriptor number reused: /dev/null is read at number N (a call that never waits),
      closed, and a copy of a pipe's read end (fcntl F_DUPFD) takes number N; the read of N
      then waits until a child writes into the pipe 100 ms later.
   4. A regular file (DIR/f0) is opened, read and closed; a pipe made next takes its number,
      and the read of the pipe waits for a child's write (the file's bit must be gone).
   5. The program closes its stdout (relive's) and opens OUTFILE, which takes number 1, and
      writes to it; it says so on stderr. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long sum = 5381;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        sum = sum * 33 + c[i];
}

static void walk(const char *dir)
{
    int fd = openat(AT_FDCWD, dir, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC
                    | O_DIRECTORY);
    if (fd < 0) {
        perror("openat dir");
        exit(1);
    }
    if (fcntl(fd, F_GETFL) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        perror("fcntl");
        exit(1);
    }
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int here = open(".", O_RDONLY | O_DIRECTORY);
    if (copy < 0 || here < 0 || fchdir(copy) != 0 || fchdir(here) != 0) {
        perror("dup/fchdir");
        exit(1);
    }
    close(here);
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long at = 0; at < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + at);
            at += d->d_reclen;
            if (d->d_type != DT_REG)
                continue;
            mix(d->d_name, strlen(d->d_name));
            int f = openat(fd, d->d_name, O_RDONLY | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
            if (f < 0)
                continue;
            char data[512];
            long got = read(f, data, sizeof data);
            if (got > 0)
                mix(data, (size_t)got);
            close(f);
        }
    }
    close(fd);
    close(copy);
}

static void fifo(const char *path)
{
    int fd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY);
    printf("fifo as a directory: %d %s\n", fd, fd < 0 ? strerror(errno) : "opened?");
    pid_t child = fork();
    if (child == 0) {
        int w = open(path, O_WRONLY);  /* waits for the reader */
        if (w < 0 || write(w, "through the fifo\n", 17) != 17)
            _exit(1);
        _exit(0);
    }
    int r = open(path, O_RDONLY);  /* waits for the writer */
    char line[64] = {0};
    long got = r < 0 ? -1 : read(r, line, sizeof line - 1);
    int status;
    waitpid(child, &status, 0);
    printf("fifo read %ld: %s", got, line);
    close(r);
}

static void reuse(void)
{
    int q[2];
    if (pipe(q) != 0)
        exit(1);
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        _exit(write(q[1], "late", 4) == 4 ? 0 : 1);
    }
    int null = open("/dev/null", O_RDONLY);
    char c[8];
    long z = read(null, c, sizeof c);  /* never waits */
    close(null);
    int again = fcntl(q[0], F_DUPFD, 0);  /* the lowest free number: null's */
    long got = read(again, c, sizeof c);  /* waits for the child */
    int status;
    waitpid(child, &status, 0);
    printf("reused %s: /dev/null read %ld, pipe read %ld\n", again == null ? "yes" : "no", z,
           got);
}

static void file_then_pipe(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/f0", dir);
    int f = open(path, O_RDONLY);
    char c[8];
    long first = read(f, c, 1);
    close(f);
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        _exit(write(p[1], "pipe", 4) == 4 ? 0 : 1);
    }
    close(p[1]);
    long got = read(p[0], c, sizeof c);
    int status;
    waitpid(child, &status, 0);
    printf("file %d read %ld, then a pipe at %d read %ld\n", f, first, p[0], got);
    close(p[0]);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: dir_fds DIR ROUNDS FIFO OUTFILE\n");
        return 2;
    }
    int rounds = atoi(argv[2]);
    for (int i = 0; i < rounds; i++)
        walk(argv[1]);
    printf("walked %d rounds, checksum %lx\n", rounds, sum);
    fifo(argv[3]);
    reuse();
    file_then_pipe(argv[1]);
    fflush(stdout);
    close(1);
    int out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    long w = write(out, "after stdout closed\n", 20);
    fprintf(stderr, "stdout closed; %s got number %d, wrote %ld\n", argv[4], out, w);
    return 0;
}
