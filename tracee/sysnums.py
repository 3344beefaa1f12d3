"""Syscall numbering for x86-64, shared by the recorder and the replayer.

Names come from python-ptrace's table, restricted to the native x86-64 numbers (its table also
lists x32 numbers >= 512 under the same names, which would corrupt a name -> number map), with
the names it lacks or spells the old way corrected from the kernel's asm/unistd_64.h.
"""
from __future__ import annotations

import importlib.util
import os


def _python_ptrace_names() -> dict[int, str]:
    """python-ptrace's x86-64 name table, loaded from its own file: importing it as
    `ptrace.syscall.linux.x86_64` runs the `ptrace.syscall` package, which imports most of
    python-ptrace (~15 ms at every relive start) for one dict."""
    spec = importlib.util.find_spec("ptrace")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("python-ptrace is not installed (pip install python-ptrace)")
    path = os.path.join(spec.submodule_search_locations[0], "syscall", "linux", "x86_64.py")
    leaf = importlib.util.spec_from_file_location("_relive_ptrace_x86_64_names", path)
    if leaf is None or leaf.loader is None:
        raise ImportError(f"python-ptrace's syscall table is missing: {path}")
    module = importlib.util.module_from_spec(leaf)
    leaf.loader.exec_module(module)
    names: dict[int, str] = module.SYSCALL_NAMES
    return names


_NAMES = _python_ptrace_names()

_CORRECTIONS = {
    283: "timerfd_create", 441: "epoll_pwait2", 442: "mount_setattr", 443: "quotactl_fd",
    444: "landlock_create_ruleset", 445: "landlock_add_rule", 446: "landlock_restrict_self",
    447: "memfd_secret", 448: "process_mrelease", 449: "futex_waitv",
    450: "set_mempolicy_home_node", 451: "cachestat", 452: "fchmodat2",
    453: "map_shadow_stack", 454: "futex_wake", 455: "futex_wait", 456: "futex_requeue",
    457: "statmount", 458: "listmount", 459: "lsm_get_self_attr", 460: "lsm_set_self_attr",
    461: "lsm_list_modules", 462: "mseal",
}

NAME_OF: dict[int, str] = {nr: name for nr, name in _NAMES.items() if nr < 512}
NAME_OF.update(_CORRECTIONS)
NUMBER_OF: dict[str, int] = {name: nr for nr, name in NAME_OF.items()}


def name_of(nr: int) -> str:
    """The syscall's name, or `syscall_<nr>` for numbers the table does not know."""
    return NAME_OF.get(nr, f"syscall_{nr}")


def nr(name: str) -> int:
    return NUMBER_OF[name]
