/* relive's in-process syscall hook (tracee/sysbuf.py says why and how it is used).

Mapped at a fixed address in every recorded process (and at the same address, with the same
bytes, in replay). Patched libc sites jump to a per-site trampoline, which steps over the
red zone and calls relive_hook_entry with the syscall's registers as they were at the site
(rax = number, rdi rsi rdx r10 r8 r9 = arguments). The hook preserves every register but rax
(the result), rcx and r11 (which `syscall` clobbers anyway), and the flags are set again by
the displaced `cmp` after it returns.

A call the table marks as buffered, made while the buffer is not busy and has room, is
claimed as a record (number, arguments, result PENDING, its size), the buffer's position is
moved past it, and the call is made by the one *untraced* `syscall` instruction
(relive_hook_untraced_insn: the seccomp filter allows it, so it never stops the tracer), with
the instruction right after it stores the result. The kernel writes the output where the
program asked (a bad pointer fails with EFAULT as it would without relive); the hook then
copies it into the record and marks the record DONE. (A thread stopped before that has run
no program code since the call: the recorder reads the output where the kernel wrote it.) Any other call is not made
here: the hook returns rcx = 0 and rax = the number, and the trampoline makes the call with
its own `syscall`, on the stack and with the registers of the site. Only a call that meets a full buffer is
made by the hook's traced `syscall` (relive_hook_traced_insn).
A full buffer: the call is made traced (the recorder empties the buffer at that stop), then
the hook starts a new generation at the buffer's start.

Built with -nostdlib -fPIC -fno-stack-protector -O2 -mgeneral-regs-only -fno-jump-tables:
one .text section, no relocations, no data (the table and buffer are at fixed addresses),
no SSE register touched. The interface constants are absolute symbols named abi_* that
tracee/sysbuf.py checks against its own declarations. */

/* RELIVE_HOOK_CODE and RELIVE_HOOK_BUF come from tracee/sysbuf.py (-D): they follow the
   relive page (tracee/remote.py RELIVE_PAGE), the one place relive's addresses derive from. */
#define HOOK_CODE ((u64)RELIVE_HOOK_CODE)   /* this code, then the table at TABLE_OFF */
#define CODE_SIZE 0x6000UL
#define TABLE_OFF 0x2000UL
#define HOOK_BUF ((u64)RELIVE_HOOK_BUF)     /* the buffer: header then records */
#define BUF_SIZE 0xF0000UL
#define MAX_OUT 0x10000UL            /* a larger result-sized output makes the call traced */
#define HDR_SIZE 64
#define REC_HEAD 64                  /* struct rec before its data */
#define TABLE_NRS 512
#define ENTRY_SIZE 32
#define PENDING ((long)0x8000000000000000UL)
#define NO_ARG 0xff
#define DONE 0x80000000U
#define WAIT_PROBE 1

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

struct hdr {
    volatile u64 pos;   /* generation << 32 | offset of the next record */
    volatile u64 busy;  /* a record is being made: a nested call takes the traced path */
    u64 pad[6];
};

struct rec {
    u32 size;           /* of the whole record, data included, a multiple of 8 */
    volatile u32 nr;    /* | DONE once the output is copied in: the record is whole */
    u64 args[6];
    volatile long result;
    u8 data[];
};

/* One table entry per syscall number (struct entry): 0 = traced. */
struct entry {
    u8 buffered;
    u8 out_arg;         /* the argument holding the output pointer, or NO_ARG */
    u8 null_arg;        /* an argument that must be 0 for the call to be buffered, or NO_ARG */
    u8 cap_arg;         /* result-sized output: at most this argument's bytes; or NO_ARG */
    u8 cmd_arg;         /* buffered only when this argument & cmd_mask is a command in */
                        /* cmd_allowed (a bit per command 0-31); or NO_ARG */
    u8 pad0;
    u8 flags;           /* WAIT_PROBE (futex's entry): its waits are probed (futex_wait) */
    u8 pad1;
    u32 out_size;       /* the output's size in bytes (fixed), if cap_arg is NO_ARG */
    u32 cmd_mask;
    u32 cmd_allowed;
    u32 pad2[3];
};

