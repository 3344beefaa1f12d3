"""A digest of a process's writable memory: what identifies a point in a loop that registers
alone do not (the recorder stores it, replay compares it). Shared by both sides."""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from tracee.address_space import PROT_WRITE, read_proc_maps
from tracee.remote import RELIVE_PAGE

KERNEL_MAPS = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]")


def memory_digest(pid: int, read: Callable[[int, int], bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for m in read_proc_maps(pid):
        if m.prot & PROT_WRITE and m.path not in KERNEL_MAPS and m.start != RELIVE_PAGE:
            h.update(struct.pack("<QQ", m.start, m.end))
            h.update(read(m.start, m.size))
    return h.hexdigest()
