/* blocking_between_tasks.c - one task waits in the kernel for another recorded task.
 * Usage: blocking_between_tasks WAIT HOW DIR
 *   WAIT: setlkw (fcntl F_SETLKW record lock), ofd (fcntl F_OFD_SETLKW), flock (flock
 *         without LOCK_NB), fifo (open of a FIFO whose other end opens later), pipe (read on
 *         an empty pipe);
 *   HOW: proc (the waiter is a forked child) or thread (a second thread);
 *   DIR: a directory for the lock file or FIFO.
 * The holder takes the resource first, starts the waiter, sleeps 0.2 s, says "holder
 * releases" and releases (unlocks, opens the FIFO's other end, writes the pipe); the waiter,
 * blocked until then, says "waiter got it". Natively it takes about 0.2 s; under a recorder
 * that keeps the waiter on the CPU while it waits it never ends. Output is deterministic.
 * Exit status: 0, or 1 on failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *wait_kind;
static char path[4096];
static int pipefd[2];
static int holder_fd = -1;

static void say(const char *msg)
{
    if (write(1, msg, strlen(msg)) < 0)
        _exit(1);
}

static void fail(const char *what)
{
    perror(what);
    _exit(1);
}

static int lock_file(int fd, int cmd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    return fcntl(fd, cmd, &fl);
}

/* Take the resource before the waiter exists. */
static void hold(void)
{
    if (!strcmp(wait_kind, "fifo")) {
        if (mkfifo(path, 0600) != 0)
            fail("mkfifo");
        return;
    }
    if (!strcmp(wait_kind, "pipe")) {
        if (pipe(pipefd) != 0)
            fail("pipe");
        return;
    }
    holder_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (holder_fd < 0)
        fail("open");
    if (!strcmp(wait_kind, "setlkw") && lock_file(holder_fd, F_SETLK, F_WRLCK) != 0)
        fail("F_SETLK");
    if (!strcmp(wait_kind, "ofd") && lock_file(holder_fd, F_OFD_SETLK, F_WRLCK) != 0)
        fail("F_OFD_SETLK");
    if (!strcmp(wait_kind, "flock") && flock(holder_fd, LOCK_EX) != 0)
        fail("flock");
}

static void release(void)
{
    say("holder releases\n");
    if (!strcmp(wait_kind, "fifo")) {
        int fd = open(path, O_WRONLY);
        if (fd < 0)
            fail("open fifo for writing");
        if (write(fd, "x", 1) != 1)
            fail("write fifo");
        close(fd);
    } else if (!strcmp(wait_kind, "pipe")) {
        if (write(pipefd[1], "x", 1) != 1)
            fail("write pipe");
    } else if (!strcmp(wait_kind, "setlkw")) {
        lock_file(holder_fd, F_SETLK, F_UNLCK);
    } else if (!strcmp(wait_kind, "ofd")) {
        lock_file(holder_fd, F_OFD_SETLK, F_UNLCK);
    } else {
        flock(holder_fd, LOCK_UN);
    }
}

/* Blocks until the holder releases. */
static void *waiter(void *arg)
{
    (void)arg;
    char c = 0;
    if (!strcmp(wait_kind, "fifo")) {
        int fd = open(path, O_RDONLY);
        if (fd < 0 || read(fd, &c, 1) != 1)
            fail("fifo");
        close(fd);
    } else if (!strcmp(wait_kind, "pipe")) {
        if (read(pipefd[0], &c, 1) != 1)
            fail("read pipe");
    } else {
        int fd = open(path, O_RDWR);  /* its own open file description */
        if (fd < 0)
            fail("open lock file");
        int r = !strcmp(wait_kind, "setlkw") ? lock_file(fd, F_SETLKW, F_WRLCK)
              : !strcmp(wait_kind, "ofd") ? lock_file(fd, F_OFD_SETLKW, F_WRLCK)
              : flock(fd, LOCK_EX);
        if (r != 0)
            fail("lock");
        close(fd);
    }
    say("waiter got it\n");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s setlkw|ofd|flock|fifo|pipe proc|thread DIR\n", argv[0]);
        return 1;
    }
    wait_kind = argv[1];
    snprintf(path, sizeof path, "%s/blocking-%s", argv[3], wait_kind);
    unlink(path);
    hold();
    pid_t child = -1;
    pthread_t thread;
    if (!strcmp(argv[2], "proc")) {
        child = fork();
        if (child < 0)
            fail("fork");
        if (child == 0) {
            waiter(NULL);
            _exit(0);
        }
    } else if (pthread_create(&thread, NULL, waiter, NULL) != 0) {
        fail("pthread_create");
    }
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    release();
    if (child > 0) {
        int status;
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
            fail("waiter");
    } else {
        pthread_join(thread, NULL);
    }
    unlink(path);
    say("done\n");
    return 0;
}
