"""Go programs' own `syscall` sites that jump to relive's in-process hook (tracee.sysbuf).

Go binaries make their system calls themselves (runtime·futex, runtime·read, nanotime1's
clock_gettime fallback: the vDSO is hidden, runtime/internal/syscall.Syscall6, ...), so the
libc sites of tracee.syscall_sites never see them. A Go binary is recognised by its
`.go.buildinfo` section (the version string inline, go1.18 on; older ones and versions
after go1.23, whose shapes were not read, keep today's path: said in the debug log). Its
functions come from `.symtab`, or in a stripped binary (every Debian package) from the
function table of its pclntab, which the Go runtime keeps for its own tracebacks. Its
sites, in `.text`, have three shapes (go1.19-go1.23's sys_linux_amd64.s and
internal/syscall asm_linux_amd64.s):

    B8 imm32 0F 05           mov $nr,%eax; syscall              7 bytes (futex, read, ...)
    48 C7 C0 imm32 0F 05     mov $nr,%rax; syscall              9 bytes (clock_gettime, ...)
    0F 05 48 3D imm32        syscall; cmp $-4095,%rax           8 bytes (Syscall6, open, ...)

each confirmed by decoding the function that holds it: the
instructions are there, no other instruction starts and no direct branch lands inside the
site (nanotime1's `je` to its `mov` lands on its start: allowed), and after a `mov` site no
instruction reads the flags the hook leaves changed. Calls bound to their stack
(rt_sigreturn, clone, vfork, clone3) and exits are never patched.

The stack: a goroutine's stack may have only 128 bytes left at a NOSPLIT function (Go has
no red zone and no guard page), so the hook never runs on it. Each trampoline takes the hook
stack (HOOK_STACK, in relive's area: a lock word, 0 while it is free, the spin counter,
then the stack; all zeros when mapped) with one `xchg`, saves the site's rsp at its top,
calls the hook and comes back; if the stack is taken (a thread stopped inside the hook
while another runs, a signal handler's call) the call is made traced, as before, on the
site's stack:

    [mov $nr,%eax | mov $nr,%rax]   the displaced instruction (a `mov` site)
    movabs $SPIN,%r11               clock reads in a row: a clock_gettime counts one, any
    cmp $228,%rax; jne 3f           other call starts again at 0; past SPIN_LIMIT the
    incq (%r11)                     read is made traced (2f)
    cmpq $SPIN_LIMIT,(%r11); ja 2f
    jmp 4f
3:  movq $0,(%r11)
4:  movabs $HOOK_STACK,%r11
    mov $1,%ecx; xchg %rcx,(%r11)   the lock word: 0 free, 1 taken
    test %ecx,%ecx; jnz 2f
    lea TOP-8(%r11),%rcx; mov %rsp,(%rcx); mov %rcx,%rsp
    call *slot(%rip)                relive_hook_entry: rcx 1 = made (rax its result)
    pop %r11; xchg %rsp,%r11        the site's stack again
    test %rcx,%rcx
    movabs $HOOK_STACK,%rcx; movq $0,(%rcx)    freed (flags kept from the test)
    jnz 1f
2:  syscall                         not made: traced, with the site's stack and registers
1:  [cmp $imm32,%rax]               the displaced instruction (a `cmp` site)
    jmp site+length

Why a limit on clock reads in a row: a Go thread that waits for another by spinning
(runtime.GC's wait for the sweepers: Gosched in a loop, a nanotime per goroutine switch)
keeps the CPU until its 20 ms timeslice ends, as only one recorded thread runs at a time;
buffered, each spin costs ~0.5 us instead of a stop, so a timeslice of spinning made
~40,000 events instead of ~800 (bench_go -scale 5: 760,000 events, record and replay 2-3x
slower than with every read traced). Real work reads the clock in runs too (a channel
hand-off between goroutines on one thread: ~1,700 in a row), hence 2,048. The counter is
program memory the trampolines change: replay, running the same code, makes the same
choices.

Every register Go keeps across SYSCALL survives (R14 = g, R15, X15: the hook touches no
vector register; rcx and r11 are the syscall's). The page starts with the hook entry's
address and MAGIC (so replayer.sysbuf_view tells it from libc's trampoline pages).
Shared by the recorder (recorder.go_patch) and the replayer's view; knows nothing of traces.
"""
from __future__ import annotations

