/* hello.c - the smallest smoke test: prints "hello, relive" and its argv.
 * Output is deterministic for fixed arguments.
 * Exit status: 0. */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("hello, relive\n");
    for (int i = 0; i < argc; i++)
        printf("argv[%d]: %s\n", i, argv[i]);
    return 0;
}
