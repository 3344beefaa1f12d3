/* copy_to_stdout.c - output that never passes through the program's memory, or passes through
 * it by reference: the calls that copy to stdout.  argv[1] is a file to copy, argv[2] a mode:
 *   file  stdout is a regular file: copy_file_range, sendfile, splice from the file into a
 *         pipe and from the pipe to stdout;
 *   pipe  stdout is a pipe: sendfile, splice from the file straight to stdout, vmsplice;
 *   tee   stdout is a pipe: tee from another pipe to stdout (relive refuses to record it).
 * Each copy is followed by a line naming it and what it returned (with write).
 * Exit status: 0, or 1 when a call fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

static int say(const char *what, ssize_t n)
{
    char line[64];
    int len = snprintf(line, sizeof line, "\n[%s: %zd]\n", what, n);
    return n < 0 || write(1, line, (size_t)len) != len;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    int fd = open(argv[1], O_RDONLY), p[2];
    if (fd < 0 || pipe(p) < 0)
        return 1;
    off_t off = 0;
    if (!strcmp(argv[2], "file")) {
        if (say("copy_file_range", copy_file_range(fd, &off, 1, NULL, 40, 0))
            || say("sendfile", sendfile(1, fd, &off, 40)))
            return 1;
        ssize_t n = splice(fd, &off, p[1], NULL, 40, 0);
        if (n < 0 || say("splice", splice(p[0], NULL, 1, NULL, (size_t)n, 0)))
            return 1;
    } else if (!strcmp(argv[2], "pipe")) {
        static char msg[] = "vmsplice'd bytes";
        struct iovec iov = {msg, sizeof msg - 1};
        if (say("sendfile", sendfile(1, fd, &off, 40))
            || say("splice", splice(fd, &off, 1, NULL, 40, 0))
            || say("vmsplice", vmsplice(1, &iov, 1, 0)))
            return 1;
    } else {
        if (write(p[1], "through tee", 11) != 11 || say("tee", tee(p[0], 1, 11, 0)))
            return 1;
    }
    return 0;
}