import bisect
import re
import struct
from typing import NamedTuple

from tracee import elf, syscall_sites
from tracee.remote import RELIVE_AREA_SIZE, RELIVE_PAGE

MOV32, CMP, MOV64 = 7, 8, 9  # a site's kind is its length
MAGIC = b"RLVGOTR1"
HEAD = 16                    # the entry's address, then MAGIC
TRAMPOLINE = 128
HOOK_STACK = RELIVE_PAGE + 0x22_0000  # the lock word, then the stack below its top
HOOK_STACK_SIZE = 0x1_0000
SPIN = HOOK_STACK + 8  # clock reads in a row (the trampolines count them)
SPIN_LIMIT = 2048
CLOCK_GETTIME = 228
NEVER = syscall_sites.STACK_BOUND | {60, 231}  # ... and exit, exit_group
# Versions whose site shapes were read (go1.18's are go1.19's); others: today's path.
VERSIONS = re.compile(rb"go1\.(1[89]|2[0-3])(\.\d+)?")
_FLAG_READERS = ("set", "cmov", "adc", "sbb", "pushf", "lahf", "rcl", "rcr")
if HOOK_STACK + HOOK_STACK_SIZE > RELIVE_PAGE + RELIVE_AREA_SIZE:
    raise ImportError("the Go hook stack lies outside tracee.remote.RELIVE_AREA_SIZE")


class Scan(NamedTuple):
    """What a binary's scan found: its sites ((file offset, length)), or why none."""
    sites: list[tuple[int, int]]
    why: str


def version(data: bytes) -> bytes | None:
    """The Go version of a binary with a .go.buildinfo (inline strings: go1.18 on)."""
    i = data.find(b"\xff Go buildinf:")
    if i < 0 or i + 33 > len(data) or not data[i + 15] & 2:
        return None
    n = data[i + 32]
    return data[i + 33:i + 33 + n] if n < 0x80 else None


def scan(data: bytes) -> Scan:
    if data[:5] != b"\x7fELF\x02" or data.find(b"\xff Go buildinf:") < 0:
        return Scan([], "not a Go binary")
    ver = version(data)
    if ver is None or not VERSIONS.fullmatch(ver):
        return Scan([], f"Go version {ver!r} not known to relive")
    try:
        functions = symbol_functions(data)
        code = elf.code_sections(data)
        hits = []
        for off, size in code:
            i = data.find(b"\x0f\x05", off + 7, off + size - CMP)
            while i >= 0:
                kind = _shape(data, i)
                if kind:
                    hits.append((i if kind == CMP else i - kind + 2, kind))
                i = data.find(b"\x0f\x05", i + 1, off + size - CMP)
    except (struct.error, ValueError):
        return Scan([], "unreadable ELF headers")
    if not functions:
        try:
            functions = pcln_functions(data)
        except (struct.error, ValueError):
            functions = []
    if not functions:
        return Scan([], f"{ver.decode()} binary without a .symtab (stripped) nor a function "
                        "table in its pclntab")
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    found = []
    for hit, length in hits:
        k = bisect.bisect_right(functions, (hit, 1 << 64)) - 1
        if k >= 0 and functions[k][0] <= hit and hit + length <= functions[k][1]:
            if _confirmed(md, data, functions[k], hit, length):
                found.append((hit, length))
    return Scan(found, f"{ver.decode()}: {len(found)} of {len(hits)} syscall sites")


def _shape(data: bytes, i: int) -> int:
    """The kind of site whose `syscall` is at i, or 0."""
    if data[i + 2:i + 4] == b"\x48\x3d":
        return CMP
    if data[i - 7:i - 4] == b"\x48\xc7\xc0" and _nr(data, i - 4) not in NEVER:
        return MOV64
    if data[i - 5] == 0xB8 and _nr(data, i - 4) not in NEVER:
        return MOV32
    return 0


