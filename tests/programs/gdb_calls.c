/* gdb_calls.c - functions for gdb to call in a replay (`print twice(21)`, ...): integer and
 * double arguments, one that prints (a syscall, run for real in the diversion), one that
 * never returns (to interrupt). main changes `counter` three times and prints it.
 * Exit status: 0. */
#include <stdio.h>
#include <string.h>

int counter = 7;

int twice(int x) { return 2 * x; }

double half(double x) { return x / 2; }

int say(const char *s)
{
    printf("said: %s\n", s);
    fflush(stdout);
    return (int)strlen(s);
}

int spin_forever(void)
{
    volatile unsigned long i = 0;
    for (;;)
        i++;
    return (int)i;
}

int main(void)
{
    for (int i = 0; i < 3; i++) {
        counter += i;
        printf("counter %d\n", counter); /* line 33 */
    }
    return 0;
}
