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

In replay the same bytes run. With no feed (CTRL_FEED = 0, as when recording) the untraced
`syscall` stops the replayer (PTRACE_SYSEMU), which puts the recorded result in place. With
a feed (replayer/sysbuf_feed.py writes it before a run of buffered calls) relive_hook_fed
takes the recorded call instead of making it, if it is the same call, and leaves everything
as the stopped path would; any other call stops the replayer, which then names the event.

Built with -nostdlib -fPIC -fno-stack-protector -O2 -mgeneral-regs-only -fno-jump-tables:
one .text section, no relocations, no data (the table and buffer are at fixed addresses),
no SSE register touched. The interface constants are absolute symbols named abi_* that
tracee/sysbuf.py checks against its own declarations. */

/* RELIVE_HOOK_CODE and RELIVE_HOOK_BUF come from tracee/sysbuf.py (-D): they follow the
   relive page (tracee/remote.py RELIVE_PAGE), the one place relive's addresses derive from. */
#define HOOK_CODE ((u64)RELIVE_HOOK_CODE)   /* this code, then the table at TABLE_OFF */
#define CODE_SIZE 0x6000UL
#define TABLE_OFF 0x2000UL
#define HOOK_BUF ((u64)RELIVE_HOOK_BUF)     /* the buffer: header then records, then */
#define BUF_SIZE 0xF0000UL
#define FDS_OFF 0xF0000UL            /* the descriptor bitmap (tracee/sysbuf.py FDS_OFF) */
#define FDS_MAX 0x8000UL             /* descriptors it covers */
#define WATCH_OFF 0xF1000UL          /* the watched files' table (struct watch) */
#define WATCH_MAX 255UL              /* (dev, inode) pairs it holds */
#define BUF_MAP 0xF2000UL            /* the whole read+write mapping */
#define MAX_OUT 0x10000UL            /* a larger result-sized output makes the call traced */
#define HDR_SIZE 64
#define REC_HEAD 64                  /* struct rec before its data */
#define TABLE_NRS 512
#define ENTRY_SIZE 32
#define PENDING ((long)0x8000000000000000UL)
#define NO_ARG 0xff
#define DONE 0x80000000U
#define WAIT_PROBE 1
#define FD_CLEAR 2
#define FD_FREES 4
#define OPENS_FILE 8

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
    u8 cmd_arg;         /* buffered only when this argument & cmd_mask is a command in
                           cmd_allowed (a bit per command 0-31); or NO_ARG */
    u8 fd_arg;          /* buffered only when the descriptor in this argument has its bit
                           in the bitmap at HOOK_BUF + FDS_OFF (a regular file); or NO_ARG */
    u8 flags;           /* WAIT_PROBE (futex's entry): its waits are probed (futex_wait);
                           FD_CLEAR: fd_arg's bit must be clear instead (fcntl: a copy of
                           it gets no bit); FD_FREES: any descriptor, its bit cleared
                           before the call (close: forget_fd) */
    u8 pad1;
    u32 out_size;       /* the output's size in bytes (fixed), if cap_arg is NO_ARG */
    u32 cmd_mask;
    u32 cmd_allowed;
    u32 cmd_extra;      /* one more allowed command, >= 32 (F_DUPFD_CLOEXEC, O_DIRECTORY);
                           0: none */
    u32 file_refused;   /* OPENS_FILE: an open whose cmd_arg (its flags) has none of these
                           bits is made by open_file */
    u32 pad2;
};

/* The files whose descriptors get no bit (recorder/sysbuf_fds.py FdBits.table_writes, kept
   current by the recorder with writes in the trace): relive's stdout and stderr and every
   file ever mapped; `owner` is the process whose descriptor table the bitmap describes (a
   vfork child, sharing the memory and not the table, sets no bit: open_file). */
struct watch {
    u64 owner;          /* its pid; 0: nobody sets bits here (a table shared with another
                           address space) */
    u64 count;          /* pairs below; more than WATCH_MAX: too many, no bit is set */
    u64 files[2 * WATCH_MAX];   /* st_dev, st_ino */
};

/* Replay's feed (relive_hook_fed): the replayer writes the feed's address at CTRL_FEED in
   this code's page (read-only to the program; 0 when recording) and the feed itself, a
   header then the recorded calls, in a read+write mapping of its own. */
#define CTRL_OFF 0x1FC0               /* 8 bytes of magic (tracee/sysbuf.py FEED_MAGIC), then */
#define CTRL_FEED 0x1FC8              /* the feed's address */
#define FEED_HEAD 64                  /* u64 next, end (offsets from the feed), saved flags */
#define FEED_REC_HEAD 88              /* nr, args[6], result, out, len, size; then len bytes */