#define ABI(name, value) __asm__(".globl abi_" #name "\n.set abi_" #name ", " #value)
#define STR_(x) #x
#define STR(x) STR_(x)  /* a macro's value, expanded */
__asm__(".globl abi_HOOK_CODE\n.set abi_HOOK_CODE, " STR(RELIVE_HOOK_CODE));
ABI(TABLE_OFF, 0x2000);
__asm__(".globl abi_HOOK_BUF\n.set abi_HOOK_BUF, " STR(RELIVE_HOOK_BUF));
ABI(BUF_SIZE, 0xF0000);
ABI(MAX_OUT, 0x10000);
ABI(HDR_SIZE, 64);
ABI(REC_HEAD, 64);
ABI(TABLE_NRS, 512);
ABI(ENTRY_SIZE, 32);
ABI(CODE_SIZE, 0x6000);
ABI(NO_ARG, 0xff);
ABI(DONE, 0x80000000);
ABI(WAIT_PROBE, 1);

static long relive_hook_untraced(long nr, long a0, long a1, long a2, long a3, long a4, long a5,
                          volatile long *result);
static long relive_hook_traced(long nr, long a0, long a1, long a2, long a3, long a4, long a5);
struct outcome { long rax; long made; };  /* returned in rax:rdx */
static struct outcome relive_hook(long nr, long a0, long a1, long a2, long a3, long a4,
                                  long a5);

/* The untraced call: the result is stored by the instruction right after `syscall`, so a
   thread stopped between the two has it in rax (the recorder takes it from there). */
__asm__(".text\n"
        "relive_hook_untraced:\n"
        "  push %rbx\n"
        "  mov 24(%rsp), %rbx\n"          /* result pointer (8th argument) */
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n"
        "  mov %r9, %r8\n"
        "  mov 16(%rsp), %r9\n"
        "relive_hook_untraced_insn:\n"
        "  syscall\n"
        "  mov %rax, (%rbx)\n"
        "  pop %rbx\n"
        "  ret\n"
        "relive_hook_traced:\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n"
        "  mov %r9, %r8\n"
        "  mov 8(%rsp), %r9\n"
        "relive_hook_traced_insn:\n"
        "  syscall\n"
        "  ret\n"
        /* The trampolines' target: the syscall's registers in, rax out, all else kept. */
        "relive_hook_entry:\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  push %rdi\n"
        "  push %rsi\n"
        "  push %rdx\n"
        "  push %r10\n"
        "  push %r8\n"
        "  push %r9\n"
        "  and $-16, %rsp\n"
        "  push %r9\n"                    /* 7th argument of relive_hook: a5 */
        "  push %r9\n"                    /* (alignment) */
        "  mov %r8, %r9\n"                /* a4 */
        "  mov %r10, %r8\n"               /* a3 */
        "  mov %rdx, %rcx\n"              /* a2 */
        "  mov %rsi, %rdx\n"              /* a1 */
        "  mov %rdi, %rsi\n"              /* a0 */
        "  mov %rax, %rdi\n"              /* nr */
        "  mov 8(%rsp), %rax\n"
        "  mov %rax, (%rsp)\n"            /* a5 at the top of the stack, as the ABI wants */
        "  call relive_hook\n"
        "  mov %rdx, %rcx\n"                /* made: 0 = the trampoline makes it */
        "  lea -48(%rbp), %rsp\n"
        "  pop %r9\n"
        "  pop %r8\n"
        "  pop %r10\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  pop %rbp\n"
        "  ret\n");

/* A futex wait (FUTEX_WAIT, FUTEX_WAIT_BITSET, private or not) that will not sleep is
   answered here without a stop; one that will is left to the trampoline, traced, as before
   (the recorder schedules around it). The hook never makes a wait itself: it asks the kernel
   with buffered calls that cannot sleep. First a FUTEX_CMP_REQUEUE of the word onto itself,
   waking and moving nobody: 0 if the word still holds the value (the wait would sleep: left
   to the trampoline), -EAGAIN if not, -EFAULT/-EINVAL as the wait would (left to the
   trampoline too, which gets them from the wait). Only one recorded thread runs at a time,
   so none can change the word after the probe. With -EAGAIN the wait returns at once, with
   -EAGAIN unless its other arguments are wrong, which the kernel checks first: a plain
   FUTEX_WAIT without a timeout has none to check; otherwise the same wait on ZERO_WORD (a
   read-only word that is 0, waiting for 1: never sleeps) returns what the wait would, the
   errors of its timeout, flags and bitset or -EAGAIN. Replay reproduces every choice: the
   probes' results are their BUFFERED events'. (tracee/sysbuf.py WAIT_PROBE) */
