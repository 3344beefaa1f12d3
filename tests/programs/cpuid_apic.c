/* cpuid leaf 1, then a syscall with the APIC id (EBX bits 31-24) still in rbx, as a static
 * Go binary does at start-up: a replay on another CPU than the recording's sees another
 * APIC id, unless relive recorded cpuid's results. Prints the CPUs cpuid and getcpu say. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
    unsigned long ebx, ret;
    __asm__ volatile(
        "mov $1, %%eax\n\t"
        "xor %%ecx, %%ecx\n\t"
        ".globl cpuid_here\n"      /* (for gdb: break *cpuid_here) */
        "cpuid_here:\n\t"
        "cpuid\n\t"
        "mov %%rbx, %%r12\n\t"      /* keep it: rbx is what the syscall below shows */
        "mov $110, %%eax\n\t"       /* getppid, with the APIC id in rbx */
        "syscall\n\t"
        "mov %%r12, %1\n\t"
        : "=a"(ret), "=r"(ebx)
        :
        : "rbx", "rcx", "rdx", "r11", "r12", "memory");
    unsigned cpu = 99;
    getcpu(&cpu, NULL);
    printf("apic id %lu, getcpu %u, ppid>0 %d\n", ebx >> 24, cpu, ret > 0);
    return 0;
}
