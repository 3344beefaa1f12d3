/* exit_status.c - exit status propagation.
 *   exit_status N      prints its pid, then exit(N)       (status N & 255)
 *   exit_status abort  prints its pid, then abort()       (killed by SIGABRT,
 *                                                         shell status 134)
 *   exit_status        same as "exit_status 0"
 * The pid line varies per run.  Output goes to both stdout and stderr and is
 * flushed before exiting/aborting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "0";
    printf("pid: %d\n", (int)getpid());
    if (strcmp(mode, "abort") == 0) {
        printf("aborting\n");
        fprintf(stderr, "stderr: aborting\n");
        fflush(stdout);
        abort();
    }
    int status = atoi(mode);
    printf("exiting with %d\n", status);
    fprintf(stderr, "stderr: exiting with %d\n", status);
    exit(status);
}