#define ABI(name, value) __asm__(".globl abi_" #name "\n.set abi_" #name ", " #value)
#define STR_(x) #x
#define STR(x) STR_(x)  /* a macro's value, expanded */
__asm__(".globl abi_HOOK_CODE\n.set abi_HOOK_CODE, " STR(RELIVE_HOOK_CODE));
/* setup.py builds the hook at install time with the checksum of this file, so a build made
   from another copy of it is never used (tracee/sysbuf.py); 0 in builds made at first use. */
#ifndef RELIVE_HOOK_SOURCE_CRC
#define RELIVE_HOOK_SOURCE_CRC 0
#endif
__asm__(".globl abi_SOURCE_CRC\n.set abi_SOURCE_CRC, " STR(RELIVE_HOOK_SOURCE_CRC));
ABI(TABLE_OFF, 0x2000);
__asm__(".globl abi_HOOK_BUF\n.set abi_HOOK_BUF, " STR(RELIVE_HOOK_BUF));
ABI(BUF_SIZE, 0xF0000);
ABI(MAX_OUT, 0x10000);
ABI(HDR_SIZE, 64);
ABI(REC_HEAD, 64);
ABI(TABLE_NRS, 512);
ABI(ENTRY_SIZE, 32);
ABI(CODE_SIZE, 0x6000);
ABI(FDS_OFF, 0xF0000);
ABI(FDS_MAX, 0x8000);
ABI(NO_ARG, 0xff);
ABI(DONE, 0x80000000);
ABI(CTRL_OFF, 0x1FC0);
ABI(FEED_HEAD, 64);
ABI(FEED_REC_HEAD, 88);
ABI(WAIT_PROBE, 1);
ABI(FD_CLEAR, 2);
ABI(FD_FREES, 4);
ABI(OPENS_FILE, 8);
ABI(WATCH_OFF, 0xF1000);
ABI(WATCH_MAX, 255);
ABI(BUF_MAP, 0xF2000);

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
        "  movabs $" STR(RELIVE_HOOK_CODE) "+" STR(CTRL_FEED) ", %rcx\n"
        "  mov (%rcx), %rcx\n"           /* replay's feed (relive_hook_fed), or 0 */
        "  jrcxz relive_hook_untraced_insn\n"
        "  jmp relive_hook_fed\n"
        "relive_hook_untraced_insn:\n"
        "  syscall\n"
        "relive_hook_untraced_back:\n"
        "  mov %rax, (%rbx)\n"
        "  mov $0, %r11d\n"               /* as alike after a fed call as after `syscall` */
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

/* Replay mode: instead of the untraced `syscall`, take the feed's next record if it is this
   call (number and arguments), copy its output where the kernel wrote it and leave the
   registers, the flags and the stack as the `syscall` would have (no push: the dead stack
   below is in memory digests); otherwise restore the flags and make the call, which stops
   the replayer. In: rcx = the feed, rax = number, rdi rsi rdx r10 r8 r9 = arguments, rbx =
   where the result goes; rcx and r11 are free (`syscall` clobbers them). The feed's `next`
   moves past a record only once its output is in place. */
