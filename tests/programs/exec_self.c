/* exec_self.c - runs itself again through execl: the first image prints "before exec" and
 * execs, the second ("after" in argv) prints and exits with status 4. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int stage(int argc)
{
    return argc > 1 ? 2 : 1;
}

int main(int argc, char **argv)
{
    int which = stage(argc);
    if (which == 2) {
        printf("after exec\n");
        return 4;
    }
    printf("before exec\n");
    fflush(stdout);
    execl("/proc/self/exe", argv[0], "after", (char *)NULL);
    perror("execl");
    return 1;
}
