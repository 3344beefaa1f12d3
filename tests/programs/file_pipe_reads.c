/* file_pipe_reads.c - reads and writes a regular file and a pipe in turns, then moves
 * descriptors about with dup2: the syscall buffer must make the file's reads and writes
 * without a stop and the pipe's with one (tests/test_sysbuf_files.py).
 *
 *   file_pipe_reads DIR ROUNDS
 *
 * 1. writes ROUNDS blocks of 100 bytes to DIR/data (opened, then moved to FILE = 40 with
 *    fcntl F_DUPFD; the pipe's read end moved to PIPE = 50 with dup2), then each round: a
 *    16-byte message through a pipe (write, read of PIPE), a read of 100 bytes of FILE and a
 *    pread of 10;
 * 2. a short read (the last 30 bytes) and a read at the end of the file (0: EOF);
 * 3. the file opened again and dup2'ed onto PIPE's number: ROUNDS reads of 50 bytes there;
 * 4. a second pipe's read end dup2'ed onto FILE's number: ROUNDS messages read there.
 * Prints the descriptor numbers and a checksum of everything read (the same every run).
 * Exit status 0, or 3 if a call fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 3; } while (0)

static unsigned sum;

static void add(const char *buf, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++)
        sum = sum * 31 + (unsigned char)buf[i];
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int rounds = atoi(argv[2]);
    char path[4096], buf[128];
    snprintf(path, sizeof path, "%s/data", argv[1]);
    int opened = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int file = fcntl(opened, F_DUPFD, 40);
    if (opened < 0 || file < 0 || close(opened))
        FAIL("open");
    for (int i = 0; i < rounds; i++) {
        memset(buf, 'a' + i % 26, 100);
        snprintf(buf, 12, "block %05d", i);
        if (write(file, buf, 100) != 100)
            FAIL("write");
    }
    int p[2];
    if (pipe(p) || dup2(p[0], 50) != 50 || close(p[0]) || lseek(file, 0, SEEK_SET) != 0)
        FAIL("pipe");
    p[0] = 50;
    for (int i = 0; i < rounds; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "message %06d", i);
        if (write(p[1], msg, 16) != 16)
            FAIL("write pipe");
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n != 16)
            FAIL("read pipe");
        add(buf, n);
        if ((n = read(file, buf, 100)) != 100)
            FAIL("read");
        add(buf, n);
        if ((n = pread(file, buf, 10, i * 7)) != 10)
            FAIL("pread");
        add(buf, n);
    }
    if (lseek(file, rounds * 100 - 30, SEEK_SET) < 0)
        FAIL("lseek");
    ssize_t shrt = read(file, buf, 100);
    add(buf, shrt > 0 ? shrt : 0);
    ssize_t eof = read(file, buf, 100);
    printf("short read %zd, at the end %zd\n", shrt, eof);

    int again = open(path, O_RDONLY);
    if (again < 0 || dup2(again, p[0]) != p[0])
        FAIL("dup2 file");
    for (int i = 0; i < rounds; i++) {
        ssize_t n = read(p[0], buf, 50);
        if (n != 50)
            FAIL("read dup");
        add(buf, n);
    }
    int q[2];
    if (pipe(q) || dup2(q[0], file) != file)
        FAIL("dup2 pipe");
    for (int i = 0; i < rounds; i++) {
        if (write(q[1], "0123456789abcdef", 16) != 16)
            FAIL("write pipe 2");
        ssize_t n = read(file, buf, sizeof buf);
        if (n != 16)
            FAIL("read pipe 2");
        add(buf, n);
    }
    printf("file %d pipe %d\n", file, p[0]);
    printf("checksum %08x\n", sum);
    unlink(path);
    return 0;
}
