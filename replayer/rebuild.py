"""Rebuild a replayed process's address space from a trace's EXEC record.

Replay never trusts what the kernel laid out: after exec'ing the trace's copy of the program it
unmaps everything but the relive page, maps every recorded region at its recorded address
(file-backed ones from the trace's copies, never the originals), writes the recorded contents
(stack, auxv, writable data) and sets the recorded registers.
"""
from __future__ import annotations

from tracee import remote
from tracee.address_space import AddressSpace, Flag, Mapping, mapping_from_info, read_proc_maps
from tracee.cpuid import make_cpuid_fault
from tracee.remote import (MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED,
                           PROT_WRITE, checked, inject_syscall, map_relive_page, mmap_in_tracee,
                           open_in_tracee)
from tracee.task import Task
from tracefile.reader import TraceReader
from tracefile.records import Event

from replayer.errors import ReplayDivergence, ReplayError

UNMAPPABLE = ("[vsyscall]",)
O_RDWR = 2


def clear_of_relive(start: int, end: int) -> None:
    """A recorded mapping must not land on this relive's page (tracee.remote: a trace recorded
    before it moved, or with RELIVE_PAGE_ADDRESS, may hold a mapping there). The syscall
    buffer's mappings beside it are the recorded program's: replay maps them from the trace."""
    low = remote.RELIVE_PAGE
    if start < low + remote.PAGE_SIZE and low < end:
        raise ReplayError(f"the trace maps {start:#x}-{end:#x}, where this relive keeps its "
                          f"page; replay it with RELIVE_PAGE_ADDRESS set to the trace's "
                          f"relive_page (relive info)")


def map_file(task: Task, reader: TraceReader, m: Mapping, flags: int = 0) -> None:
    """Map the trace's copy of a file at the mapping's address (always private: a replay must
    never write back into the trace)."""
    assert m.file_id is not None
    clear_of_relive(m.start, m.end)
    fd = open_in_tracee(task, str(reader.file_path(m.file_id)))
    try:
        mmap_in_tracee(task, m.start, m.size, m.prot, MAP_PRIVATE | MAP_FIXED | flags, fd,
                       m.offset)
    finally:
        inject_syscall(task, remote.NR_CLOSE, fd)


def map_shared_copy(task: Task, path: str, m: Mapping) -> None:
    """Map `path` (replay's own copy of a file the program mapped MAP_SHARED) shared."""
    clear_of_relive(m.start, m.end)
    fd = open_in_tracee(task, path, O_RDWR)
    try:
        mmap_in_tracee(task, m.start, m.size, m.prot, MAP_SHARED | MAP_FIXED, fd, m.offset)
    finally:
        inject_syscall(task, remote.NR_CLOSE, fd)


def map_anonymous(task: Task, m: Mapping, extra: int = 0) -> None:
    clear_of_relive(m.start, m.end)
    kind = MAP_SHARED if m.shared else MAP_PRIVATE
    grows = MAP_GROWSDOWN if m.path == "[stack]" else 0
    mmap_in_tracee(task, m.start, m.size, m.prot, kind | MAP_ANONYMOUS | MAP_FIXED | grows | extra)


def write_memory(task: Task, event: Event) -> None:
    """Apply an event's recorded writes; exact ones must land in full."""
    for w in event.writes:
        done = task.mem.write(w.addr, w.data)
        if done != len(w.data):
            done += _write_shared_read_only(task, w.addr + done, w.data[done:])
        if done != len(w.data) and not w.conservative:
            raise ReplayDivergence(
                event=event.seq, tid=event.tid,
                what=f"recorded write of {len(w.data)} bytes at {w.addr:#x} landed only "
                     f"{done} bytes (memory not mapped in replay)")


def _write_shared_read_only(task: Task, addr: int, data: bytes) -> int:
    """/proc/PID/mem writes read-only private pages, but not a read-only MAP_SHARED mapping
    of a file (replay's own copy: map_shared_copy), whose pages the recorded program's
    pwrite changed through its descriptor (LMDB maps its database so): made writable for
    the write, then as it was. Returns the bytes written."""
    done = 0
    while done < len(data):
        here = addr + done
        m = next((m for m in read_proc_maps(task.pid) if m.start <= here < m.end), None)
        if m is None or not m.shared or m.prot & PROT_WRITE:
            break
        if inject_syscall(task, remote.NR_MPROTECT, m.start, m.size, m.prot | PROT_WRITE):
            break
        try:
            wrote = task.mem.write(here, data[done:done + m.end - here])
        finally:
            checked(inject_syscall(task, remote.NR_MPROTECT, m.start, m.size, m.prot),
                    "mprotect")
        done += wrote
        if here + wrote < min(m.end, addr + len(data)):
            break
    return done


def rebuild(task: Task, reader: TraceReader, event: Event) -> AddressSpace:
    """At an exec stop: make the address space exactly the recorded one."""
    map_relive_page(task)
    if event.info.get("cpuid") == "fault":  # as when recorded: cpuid traps (tracee.cpuid)
        make_cpuid_fault(task)
    for m in read_proc_maps(task.pid):
        if m.start != remote.RELIVE_PAGE and m.path not in UNMAPPABLE:
            checked(inject_syscall(task, remote.NR_MUNMAP, m.start, m.size), "munmap")
    space = AddressSpace()
    for info in event.info["maps"]:
        m = mapping_from_info(info)
        space.map(m)
        if m.flags & Flag.RELIVE_PAGE:
            continue
        if m.file_id:
            map_file(task, reader, m)
        else:
            map_anonymous(task, m)
        if not m.prot & PROT_WRITE:
            pass  # /proc/PID/mem writes reach read-only pages too
    write_memory(task, event)
    task.set_regs_from(event.regs)
    task.flush_regs()
    return space
