"""How the syscall buffer's hook (sysbuf_hook.c) is compiled: gcc's flags and where the hook
lies relative to the relive page. Imports nothing, so setup.py can load it by path and build
the hook when the package is installed (its dependencies are not there yet); tracee.sysbuf
builds it the same way at first use where the install did not."""
from __future__ import annotations

CODE_OFF = 0x1_0000  # the hook's code and table, from the relive page (tracee.remote)
BUF_OFF = 0x2_0000   # its buffer
CFLAGS = ["-nostdlib", "-fPIC", "-fno-stack-protector", "-O2", "-mgeneral-regs-only",
          "-fno-jump-tables", "-ffreestanding", "-fno-tree-loop-distribute-patterns",
          "-fno-asynchronous-unwind-tables", "-w"]


def gcc_flags(relive_page: int) -> list[str]:
    """gcc's flags for an object file of the hook beside a relive page at `relive_page`."""
    return [*CFLAGS, f"-DRELIVE_HOOK_CODE={relive_page + CODE_OFF:#x}",
            f"-DRELIVE_HOOK_BUF={relive_page + BUF_OFF:#x}", "-c"]