def _nr(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


def matches(code: bytes) -> bool:
    """Do these bytes (a site's, as long as its kind) hold what a site must?"""
    if len(code) == CMP:
        return code.startswith(syscall_sites.PATTERN)
    if len(code) == MOV32:
        return code[0] == 0xB8 and code[5:] == b"\x0f\x05" and _nr(code, 1) not in NEVER
    return (len(code) == MOV64 and code[:3] == b"\x48\xc7\xc0" and code[7:] == b"\x0f\x05"
            and _nr(code, 3) not in NEVER)


def symbol_functions(data: bytes) -> list[tuple[int, int]]:
    """(start, end) file offsets of the sized functions .symtab names, sorted."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
            for i in range(shnum if shoff else 0)]
    loads = [(v, o, size) for p_type, _, o, v, size in elf.segments(data) if p_type == 1]
    out = []
    for _, sh_type, _, _, off, size, _, _, _, entsize in secs:
        if sh_type != 2 or entsize != 24:  # SHT_SYMTAB
            continue
        for k in range(size // 24):
            _, info, _, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data,
                                                                    off + 24 * k)
            if info & 0xF == 2 and sym_size and shndx:  # STT_FUNC
                start = elf.file_offset(loads, value)
                if start is not None:
                    out.append((start, start + sym_size))
    return sorted(set(out))


PCLN_MAGICS = (b"\xf0\xff\xff\xff\x00\x00\x01\x08",  # go1.18-1.19: magic, pads, minLC 1,
               b"\xf1\xff\xff\xff\x00\x00\x01\x08")  # 8-byte pointers; go1.20 on
MAX_FUNCS = 1 << 20


def pcln_functions(data: bytes) -> list[tuple[int, int]]:
    """(start, end) file offsets of the functions of the pclntab's function table, sorted:
    what the Go runtime itself unwinds with, kept in a stripped binary. Its header
    (runtime/symtab.go pcHeader) is found by its magic, checked by what follows: a count of
    functions, the text's start, an offset to the table of (entry, func) offset pairs whose
    entries rise and end inside an executable segment."""
    segs = elf.segments(data)
    loads = [(v, o, size) for p_type, _, o, v, size in segs if p_type == 1]
    code = [(v, v + size) for p_type, flags, _, v, size in segs if p_type == 1 and flags & 1]
    for magic in PCLN_MAGICS:
        at = data.find(magic)
        while at >= 0:
            nfunc, _, text, _, _, _, _, pcln = struct.unpack_from("<8Q", data, at + 8)
            table = at + pcln
            if 0 < nfunc < MAX_FUNCS and table + 8 * (nfunc + 1) <= len(data):
                entries = struct.unpack_from(f"<{2 * (nfunc + 1)}I", data, table)[::2]
                if all(a < b for a, b in zip(entries, entries[1:])) and any(
                        lo <= text and text + entries[-1] <= hi for lo, hi in code):
                    out = []
                    for a, b in zip(entries, entries[1:]):
                        start = elf.file_offset(loads, text + a)
                        if start is not None:
                            out.append((start, start + b - a))
                    return out
            at = data.find(magic, at + 1)
    return []


def _confirmed(md: object, data: bytes, function: tuple[int, int], hit: int,
               length: int) -> bool:
    """Decoding the function: the site's two instructions where expected, nothing else
    starting or landing inside it, no flag read right after a `mov` site (the patch's
    trampoline does not keep the flags a `mov; syscall` leaves)."""
    want = ({hit: ("syscall", 2), hit + 2: ("cmp", 6)} if length == CMP
            else {hit: ("mov", length - 2), hit + length - 2: ("syscall", 2)})
    return syscall_sites.site_confirmed(
        md, data, function, hit, length, want,
        None if length == CMP else _reads_flags)


def _reads_flags(mnemonic: str) -> bool:
    return (mnemonic.startswith("j") and mnemonic != "jmp") or mnemonic.startswith(
        _FLAG_READERS)


def page_size_for(count: int) -> int:
    return (HEAD + TRAMPOLINE * count + 4095) & ~4095


def trampoline_at(page: int, k: int) -> int:
    return page + HEAD + TRAMPOLINE * k


def trampolines(page: int, sites: list[tuple[int, bytes]], entry: int) -> bytes:
    """The trampoline page at `page` for `sites` ((address, original bytes)) calling the
    hook at `entry` (layout: the module docstring)."""
    rel = struct.Struct("<i").pack
    stack = struct.pack("<Q", HOOK_STACK)
    spin = b"".join((
        b"\x49\xbb", struct.pack("<Q", SPIN),     # movabs $SPIN,%r11
        b"\x48\x3d", struct.pack("<I", CLOCK_GETTIME),  # cmp $228,%rax
        b"\x75\x0e",                              # jne 3f
        b"\x49\xff\x03",                          # incq (%r11)
        b"\x49\x81\x3b", struct.pack("<I", SPIN_LIMIT),  # cmpq $SPIN_LIMIT,(%r11)
        b"\x77", bytes([TRACED - 30]),              # ja 2f
        b"\xeb\x07",                              # jmp 4f
        b"\x49\xc7\x03\x00\x00\x00\x00"))         # 3: movq $0,(%r11); 4:
    assert len(spin) == _SPIN_LEN
    parts = [struct.pack("<Q", entry), MAGIC]
    for k, (addr, original) in enumerate(sites):
        at = trampoline_at(page, k)
        head, cmp = (b"", original[2:]) if len(original) == CMP else (original[:-2], b"")
        call_end = at + len(head) + AFTER_CALL
        body = b"".join((
            head,
            spin,
            b"\x49\xbb", stack,                       # movabs $HOOK_STACK,%r11
            b"\xb9\x01\x00\x00\x00\x49\x87\x0b",      # mov $1,%ecx; xchg %rcx,(%r11)
            b"\x85\xc9\x75\x2e",                      # test %ecx,%ecx; jnz 2f (taken)
            b"\x49\x8d\x8b", struct.pack("<I", HOOK_STACK_SIZE - 8),  # lea TOP-8(%r11),%rcx
            b"\x48\x89\x21\x48\x89\xcc",              # mov %rsp,(%rcx); mov %rcx,%rsp
            b"\xff\x15", rel(page - call_end),        # call *slot
            b"\x41\x5b\x49\x87\xe3",                  # pop %r11; xchg %rsp,%r11
            b"\x48\x85\xc9",                          # test %rcx,%rcx
            b"\x48\xb9", stack,                       # movabs $HOOK_STACK,%rcx
            b"\x48\xc7\x01\x00\x00\x00\x00",          # movq $0,(%rcx): free
            b"\x75\x02\x0f\x05",                      # jnz 1f; 2: syscall
            cmp))                                     # 1: [cmp]
        assert body[len(head) + TRACED:len(head) + TRACED + 2] == b"\x0f\x05"
        back_end = at + len(body) + 5
        parts.append((body + b"\xe9" + rel(addr + len(original) - back_end)
                       ).ljust(TRAMPOLINE, b"\xcc"))
    return b"".join(parts).ljust(page_size_for(len(sites)), b"\xcc")


# offsets in a trampoline, from the end of its displaced `mov` (0 for a `cmp` site)
_SPIN_LEN = 39
CALL, AFTER_CALL, FREED, TRACED = (_SPIN_LEN + n for n in (35, 41, 66, 68))


class Site(NamedTuple):
    addr: int          # the site in the program
    original: bytes    # its bytes before the patch
    trampoline: int    # its trampoline's address

    @property
    def head(self) -> int:
        """The displaced `mov`'s length (0: a `cmp` site)."""
        return 0 if len(self.original) == CMP else len(self.original) - 2


def decode(at: int, code: bytes) -> Site | None:
    """The site whose trampoline is `code` (TRAMPOLINE bytes at `at`), if it is one."""
    head = 5 if code[:1] == b"\xb8" else 7 if code[:3] == b"\x48\xc7\xc0" else 0
    if code[head:head + 2] != b"\x49\xbb" or code[head + _SPIN_LEN:head + _SPIN_LEN + 2] != (
            b"\x49\xbb") or code[head + TRACED:head + TRACED + 2] != (
            b"\x0f\x05"):
        return None
    cmp = code[head + TRACED + 2:head + TRACED + 8] if not head else b""
    jmp = head + TRACED + 2 + len(cmp)
    if code[jmp:jmp + 1] != b"\xe9":
        return None
    end = at + jmp + 5 + struct.unpack_from("<i", code, jmp + 1)[0]
    original = code[:head] + b"\x0f\x05" if head else b"\x0f\x05" + cmp
    return Site(end - len(original), original, at)


def jump(addr: int, target: int, length: int) -> bytes:
    """What a site becomes: jmp rel32 to its trampoline, then a nop to its end."""
    nops = {7: b"\x66\x90", 8: b"\x0f\x1f\x00", 9: b"\x0f\x1f\x40\x00"}
    return b"\xe9" + struct.pack("<i", target - (addr + 5)) + nops[length]
