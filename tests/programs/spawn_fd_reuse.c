/* spawn_fd_reuse.c - a pipe's read end at descriptor 30; posix_spawn (a vfork child, which
 * shares the memory but not the descriptor table) closes 30 and opens a regular file there
 * before it runs /bin/true; then the parent sends ROUNDS messages through its pipe and reads
 * them at 30: still its pipe, whose reads the syscall buffer must not make without a stop
 * (tests/test_sysbuf_files.py).
 *
 *   spawn_fd_reuse DIR ROUNDS
 *
 * Prints what it read. Exit status 0, or 3 if a call fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 3; } while (0)

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int rounds = atoi(argv[2]);
    char path[4096];
    snprintf(path, sizeof path, "%s/spawned", argv[1]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "a regular file\n", 15) != 15 || close(fd))
        FAIL("file");
    int p[2];
    if (pipe(p) || dup2(p[0], 30) != 30 || close(p[0]))
        FAIL("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, 30);
    posix_spawn_file_actions_addopen(&fa, 30, path, O_RDONLY, 0);
    char *args[] = {"/bin/true", NULL};
    pid_t pid;
    int status;
    if (posix_spawn(&pid, "/bin/true", &fa, NULL, args, environ) != 0
        || waitpid(pid, &status, 0) != pid || status != 0)
        FAIL("posix_spawn");
    for (int i = 0; i < rounds; i++) {
        char msg[24], buf[64];
        snprintf(msg, sizeof msg, "message %06d", i);
        if (write(p[1], msg, 16) != 16 || read(30, buf, sizeof buf) != 16
            || memcmp(buf, msg, 16) != 0)
            FAIL("pipe round");
    }
    printf("%d messages through the pipe at 30\n", rounds);
    unlink(path);
    return 0;
}
