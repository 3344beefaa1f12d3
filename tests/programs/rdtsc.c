/* rdtsc.c - reads the time-stamp counter with RDTSC and RDTSCP and prints
 * the raw values and the deltas between them; all differ per run.
 * Exit status: 0. */
#include <stdio.h>
#include <x86intrin.h>

int main(void)
{
    unsigned int aux = 0;
    unsigned long long a = __rdtsc();
    unsigned long long b = __rdtsc();
    unsigned long long c = __rdtscp(&aux);
    unsigned long long d = __rdtscp(&aux);

    printf("rdtsc1: %llu\n", a);
    printf("rdtsc2: %llu\n", b);
    printf("rdtscp1: %llu\n", c);
    printf("rdtscp2: %llu aux: %u\n", d, aux);
    printf("delta rdtsc2-rdtsc1: %llu\n", b - a);
    printf("delta rdtscp1-rdtsc2: %llu\n", c - b);
    printf("delta rdtscp2-rdtscp1: %llu\n", d - c);
    return 0;
}
