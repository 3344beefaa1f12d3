/* rdrand.c - takes random numbers from the CPU with RDRAND and RDSEED in every operand size
 * (16, 32, 64 bits, and into r9, which needs a REX prefix), prints them, and hands each to a
 * syscall as an argument (so a replay that computed another number differs in a register the
 * replayer compares, not only in what it would print). All differ per run. It also holds the
 * bytes of an rdrand inside another instruction (`lookalike`), which must run unchanged.
 * Exit status: 0. */
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TAKE(insn, type, name)                                                   \
    static type name(void)                                                       \
    {                                                                            \
        type v;                                                                  \
        unsigned char ok;                                                        \
        do                                                                       \
            __asm__ volatile(insn " %0; setc %1" : "=r"(v), "=qm"(ok) :: "cc"); \
        while (!ok);                                                             \
        return v;                                                                \
    }

TAKE("rdrand", uint16_t, rdrand16)
TAKE("rdrand", uint32_t, rdrand32)
TAKE("rdrand", uint64_t, rdrand64)
TAKE("rdseed", uint32_t, rdseed32)
TAKE("rdseed", uint64_t, rdseed64)

static uint64_t rdrand_r9(void)
{
    register uint64_t v __asm__("r9") = 0x1111111111111111;
    unsigned char ok;
    do
        __asm__ volatile("rdrand %0; setc %1" : "+r"(v), "=qm"(ok) :: "cc");
    while (!ok);
    return v;
}

/* mov $0xf0c70f00, %eax: bytes b8 00 0f c7 f0, the last three those of rdrand %eax */
static uint32_t lookalike(void)
{
    uint32_t v;
    __asm__ volatile("movl $0xf0c70f00, %0" : "=a"(v));
    return v;
}

int main(void)
{
    uint64_t values[] = {rdrand16(), rdrand32(), rdrand64(), rdseed32(), rdseed64(),
                         rdrand_r9()};
    const char *names[] = {"rdrand16", "rdrand32", "rdrand64", "rdseed32", "rdseed64",
                           "rdrand_r9"};
    for (int i = 0; i < 6; i++) {
        syscall(SYS_getppid, values[i]);
        printf("%s: %#llx\n", names[i], (unsigned long long)values[i]);
    }
    printf("lookalike: %#x\n", lookalike());
    return 0;
}
