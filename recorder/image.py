"""What the recorder does at an exec stop: prepare the new image and describe it for replay.

Order matters: map the relive page and hide the vDSO first, then snapshot the mappings and the
memory replay cannot get from file copies (stack, auxv, bss, the loader's writable pages).
"""
from __future__ import annotations

import os
import stat

from recorder import go_patch
from recorder.code_patches import CodePatcher
from recorder.sysbuf_record import SyscallBuffer
from tracee import remote
from tracee.address_space import (PROT_WRITE, AddressSpace, Flag, Mapping, mapping_info,
                                  read_proc_maps)
from tracee.auxv import hide_vdso
from tracee.spawn import ignored_signals
from tracee.task import Task
from tracefile.records import Event, Kind, MemoryWrite
from tracefile.writer import TraceWriter

KERNEL_MAPPINGS = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]")


def file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def snapshot_image(task: Task, writer: TraceWriter, argv: list[str], patcher: CodePatcher,
                   buffer: SyscallBuffer
                   ) -> tuple[Event, AddressSpace, list[tuple[tuple[int, int], str]]]:
    """Map the relive page, hide the vDSO, patch rdrand out of the code (recorder.code_patches)
    and build the EXEC event of a fresh image.

    Returns the event (seq unassigned), the logical address space, and the (dev, inode) and
    file id of every mapped file (so writes to a mapped file can be noticed later)."""
    remote.map_relive_page(task)
    buffer.map_hook(task)
    auxv = hide_vdso(task)
    go = go_patch.patch(task, writer, buffer)  # a Go binary's own sites (before the snapshot)
    pid = task.pid
    space = AddressSpace()
    files: list[tuple[tuple[int, int], str]] = []
    writes = []
    for m in read_proc_maps(pid):
        if m.path in KERNEL_MAPPINGS:
            continue
        if m.start == remote.RELIVE_PAGE:
            space.map(Mapping(start=m.start, end=m.end, prot=m.prot, flags=Flag.RELIVE_PAGE))
            continue
        file_id = None
        if m.path and m.path.startswith("/"):
            source = f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}"
            ident = file_identity(source)
            if ident is not None:
                file_id = writer.add_file(source, name=_clean(m.path))
                files.append((ident, file_id))
        mapping = Mapping(start=m.start, end=m.end, prot=m.prot, shared=m.shared,
                          offset=m.offset, path=_clean(m.path) if m.path else None,
                          file_id=file_id, flags=Flag.SYSBUF if go and m.start == go[0]
                          else buffer.flags_at(m.start))
        space.map(mapping)
        if (file_id is None or m.prot & PROT_WRITE) and not buffer.fresh(m.start):
            data = task.mem.read_upto(m.start, m.size)
            if file_id is not None or data.strip(b"\0"):
                writes.append(MemoryWrite(addr=m.start, data=data))
    if go:
        writes += [MemoryWrite(addr=a, data=d) for a, d in go[1]]
    exe = _clean(os.readlink(f"/proc/{pid}/exe"))
    exe_id = writer.add_file(f"/proc/{pid}/exe", name=_clean(exe))
    info = {"maps": [mapping_info(m) for m in space], "exe": exe, "exe_id": exe_id,
            "auxv": auxv.hex(), "argv": argv, "ignored": ignored_signals(task.pid)}
    patched = patcher.patch(task, space)
    if patched:
        info["rdrand"] = patched
    event = Event(seq=-1, tid=task.tid, kind=Kind.EXEC, regs=task.regs_bytes(),
                  writes=tuple(writes), info=info)
    return event, space, files


def _clean(path: str) -> str:
    """A path as /proc shows it, without the kernel's " (deleted)" note."""
    return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path
