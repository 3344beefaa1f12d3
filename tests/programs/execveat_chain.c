/* execveat_chain.c - execs itself through execveat twice: first as glibc's fexecve does it
 * (execveat(fd, "", ..., AT_EMPTY_PATH): python's os.execve(fd, ...), test_posix), then by a
 * name relative to a directory descriptor; the third image prints and exits with status 3.
 * Replay must exec these as it does execve (it used to emulate them and then fail to rebuild
 * the image it had not loaded). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc == 1) {
        printf("image 1, fexecve\n");
        fflush(stdout);
        int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        char *args[] = {argv[0], "2", NULL};
        fexecve(fd, args, environ);
        perror("fexecve");
        return 1;
    }
    if (strcmp(argv[1], "2") == 0) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return 1;
        self[n] = 0;
        char *dir = strdup(self), *name = strdup(self);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        printf("image 2, execveat by name\n");
        fflush(stdout);
        char *args[] = {argv[0], "3", NULL};
        syscall(SYS_execveat, dfd, basename(name), args, environ, 0);
        perror("execveat");
        return 1;
    }
    printf("image 3\n");
    return 3;
}
