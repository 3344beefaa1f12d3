/* vfork_exec.c - vfork followed by execve, and vfork followed by _exit.
 * First vfork: the child execve()s /bin/echo "vforked" "child" (which
 * prints "vforked child" on the shared stdout); the parent waitpid()s and
 * prints "exec child exited with status 0".  Second vfork: the child
 * _exit(3)s without exec; the parent prints "plain child exited with
 * status 3".  stdout is flushed before each vfork so lines appear in order.
 * Deterministic.  Exit status: 0, or 1 on failure. */
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int report(const char *what, pid_t pid)
{
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        perror(what);
        return 1;
    }
    if (WIFEXITED(status))
        printf("%s child exited with status %d\n", what, WEXITSTATUS(status));
    else
        printf("%s child ended abnormally (raw status 0x%x)\n", what, status);
    return 0;
}

int main(void)
{
    char *argv[] = { "echo", "vforked", "child", NULL };
    int rc = 0;

    printf("parent: vfork + exec\n");
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/bin/echo", argv, environ);
        _exit(127);
    }
    rc |= report("exec", pid);

    printf("parent: vfork + _exit\n");
    fflush(stdout);
    pid = vfork();
    if (pid == 0)
        _exit(3);
    rc |= report("plain", pid);
    return rc;
}
