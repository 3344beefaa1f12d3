/* Asks the kernel for AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM, as oneDNN and PyTorch
 * do) and uses tile instructions. Replay must ask too, or the first tile instruction dies
 * with SIGILL. Where the CPU has no AMX the request fails and the program says so. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

struct tile_config {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

int main(void) {
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        printf("no AMX here\n");
        return 0;
    }
    uint64_t features = 0;
    syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &features);
    struct tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    cfg.colsb[0] = 64;
    cfg.rows[0] = 16;
    __asm__ volatile(".byte 0xc4, 0xe2, 0x78, 0x49, 0x00" :: "a"(&cfg) : "memory"); /* ldtilecfg (%rax) */
    __asm__ volatile(".byte 0xc4, 0xe2, 0x7b, 0x49, 0xc0" ::: "memory");            /* tilezero %tmm0 */
    __asm__ volatile(".byte 0xc4, 0xe2, 0x78, 0x49, 0xc0" ::: "memory");            /* tilerelease */
    printf("AMX tiles used (permitted features %#llx)\n", (unsigned long long)features);
    return 0;
}
