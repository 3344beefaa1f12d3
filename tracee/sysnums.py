"""Syscall numbering for x86-64, shared by the recorder and the replayer.

Names come from python-ptrace's table (kept behind this module so nothing else imports its
object layer); a few numbers the tool itself injects are spelled out as constants.
"""
from __future__ import annotations

from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES as _NAMES

NAME_OF: dict[int, str] = dict(_NAMES)
NUMBER_OF: dict[str, int] = {name: nr for nr, name in NAME_OF.items()}


def name_of(nr: int) -> str:
    """The syscall's name, or `syscall_<nr>` for numbers the table does not know."""
    return NAME_OF.get(nr, f"syscall_{nr}")


def nr(name: str) -> int:
    return NUMBER_OF[name]
