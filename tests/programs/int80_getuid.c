/* int80_getuid.c - a 64-bit program that makes an i386 system call with int $0x80 after a run
 * of ordinary ones: getuid (i386 number 24; 24 is sched_yield in the x86-64 table, so a
 * recorder that read the number as x86-64 would record a sched_yield). Prints "before", then
 * its uid both ways.
 * Exit status: 0. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    long sum = 0, got;
    printf("before\n");
    fflush(stdout);
    for (int i = 0; i < 200; i++)
        sum += getppid();
    /* the kernel's int $0x80 entry clears r8-r11 in 64-bit code */
    __asm__ volatile ("int $0x80" : "=a"(got) : "a"(24L) : "r8", "r9", "r10", "r11", "memory");
    printf("uid %ld, by int $0x80 %ld\n", (long)getuid(), got);
    return sum == 0;
}
