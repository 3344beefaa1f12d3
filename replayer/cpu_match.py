"""Which CPU a replay runs on, and whether it can give the program the recorded cpuid.

A trace recorded with CPUID faulting (recorder.cpuid_record) holds every cpuid result:
it replays on any CPU, but only where cpuid can be made to fault too (else the program's
cpuid would run natively, unrecorded): refused before the replay starts. A trace recorded
without it holds the CPU it was recorded on (number and model): the replay pins itself to
that CPU by default, and says before it starts when it cannot (the CPU is not available,
RELIVE_CPU chose another, the model differs): the APIC id and other per-CPU values the
program may have kept from cpuid would differ, and the replay may diverge. Older traces
say nothing of their CPU: the replay runs where it starts, as they always did. Recorded with
faulting, the replay starts on the CPU it runs on and moves off it when other jobs crowd it
(replayer.cpu_pin).
"""
from __future__ import annotations

import logging
import os

from tracee import cpuid, fastloop
from tracee.spawn import pin_to_one_cpu

from replayer.errors import ReplayError

log = logging.getLogger(__name__)


def pin_replay(meta: dict[str, object]) -> int | None:
    """Pin this process (and the replayed one) for the trace with metadata `meta`; returns
    the CPU, None if not pinned (RELIVE_CPU=none)."""
    mode = meta.get("cpuid")
    if mode == "faulting":
        if not cpuid.faulting_available():
            raise ReplayError(
                "this trace was recorded with CPUID faulting (relive recorded each cpuid's "
                "result), which this machine's CPU does not offer"
                + (" or RELIVE_CPUID_FAULTING=0 turns off" if os.environ.get(cpuid.FORCE_OFF)
                   else "") + ": the program's cpuid would run unrecorded and the replay "
                "would diverge; replay it on a machine with cpuid_fault in /proc/cpuinfo")
        fastloop.trap_cpuid(True)
        return pin_to_one_cpu()
    if mode != "native":
        return pin_to_one_cpu()
    recorded = meta.get("cpu_number")
    cpu = pin_to_one_cpu(prefer=recorded if isinstance(recorded, int) else None)
    problems = []
    if not isinstance(recorded, int):
        problems.append("it was recorded without pinning (RELIVE_CPU=none), so its cpuid "
                        "results came from whichever CPU it ran on")
    elif cpu != recorded:
        why = ("RELIVE_CPU=none" if cpu is None else f"RELIVE_CPU={cpu}"
               if os.environ.get("RELIVE_CPU") else "that CPU is not available here")
        problems.append(f"it was recorded on CPU {recorded} and replays on "
                        f"{'any CPU' if cpu is None else f'CPU {cpu}'} ({why})")
    want, have = meta.get("cpu_signature"), cpuid.signature()
    if isinstance(want, dict) and want != have:
        problems.append(f"it was recorded on a {_model(want)}, this is a {_model(have)}")
    if problems:
        log.warning("this trace was recorded without CPUID faulting and %s: values the "
                    "program took from cpuid (the APIC id, ...) may differ and the replay "
                    "diverge", "; ".join(problems))
    return cpu


def may_move(meta: dict[str, object]) -> bool:
    """May the replay move to another CPU while it runs (replayer.cpu_pin)? Only where
    nothing the program sees depends on the CPU (cpuid recorded) and RELIVE_CPU did not
    choose one."""
    return meta.get("cpuid") == "faulting" and not os.environ.get("RELIVE_CPU")


def _model(sig: dict[str, object]) -> str:
    """A CPU signature (tracee.cpuid.signature) for a message; a trace's may be anything."""
    eax = sig.get("leaf1_eax")
    family = f"{eax:#x}" if isinstance(eax, int) else "?"
    return f"{str(sig.get('model'))[:80]} ({str(sig.get('vendor'))[:16]}, cpuid 1: {family})"
