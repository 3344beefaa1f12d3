/* file_writes.c - the write family to every kind of file the recorder tells apart: N rounds
 * (argv[1], default 2000) of write to a pipe (read back), pwrite64 to a scratch file,
 * writev to /dev/null, write through a dup of stdout every 500 rounds, and write into a file
 * that is mapped MAP_PRIVATE (the change shows in the mapping's untouched page; a twin file
 * with the same contents is mapped too, after it), and fcntl (F_GETFD each round, F_GETLK,
 * which writes a struct, every 100). Prints
 * what it read back, and a checksum of the mapping, which only a recording that noticed the
 * writes to the mapped file replays identically.  Exit status: 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000;
    /* named by pid, not mkstemp: glibc's mkstemp calls getrandom a random number of times,
       and the test compares the syscalls of two recordings */
    char scratch[64], mapped_name[64], twin_name[64];
    snprintf(scratch, sizeof scratch, "/tmp/relive-file-writes-%d", (int)getpid());
    snprintf(mapped_name, sizeof mapped_name, "/tmp/relive-file-writes-%d-map", (int)getpid());
    snprintf(twin_name, sizeof twin_name, "/tmp/relive-file-writes-%d-twin", (int)getpid());
    int scratch_fd = open(scratch, O_RDWR | O_CREAT | O_EXCL, 0600);
    int map_fd = open(mapped_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    int devnull = open("/dev/null", O_WRONLY), out = dup(1), pipefd[2];
    if (scratch_fd < 0 || map_fd < 0 || devnull < 0 || out < 0 || pipe(pipefd) < 0)
        return 1;
    unlink(scratch);
    unlink(mapped_name);
    char page[4096] = {0};
    if (write(map_fd, page, sizeof page) != sizeof page)
        return 1;
    const unsigned char *view = mmap(NULL, sizeof page, PROT_READ, MAP_PRIVATE, map_fd, 0);
    if (view == MAP_FAILED)
        return 1;
    /* a second file with the same contents, mapped later: the trace keeps one copy of both */
    int twin_fd = open(twin_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (twin_fd < 0 || write(twin_fd, page, sizeof page) != sizeof page)
        return 1;
    unlink(twin_name);
    if (mmap(NULL, sizeof page, PROT_READ, MAP_PRIVATE, twin_fd, 0) == MAP_FAILED)
        return 1;
    unsigned long echoed = 0, seen = 0, locks_free = 0;
    for (long i = 0; i < n; i++) {
        char buf[32], back[32];
        int len = snprintf(buf, sizeof buf, "round %ld\n", i);
        if (write(pipefd[1], buf, (size_t)len) != len || read(pipefd[0], back, sizeof back) != len)
            return 1;
        echoed += (unsigned long)back[len - 2];
        if (pwrite(scratch_fd, buf, (size_t)len, i * 16) != len)
            return 1;
        struct iovec iov[2] = {{buf, (size_t)len}, {back, (size_t)len}};
        if (writev(devnull, iov, 2) != 2 * len)
            return 1;
        if (pwrite(map_fd, &i, sizeof i, (i % 512) * 8) != sizeof i)
            return 1;
        seen += view[(i % 512) * 8];
        if (i % 500 == 0 && write(out, buf, (size_t)len) != len)
            return 1;
        /* fcntl: a plain command, and one that writes a struct (F_GETLK) */
        if (fcntl(scratch_fd, F_GETFD) < 0)
            return 1;
        struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
        if (i % 100 == 0 && fcntl(map_fd, F_GETLK, &lock) < 0)
            return 1;
        locks_free += lock.l_type == F_UNLCK;
    }
    unsigned long sum = 0;
    for (int k = 0; k < 4096; k++)
        sum = sum * 31 + view[k];
    printf("rounds: %ld\nechoed: %lu\nseen: %lu\nlocks free: %lu\nmapping: %lx\n", n, echoed,
           seen, locks_free, sum);
    return 0;
}
