"""Count executions of one instruction in the kernel (perf_event_open, PERF_TYPE_BREAKPOINT).

A debug-register breakpoint owned by perf counts each time a thread reaches an address without
stopping it (a few microseconds per hit, against tens for a ptrace stop), and with a sample
period of k it can stop the thread at exactly the k-th arrival: the overflow sends a signal
that the tracer sees as a signal-delivery-stop before the instruction runs. Reverse searches
use it to count breakpoint hits instead of stopping at each.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from tracee import ptrace_api as api

PERF_TYPE_BREAKPOINT = 5
HW_BREAKPOINT_X = 4
ATTR_SIZE = 128
# perf_event_attr flag bits
DISABLED, EXCLUDE_KERNEL, EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_RESET = 0x2400, 0x2403
F_SETSIG, F_SETOWN_EX, F_OWNER_TID = 10, 15, 0


class HwCounterError(OSError):
    """The kernel refused a breakpoint counter (no free debug register, no permission)."""


def _attr(addr: int, period: int) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQQQQQ", buf, 0, PERF_TYPE_BREAKPOINT, ATTR_SIZE, 0, period, 0, 0,
                     EXCLUDE_KERNEL | EXCLUDE_HV)
    # wakeup_events (u32) at 48, bp_type (u32) at 52, bp_addr at 56, bp_len at 64
    struct.pack_into("<IIQQ", buf, 48, 1 if period else 0, HW_BREAKPOINT_X, addr, 8)
    return buf


class HwCounter:
    """Counts arrivals of thread `tid` at `addr`; with `stop_at=k`, also stops the thread
    (signal `sig`) when the count reaches k."""

    def __init__(self, tid: int, addr: int, stop_at: int = 0, sig: int = 0) -> None:
        attr = _attr(addr, stop_at)
        try:
            self.fd = api.perf_event_open(attr, tid)
        except OSError as e:
            raise HwCounterError(e.errno, (f"perf_event_open breakpoint at {addr:#x}: "
                                        f"{e.strerror}")) from None
        self.addr = addr
        if stop_at:
            fcntl.fcntl(self.fd, F_SETSIG, sig)
            fcntl.fcntl(self.fd, F_SETOWN_EX, struct.pack("<ii", F_OWNER_TID, tid))
            fcntl.fcntl(self.fd, fcntl.F_SETFL, os.O_ASYNC)

    def count(self) -> int:
        return int.from_bytes(os.read(self.fd, 8), "little")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def has_pmu() -> bool:
    """Whether the CPU's performance-monitoring unit is visible (most VMs: no). rr needs its
    retired-branch counter; relive only records whether it was there."""
    base = "/sys/bus/event_source/devices"
    return any(os.path.exists(f"{base}/{name}") for name in ("cpu", "cpu_core", "cpu_atom"))
