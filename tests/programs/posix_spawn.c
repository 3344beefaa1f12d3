/* posix_spawn.c - process creation through posix_spawn / posix_spawnp.
 * Spawns /bin/sh -c "echo spawned; exit 3" (which prints "spawned"), waits
 * and prints "sh exited with status 3"; then posix_spawnp("true") found via
 * PATH, and prints "true exited with status 0".  stdout is flushed before
 * each spawn.  Deterministic.  Exit status: 0, or 1 on failure. */
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

extern char **environ;

static int wait_report(const char *what, int err, pid_t pid)
{
    int status;
    if (err != 0) {
        printf("%s: spawn failed: %s\n", what, strerror(err));
        return 1;
    }
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    if (WIFEXITED(status))
        printf("%s exited with status %d\n", what, WEXITSTATUS(status));
    else
        printf("%s ended abnormally (raw status 0x%x)\n", what, status);
    return 0;
}

int main(void)
{
    char *sh_argv[] = { "sh", "-c", "echo spawned; exit 3", NULL };
    char *true_argv[] = { "true", NULL };
    pid_t pid;
    int rc = 0;

    fflush(stdout);
    int err = posix_spawn(&pid, "/bin/sh", NULL, NULL, sh_argv, environ);
    rc |= wait_report("sh", err, pid);

    fflush(stdout);
    err = posix_spawnp(&pid, "true", NULL, NULL, true_argv, environ);
    rc |= wait_report("true", err, pid);
    return rc;
}