#define NR_FUTEX 202
#define FUTEX_WAIT 0
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE 128
#define FUTEX_CLOCK_REALTIME 256
#define EAGAIN 11
/* the last table entry's padding (syscall 511 does not exist): tracee/sysbuf.py code_page */
#define ZERO_WORD (HOOK_CODE + TABLE_OFF + TABLE_NRS * ENTRY_SIZE - 4)

static int futex_wait_op(long op)
{
    u32 cmd = (u32)op & ~(u32)(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME);
    return cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET;
}

static void copy(u8 *to, const u8 *from, u64 n)
{
    for (u64 i = 0; i < n; i++)
        to[i] = from[i];
    __asm__ volatile("" ::: "memory");
}

__attribute__((used, noipa))
static struct outcome relive_hook(long nr, long a0, long a1, long a2, long a3, long a4,
                                  long a5)
{
    const struct outcome not_made = {nr, 0};
    struct hdr *h = (struct hdr *)HOOK_BUF;
    const struct entry *e = (const struct entry *)(HOOK_CODE + TABLE_OFF) + nr;
    if ((u64)nr >= TABLE_NRS || !e->buffered || h->busy)
        return not_made;
    long args[6] = {a0, a1, a2, a3, a4, a5};
    if (e->null_arg != NO_ARG && args[e->null_arg])
        return not_made;
    if (nr == NR_FUTEX && (e->flags & WAIT_PROBE) && futex_wait_op(a1)) {
        struct outcome probe = relive_hook(NR_FUTEX, a0, FUTEX_CMP_REQUEUE | (a1 & FUTEX_PRIVATE),
                                           0, 0, a0, (long)(u32)a2);
        if (!probe.made || probe.rax != -EAGAIN)
            return not_made;   /* it would sleep (or fail): traced, as before */
        if (!a3 && ((u32)a1 & ~(u32)FUTEX_PRIVATE) == FUTEX_WAIT)
            return (struct outcome){-EAGAIN, 1};
        args[0] = (long)ZERO_WORD;   /* the checks the wait makes before the word's */
        args[1] = a1 | FUTEX_PRIVATE;
        args[2] = 1;
        args[4] = 0;
        goto buffered;
    }
    if (e->cmd_arg != NO_ARG) {
        u32 cmd = (u32)args[e->cmd_arg] & e->cmd_mask;
        if (cmd >= 32 || !(e->cmd_allowed & (1U << cmd)))
            return not_made;
    }
buffered:;
    u8 *out = 0;
    u64 out_size = 0;
    if (e->out_arg != NO_ARG && args[e->out_arg]) {
        out = (u8 *)args[e->out_arg];
        out_size = e->cap_arg == NO_ARG ? e->out_size : (u64)args[e->cap_arg];
        if (out_size > MAX_OUT)
            return not_made;
    }
    u64 size = (REC_HEAD + out_size + 7) & ~7UL;
    h->busy = 1;
    __asm__ volatile("" ::: "memory");
    u64 pos = h->pos;
    u64 off = pos & 0xffffffffUL;
    if (off < HDR_SIZE)
        off = HDR_SIZE;
    if (off + size > BUF_SIZE) {
        /* Full: made traced; the recorder takes every record at its stop. Then a new
           generation starts, unless a signal handler's call already started one while
           this call waited (its records must not be overwritten). */
        h->busy = 0;
        long r = relive_hook_traced(nr, args[0], args[1], args[2], args[3], args[4],
                                    args[5]);
        __sync_bool_compare_and_swap(&h->pos, pos, (((pos >> 32) + 1) << 32) | HDR_SIZE);
        return (struct outcome){r, 1};
    }
    struct rec *rec = (struct rec *)(HOOK_BUF + off);
    rec->size = (u32)size;
    rec->nr = (u32)nr;
    for (int i = 0; i < 6; i++)                /* the arguments as the `syscall` gets them */
        rec->args[i] = (u64)args[i];
    rec->result = PENDING;
    __asm__ volatile("" ::: "memory");
    h->pos = (pos & ~0xffffffffUL) | (off + size);   /* claimed */
    long r = relive_hook_untraced(nr, args[0], args[1], args[2], args[3], args[4], args[5],
                                  &rec->result);
    h->busy = 0;
    __asm__ volatile("" ::: "memory");
    if (out && e->cap_arg != NO_ARG)
        out_size = r > 0 && (u64)r <= out_size ? (u64)r : 0;
    if (out && (r >= 0 || r < -4095))
        copy(rec->data, out, out_size);
    rec->nr = (u32)nr | DONE;
    return (struct outcome){r, 1};
}
