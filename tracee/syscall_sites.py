"""libc's `syscall` sites that jump to relive's in-process hook (tracee.sysbuf).

A site is `syscall` followed by `cmp $imm32,%rax` (0F 05 48 3D imm32: 8 bytes, room for a
`jmp rel32`; 429 of libc 2.36's 533 `syscall`s), or else preceded by `mov $imm32,%eax`
(B8 imm32 0F 05: 7 bytes; 71 more, clock_gettime's among them), confirmed by decoding its
function from the start .eh_frame_hdr gives (as tracee.rdrand does), with no direct branch
of that function into the middle of the patch (it would run half an instruction). Each
site becomes `jmp` to its own trampoline, in a page mapped within 2 GB of the library:

    [mov $imm32,%eax]        the displaced instruction (a `mov` site)
    lea -128(%rsp),%rsp      step over the red zone
    call *slot(%rip)         relive_hook_entry (the page's first 8 bytes)
    lea 128(%rsp),%rsp
    test %rcx,%rcx           the hook made the call (rcx 1, rax its result), or
    jnz 1f
    syscall                  not (rcx 0, rax the number): made here, traced, with the site's
1:  [cmp $imm32,%rax]        stack and registers; the displaced instruction (a `cmp` site)
    jmp site+length

A thread stopped in the trampoline's `syscall` (blocked in a futex wait, say) has the site's
stack and registers: replayer.sysbuf_view shows it to gdb at the site, and the site's
original bytes, so gdb unwinds it with libc's CFI.

Other sites, other libraries, static binaries and the program's own `syscall`s stay traced.
Shared by the recorder (which patches and records the patch as a MAPPING event's writes, so
replay applies the very same bytes) and tests; knows nothing of traces.
"""
from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Callable
from pathlib import Path

from tracee import elf

PATTERN = b"\x0f\x05\x48\x3d"
CMP_SITE, MOV_SITE = 8, 7  # a site's kind is its length
# Calls that must run on the stack the program made them with: rt_sigreturn reads the
# signal frame at rsp, and a child of clone/vfork/clone3 sharing the memory returns on
# another stack (or on the parent's, which it then changes under the hook's frame). glibc
# makes them with `mov $nr,%eax; syscall` (vfork.S, the signal restorer): never patched.
STACK_BOUND = frozenset({15, 56, 58, 435})
TRAMPOLINE = 40
SLOT = 8  # the hook entry's address, at the page's start
MAX_REACH = (1 << 31) - 4096


def is_libc(path: str | None) -> bool:
    return bool(path) and Path(path or "").name.startswith("libc.so")


def matches(code: bytes) -> bool:
    """Do these bytes (a site's, as long as its kind) hold what a site must?"""
    if len(code) == CMP_SITE:
        return code.startswith(PATTERN)
    return (len(code) == MOV_SITE and code[0] == 0xB8 and code[5:] == b"\x0f\x05"
            and struct.unpack_from("<I", code, 1)[0] not in STACK_BOUND)


