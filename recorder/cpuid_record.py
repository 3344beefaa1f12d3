"""Recording cpuid: its results where the CPU can make it fault, the recording CPU where not.

With CPUID faulting (tracee.cpuid), every exec'd image gets it switched on before its first
instruction; a cpuid then stops the thread with SIGSEGV, and the recorder runs cpuid itself
(it is pinned to the tracee's CPU, so the APIC id is the one the program would have read),
gives the program the values and records a CPUID event (replay hands back the same values
on any CPU). The program's own arch_prctl(ARCH_GET_CPUID / ARCH_SET_CPUID) sees its own
flag, not relive's: answered from a per-thread flag (inherited by clone and fork, reset by
exec, as the kernel's), and a cpuid of a thread that asked for faulting gets its SIGSEGV,
recorded as a fault ("sync") that recurs in replay by itself.

Without faulting (the CPU lacks it, or RELIVE_CPUID_FAULTING=0) cpuid runs natively: the
trace keeps the CPU it was recorded on (number and model) and replay runs there by default
(replayer.cpu_match). The program's ARCH_SET_CPUID then fails with ENODEV, as on a CPU
without faulting, so replay need not reproduce a kernel setting.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tracee import cpuid
from tracefile.records import Kind

if TYPE_CHECKING:
    from recorder.session import RecordedTask, Recorder


class CpuidRecorder:
    def __init__(self, recorder: Recorder, *, faulting: bool) -> None:
        self.rec = recorder
        self.faulting = faulting
        self._program_faults: set[int] = set()  # tids that asked for faulting themselves

    def meta(self, pinned: int | None) -> dict[str, object]:
        """What the trace keeps about the recording CPU."""
        return {"cpuid": "faulting" if self.faulting else "native", "cpu_number": pinned,
                "cpu_signature": cpuid.signature()}

    def on_exec(self, t: RecordedTask) -> dict[str, object]:
        """At an exec stop, relive page mapped: make cpuid fault in the new image. Returns
        what the EXEC event notes (replay does the same)."""
        self._program_faults.discard(t.task.tid)
        if not self.faulting:
            return {}
        cpuid.make_cpuid_fault(t.task)
        return {"cpuid": "fault"}

    def on_clone(self, parent: int, child: int) -> None:
        if parent in self._program_faults:
            self._program_faults.add(child)

    def forget(self, tid: int) -> None:
        self._program_faults.discard(tid)

    def arch_prctl(self, tid: int, args: tuple[int, ...]) -> int | None:
        """The result of the program's ARCH_GET_CPUID / ARCH_SET_CPUID (not run), or None
        for the other arch_prctl codes."""
        code = args[0] & 0xFFFF_FFFF
        if code == cpuid.ARCH_GET_CPUID:
            return 0 if tid in self._program_faults else 1
        if code != cpuid.ARCH_SET_CPUID:
            return None
        if not self.faulting:
            return -cpuid.ENODEV
        if args[1]:
            self._program_faults.discard(tid)
        else:
            self._program_faults.add(tid)
        return 0

    def emulate(self, t: RecordedTask) -> bool:
        """At a SIGSEGV: a cpuid that faulted because of relive? Then answer and record it."""
        task = t.task
        if not self.faulting or t.task.tid in self._program_faults:
            return False
        regs = task.regs
        if task.mem.read_upto(regs.rip, 2) != cpuid.CPUID:
            return False
        t.exit_at = None
        before = task.regs_bytes()
        leaf, subleaf = regs.rax & 0xFFFF_FFFF, regs.rcx & 0xFFFF_FFFF
        values = cpuid.run_cpuid(leaf, subleaf)
        cpuid.emulate(task, values)
        self.rec.emit(t, Kind.CPUID, result=leaf, regs=before, info={"out": list(values)})
        self.rec.resume(t)
        return True