__asm__(".text\n"
        "relive_hook_fed:\n"
        "  mov %rax, %r11\n"
        "  lahf\n"
        "  seto %al\n"
        "  mov %ax, 16(%rcx)\n"          /* the flags (sahf's and OF), put back below */
        "  mov %r11, %rax\n"
        "  mov (%rcx), %r11\n"           /* next */
        "  cmp 8(%rcx), %r11\n"
        "  jae 8f\n"                     /* no record left */
        "  add %rcx, %r11\n"
        "  cmp (%r11), %rax\n"
        "  jne 8f\n"
        "  cmp 8(%r11), %rdi\n"
        "  jne 8f\n"
        "  cmp 16(%r11), %rsi\n"
        "  jne 8f\n"
        "  cmp 24(%r11), %rdx\n"
        "  jne 8f\n"
        "  cmp 32(%r11), %r10\n"
        "  jne 8f\n"
        "  cmp 40(%r11), %r8\n"
        "  jne 8f\n"
        "  cmp 48(%r11), %r9\n"
        "  jne 8f\n"
        "  mov 64(%r11), %rdi\n"         /* the output: where the kernel wrote it */
        "  lea 88(%r11), %rsi\n"
        "  mov 72(%r11), %rcx\n"
        "  rep movsb\n"
        "  movabs $" STR(RELIVE_HOOK_CODE) "+" STR(CTRL_FEED) ", %rcx\n"
        "  mov (%rcx), %rcx\n"
        "  mov 80(%r11), %rax\n"
        "  add %rax, (%rcx)\n"           /* taken */
        "  mov 8(%r11), %rdi\n"
        "  mov 16(%r11), %rsi\n"
        "  mov 16(%rcx), %ax\n"
        "  add $0x7f, %al\n"             /* OF = the saved one */
        "  sahf\n"
        "  mov 56(%r11), %rax\n"         /* the result */
        "  lea relive_hook_untraced_back(%rip), %rcx\n"  /* as `syscall` leaves rcx */
        "  jmp relive_hook_untraced_back\n"
        "8:\n"
        "  mov %rax, %r11\n"
        "  mov 16(%rcx), %ax\n"
        "  add $0x7f, %al\n"
        "  sahf\n"
        "  mov %r11, %rax\n"
        "  jmp relive_hook_untraced_insn\n");

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
    /* (a byte loop took ~1 cycle a byte: 10 us for a 10 KiB read of a file) */
    __asm__ volatile("rep movsb" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

/* Is `fd` one the recorder knows to be a regular file (its bit set: recorder.sysbuf_fds)?
   A read or write of one never waits for another task; any other descriptor (a pipe, a
   socket, a terminal, one the recorder has not seen made) takes the traced path. */
static int regular_file(u64 fd)
{
    const volatile u64 *bits = (const volatile u64 *)(HOOK_BUF + FDS_OFF);
    return fd < FDS_MAX && (bits[fd / 64] >> (fd % 64) & 1);
}

/* A descriptor about to be closed (FD_FREES): its bit is cleared before the call, so no
   later call takes it for the regular file it was (a clear bit is always safe: the traced
   path). Replay runs this same code: the bitmap follows without a write in the trace. */
static void forget_fd(u64 fd)
{
    volatile u64 *bits = (volatile u64 *)(HOOK_BUF + FDS_OFF);
    if (fd < FDS_MAX)
        bits[fd / 64] &= ~(1UL << (fd % 64));
}

/* Claim a record, make the call untraced and copy its output in (or, with the buffer full,
   make it traced: *traced = 1). */
static inline __attribute__((always_inline)) struct outcome make(const struct entry *e, long nr,
                                                               long *args, int *traced)
{
    struct hdr *h = (struct hdr *)HOOK_BUF;
    u8 *out = 0;
    u64 out_size = 0;
    *traced = 0;
    if (e->out_arg != NO_ARG && args[e->out_arg]) {
        out = (u8 *)args[e->out_arg];
        out_size = e->cap_arg == NO_ARG ? e->out_size : (u64)args[e->cap_arg];
        if (out_size > MAX_OUT)
            return (struct outcome){nr, 0};
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
        *traced = 1;
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
    if (e->flags & FD_FREES)
        forget_fd((u32)args[e->fd_arg]);
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

/* An open of a regular file (OPENS_FILE; tracee/sysbuf.py says which flags): made here, and
   the new descriptor's bit decided from buffered calls only, so replay's hook, given the
   same results, decides the same (a changed record is a different call or a different
   branch: a divergence at that event or the next). An open that could wait or take a
   terminal (without both O_NONBLOCK and O_NOCTTY: a FIFO's, a device's) is made only if its path is a regular file now (a buffered
   newfstatat; a file swapped for a FIFO in between is the residual race, docs/
   architecture.md 3b). Once it is open, fstat and fstatfs of the new descriptor say what
   it is: a directory is kept (no bit); anything else but a regular file on a plain file
   system (a FIFO opened O_NONBLOCK, a device, /proc/PID/status, which recorder.cpu_view
   must see opened) is closed again and the open left to the trampoline, traced, as
   before. The bit is set only by the process
   the bitmap's table is (getpid == the watched table's owner: never a vfork child) and
   for none of the watched files. */
#define NR_CLOSE 3
#define NR_FSTAT 5
#define NR_GETPID 39
#define NR_FSTATFS 138
#define NR_NEWFSTATAT 262
#define O_NONBLOCK 04000
#define O_NOCTTY 0400
#define O_NOFOLLOW 0400000
#define AT_SYMLINK_NOFOLLOW 0x100
#define S_IFMT 0170000
#define S_IFREG 0100000
#define S_IFDIR 0040000

struct kstat {          /* the kernel's struct stat (x86-64), 144 bytes */
    u64 dev, ino, nlink;
    u32 mode, uid, gid, pad0;
    u64 rest[13];
};

struct kstatfs {        /* the kernel's struct statfs, 120 bytes */
    long type;
    long rest[14];
};

_Static_assert(sizeof(struct kstat) == 144, "struct stat");
_Static_assert(sizeof(struct kstatfs) == 120, "struct statfs");

/* recorder/sysbuf_fds.py PSEUDO_FS (tests/test_sysbuf_opens_files.py checks they agree) */
static int pseudo_fs(long type)
{
    u32 t = (u32)type;
    return t == 0x9FA0 || t == 0x62656572 || t == 0x64626720 || t == 0x74726163
        || t == 0x73636673 || t == 0x27E0EB || t == 0x63677270 || t == 0x62656570
        || t == 0xDE5E81E4 || t == 0x6165676C || t == 0xCAFE4A11 || t == 0x65735543
        || t == 0x65735546 || t == 0x42494E4D || t == 0xF97CFF8C;
}

static int watched(const volatile struct watch *w, u64 dev, u64 ino)
{
    u64 n = w->count;
    if (n > WATCH_MAX)
        return 1;       /* (too many to list: every file counts as watched) */
    for (u64 i = 0; i < n; i++)
        if (w->files[2 * i] == dev && w->files[2 * i + 1] == ino)
            return 1;
    return 0;
}

static struct outcome open_file(const struct entry *e, long nr, long *args)
{
    const struct outcome not_made = {nr, 0};
    struct kstat st;
    struct kstatfs sf;
    if ((args[2] & (O_NONBLOCK | O_NOCTTY)) != (O_NONBLOCK | O_NOCTTY)) {
        struct outcome s = relive_hook(NR_NEWFSTATAT, args[0], args[1], (long)&st,
                                       args[2] & O_NOFOLLOW ? AT_SYMLINK_NOFOLLOW : 0, 0, 0);
        if (!s.made || (s.rax == 0 && (st.mode & S_IFMT) != S_IFREG
                                     && (st.mode & S_IFMT) != S_IFDIR))
            return not_made;    /* (an error, e.g. ENOENT: the open fails the same way) */
    }
    int traced;
    struct outcome o = make(e, nr, args, &traced);
    if (!o.made || traced || o.rax < 0)
        return o;       /* (made traced: the recorder set its bit at the stop) */
    long fd = o.rax;
    struct outcome f = relive_hook(NR_FSTAT, fd, (long)&st, 0, 0, 0, 0);
    if (f.made && f.rax == 0 && (st.mode & S_IFMT) == S_IFDIR)
        return o;       /* a directory (tar's, without O_DIRECTORY): no bit, as openat's
                           with O_DIRECTORY */
    struct outcome fs = {0, 0};
    if (f.made && f.rax == 0 && (st.mode & S_IFMT) == S_IFREG)
        fs = relive_hook(NR_FSTATFS, fd, (long)&sf, 0, 0, 0, 0);
    if (!fs.made || fs.rax != 0 || pseudo_fs(sf.type)) {
        relive_hook(NR_CLOSE, fd, 0, 0, 0, 0, 0);
        return not_made;
    }
    const volatile struct watch *w = (const volatile struct watch *)(HOOK_BUF + WATCH_OFF);
    if ((u64)fd < FDS_MAX && w->owner && !watched(w, st.dev, st.ino)) {
        struct outcome p = relive_hook(NR_GETPID, 0, 0, 0, 0, 0, 0);
        if (p.made && (u64)p.rax == w->owner) {
            volatile u64 *bits = (volatile u64 *)(HOOK_BUF + FDS_OFF);
            bits[fd / 64] |= 1UL << (fd % 64);
        }
    }
    return o;
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
    if (e->fd_arg != NO_ARG && !(e->flags & FD_FREES)
        && regular_file((u32)args[e->fd_arg]) == !!(e->flags & FD_CLEAR))
        return not_made;
    if ((e->flags & OPENS_FILE) && !((u32)args[e->cmd_arg] & e->file_refused))
        return open_file(e, nr, args);
    if (e->cmd_arg != NO_ARG) {
        u32 cmd = (u32)args[e->cmd_arg] & e->cmd_mask;
        if (cmd >= 32 ? cmd != e->cmd_extra : !(e->cmd_allowed & (1U << cmd)))
            return not_made;
    }
buffered:;
    int traced;
    return make(e, nr, args, &traced);
}
