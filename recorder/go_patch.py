"""At an exec of a Go binary: its own `syscall` sites jump to the in-process hook
(tracee.go_sites says which sites and how).

The kernel mapped the binary before the first instruction ran, so the patch is made at the
exec stop, before the EXEC event is snapshot (recorder.image): the trampoline page (flagged
SYSBUF, so replayer.sysbuf_view finds it) and the hook stack (in relive's area, left out of
memory digests) are then mappings of the event like the hook's own, their bytes its writes,
and the patched sites are writes of the event too, so replay rebuilds exactly the same
image. Only when the hook will run untraced (the syscall buffer on and the seccomp filter
about to be in); otherwise, and for binaries that are not Go or not known (tracee.go_sites:
stripped, another version), today's path: every call traced, said in the debug log.
"""
from __future__ import annotations

import logging
import os
import struct
from typing import TYPE_CHECKING

from tracee import go_sites, remote, seccomp, sysbuf, syscall_sites
from tracee.address_space import PROT_EXEC, PROT_READ, PROT_WRITE, read_proc_maps
from tracee.task import MemoryAccessError

if TYPE_CHECKING:
    from recorder.sysbuf_record import SyscallBuffer
    from tracee.task import Task
    from tracefile.writer import TraceWriter

log = logging.getLogger(__name__)
NOTE = "go-sites1"  # the file cache's name for site scans


def is_go(path: str) -> bool:
    """Has the ELF file a .go.buildinfo section? (its section headers only: every exec of
    every program asks)"""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:5] != b"\x7fELF\x02":
                return False
            shoff, = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
            if not shoff or shentsize != 64 or not 0 < shnum <= 4096 or shstrndx >= shnum:
                return False
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            _, _, _, _, str_off, str_size = struct.unpack_from("<IIQQQQ", table,
                                                               shstrndx * shentsize)
            f.seek(str_off)
            names = f.read(min(str_size, 1 << 16))
    except (OSError, struct.error):
        return False
    return b".go.buildinfo\0" in names


def patch(task: Task, writer: TraceWriter, buffer: SyscallBuffer
          ) -> tuple[int, list[tuple[int, bytes]]] | None:
    """Patch the freshly exec'd Go image of `task`: (the trampoline page's address, the
    sites' writes), or None (not a Go binary, nothing patched)."""
    hook = buffer.hook
    exe = f"/proc/{task.pid}/exe"
    if hook is None or not sysbuf.enabled() or not seccomp.enabled() or not is_go(exe):
        return None
    name = os.readlink(exe)
    file_id = writer.add_file(exe, name=name.removesuffix(" (deleted)"))  # (as image.py)
    sites = _sites(writer, file_id)
    if not sites:
        return None
    try:
        with open(writer.copy_of(file_id), "rb") as f:
            data = f.read(0x4000)  # the ELF header and the program headers
        loads = [(o, v, size) for p_type, _, o, v, size in _segments(data) if p_type == 1]
    except (OSError, struct.error):
        return None
    et_dyn = struct.unpack_from("<H", data, 0x10)[0] == 3
    maps = read_proc_maps(task.pid)
    base = 0
    if et_dyn:
        first = min(v for _, v, _ in loads) & ~4095
        exe_maps = [m for m in maps if m.offset == 0 and m.path and os.path.realpath(
            m.path) == os.path.realpath(exe)]
        if not exe_maps:
            log.debug("Go binary's mapping not found: its syscalls stay traced")
            return None
        base = exe_maps[0].start - first
    located = []
    for off, length in sites:
        vaddr = next((v + off - o for o, v, size in loads if o <= off < o + size), None)
        if vaddr is not None:
            located.append((base + vaddr, length))
    try:
        here = [(a, task.mem.read(a, n)) for a, n in located]
    except MemoryAccessError:
        return None
    here = [(a, code) for a, code in here if go_sites.matches(code)]
    if not here or not loads:
        return None
    size = go_sites.page_size_for(len(here))
    page = syscall_sites.free_near([(m.start, m.end) for m in maps], here[0][0],
                                   here[-1][0] + 9, size)
    if page is None:
        log.debug("no room for trampolines near %#x: Go's calls stay traced", here[0][0])
        return None
    private = remote.MAP_PRIVATE | remote.MAP_ANONYMOUS | remote.MAP_FIXED_NOREPLACE
    try:
        remote.mmap_in_tracee(task, page, size, PROT_READ | PROT_EXEC, private)
        remote.mmap_in_tracee(task, go_sites.HOOK_STACK, go_sites.HOOK_STACK_SIZE,
                              PROT_READ | PROT_WRITE, private)
    except remote.InjectionError as e:
        log.debug("Go's trampolines not mapped (%s): its calls stay traced", e)
        return None
    task.mem.write(page, go_sites.trampolines(page, here, hook.entry))
    writes = []
    for k, (addr, code) in enumerate(here):
        jump = go_sites.jump(addr, go_sites.trampoline_at(page, k), len(code))
        if task.mem.write(addr, jump) == len(jump):
            writes.append((addr, jump))
    log.debug("%d syscall sites of the Go binary %s jump to the hook (trampolines at %#x)",
              len(writes), name, page)
    return page, writes


def _sites(writer: TraceWriter, file_id: str) -> list[tuple[int, int]]:
    kept = writer.cached_note(NOTE, file_id)
    if kept is not None:
        try:
            return [(int(a), int(n)) for a, n in (pair.split(":") for pair in kept.split())]
        except ValueError:
            pass
    found = go_sites.scan(writer.copy_of(file_id).read_bytes())
    if not found.sites:
        log.debug("Go binary's syscalls stay traced: %s", found.why)
    else:
        log.debug("Go binary: %s", found.why)
    writer.keep_note(NOTE, file_id, " ".join(f"{a}:{n}" for a, n in found.sites))
    return found.sites


def _segments(data: bytes) -> list[tuple[int, int, int, int, int]]:
    from tracee import elf
    return elf.segments(data)