def scan(path: Path) -> list[tuple[int, int]]:
    """(file offset, length) of the sites of an ELF file (see the module docstring)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:5] != b"\x7fELF\x02":
        return []
    try:
        segments = elf.segments(data)
        code = elf.code_sections(data) or list(elf.executable(segments))
        hits = []
        for off, size in code:
            i = data.find(b"\x0f\x05", off + 5, off + size - CMP_SITE)
            while i >= 0:
                if data[i:i + 4] == PATTERN:
                    hits.append((i, CMP_SITE))
                elif (data[i - 5] == 0xB8
                      and struct.unpack_from("<I", data, i - 4)[0] not in STACK_BOUND):
                    hits.append((i - 5, MOV_SITE))
                i = data.find(b"\x0f\x05", i + 1, off + size - CMP_SITE)
        functions = elf.functions(data, segments) if hits else []
    except (struct.error, ValueError):
        return []
    if not hits:
        return []
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    found = []
    for hit, length in hits:
        i = bisect.bisect_right(functions, (hit, 1 << 64)) - 1
        if i >= 0 and functions[i][0] <= hit < functions[i][1]:
            if _confirmed(md, data, functions[i], hit, length):
                found.append((hit, length))
    return found


def _confirmed(md: object, data: bytes, function: tuple[int, int], hit: int,
               length: int) -> bool:
    """Decoding the function: the site's two instructions are there as expected, and no
    other instruction starts or direct branch lands inside it."""
    want = ({hit: ("syscall", 2), hit + 2: ("cmp", 6)} if length == CMP_SITE
            else {hit: ("mov", 5), hit + 5: ("syscall", 2)})
    return site_confirmed(md, data, function, hit, length, want)


def site_confirmed(md: object, data: bytes, function: tuple[int, int], hit: int, length: int,
                   want: dict[int, tuple[str, int]],
                   refused_after: Callable[[str], bool] | None = None) -> bool:
    """Decoding `function`: the instructions `want`s (address -> mnemonic, size; a `cmp` or
    `mov` on rax/eax) where it says, no other instruction starting or direct branch landing
    inside the `length` bytes at `hit`, and none right after them that `refused_after`
    refuses (tracee.go_sites: a flag read after a `mov` site)."""
    start, end = function
    seen = 0
    for address, size, mnemonic, op_str in md.disasm_lite(  # type: ignore[attr-defined]
            data[start:end], start):
        if address in want:
            if (mnemonic, size) != want[address] or (
                    mnemonic in ("cmp", "mov") and not op_str.startswith(("rax,", "eax,"))):
                return False
            seen += 1
        elif hit < address < hit + length:
            return False
        elif address == hit + length and refused_after is not None and refused_after(mnemonic):
            return False
        if mnemonic.startswith("j") or mnemonic in ("call", "loop"):
            try:
                target = int(op_str, 16)
            except ValueError:
                continue
            if hit < target < hit + length:
                return False
    return seen == len(want)


def to_json(sites: list[tuple[int, int]]) -> str:
    return json.dumps(sites)


def from_json(text: str) -> list[tuple[int, int]]:
    sites = json.loads(text)
    try:
        out = [(off, length) for off, length in sites]
    except (TypeError, ValueError):
        raise ValueError("not a list of sites") from None
    if not isinstance(sites, list) or not all(
            type(off) is int and length in (CMP_SITE, MOV_SITE) and type(length) is int
            for off, length in out):
        raise ValueError("not a list of sites")
    return out


def page_size_for(count: int) -> int:
    return (SLOT + TRAMPOLINE * count + 4095) & ~4095


def trampolines(page: int, sites: list[tuple[int, bytes]], entry: int) -> bytes:
    """The trampoline page at `page` for `sites` ((address, its original bytes: 8 for a
    `cmp` site, 7 for a `mov` one)) that call the hook at `entry`."""
    rel = struct.Struct("<i").pack
    parts = [struct.pack("<Q", entry)]
    for k, (addr, original) in enumerate(sites):
        at = page + SLOT + TRAMPOLINE * k
        head, cmp = (original[:5], b"") if len(original) == MOV_SITE else (b"", original[2:])
        call_end = at + len(head) + 14
        back_end = call_end + 15 + len(cmp) + 5
        parts.append(b"".join((
            head,                                                 # [mov $imm32,%eax]
            b"\x48\x8d\xa4\x24\x80\xff\xff\xff",                   # lea -128(%rsp)
            b"\xff\x15", rel(page - call_end),                      # call *slot
            b"\x48\x8d\xa4\x24\x80\x00\x00\x00",                   # lea 128(%rsp)
            b"\x48\x85\xc9\x75\x02\x0f\x05",         # test %rcx,%rcx; jnz 1f; syscall
            cmp,                                                  # 1: [cmp $imm32,%rax]
            b"\xe9", rel(addr + len(original) - back_end))).ljust(TRAMPOLINE, b"\xcc"))
    return b"".join(parts).ljust(page_size_for(len(sites)), b"\xcc")


def jump(addr: int, target: int, length: int) -> bytes:
    """What a site becomes: jmp rel32 to its trampoline, then a 2- or 3-byte nop."""
    nop = b"\x0f\x1f\x00" if length == CMP_SITE else b"\x66\x90"
    return b"\xe9" + struct.pack("<i", target - (addr + 5)) + nop


def trampoline_at(page: int, k: int) -> int:
    return page + SLOT + TRAMPOLINE * k


def free_near(maps: list[tuple[int, int]], lo: int, hi: int, size: int) -> int | None:
    """A page-aligned free range of `size` bytes from which every address in [lo, hi) is
    within a rel32 jump: below the lowest mapping near lo first, else above."""
    spans = sorted(maps)
    # candidates: just below each mapping start, just above each mapping end
    cands = [s - size for s, _ in spans] + [e for _, e in spans]
    best: int | None = None
    for c in cands:
        c &= ~4095
        if c <= 0x10000 or c + size > 0x7FFF_FFFF_F000:
            continue
        if max(hi - c, c + size - lo) > MAX_REACH:
            continue
        if any(s < c + size and c < e for s, e in spans):
            continue
        if best is None or abs(c - lo) < abs(best - lo):
            best = c
    return best
