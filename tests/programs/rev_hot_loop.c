/* rev_hot_loop.c - hot() called 100,000 times with no syscall in between: a reverse search
 * to hot() from the end replays the whole loop, long enough to interrupt with Ctrl-C. */
#include <stdio.h>
volatile long acc;
__attribute__((noinline)) void hot(long i) { acc += i * 3; }
__attribute__((noinline)) void marker(void) { acc++; }
int main(void) {
    for (long i = 0; i < 100000; i++) hot(i);
    marker();
    printf("%ld\n", acc);
    return 0;
}
