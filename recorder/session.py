"""A record session: run the program under ptrace and write every event it causes.

One loop owns every ptrace call. Each stop is a value; per kind:
  - syscall entry/exit -> a SYSCALL event (registers at entry, result, memory the kernel wrote);
  - exec -> an EXEC event describing the new image (recorder.image);
  - rdtsc/rdtscp trap (PR_SET_TSC) -> an RDTSC event with the value the program got;
  - signals -> SIGNAL events at points replay can find again (recorder.signals);
  - clone/fork/vfork -> a SYSCALL event naming the new task (recorded at the ptrace event,
    before the child runs), then the child is one more task of the run queue;
  - exit -> an EXIT event.
Threads of every process run one at a time (recorder.scheduler); a thread that leaves the CPU
inside a syscall gets an ENTER event, a thread preempted in user code a PREEMPT event
(recorder.preempt), so replay can run the same stretches in the same order.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
import os
import signal

from recorder.blocking import Descriptors, may_block
from recorder.cpu_view import CpuView
from recorder.cpuid_record import CpuidRecorder
from recorder.fastpath import Batch, RecordLoop, Switch, entry_of
from recorder.handoff import MAX_WAITERS
from recorder.errors import UnsupportedError
from recorder.image import snapshot_image
from recorder import robust_list
from recorder.preempt import Preempter
from recorder.scheduler import TIMESLICE, RunQueue
from recorder.scratch import ARG_REGS, Redirect, ScratchAreas, mapping_event_info
from recorder.signals import (SignalRecorder, disposition, has_no_effect,
                              pending_with_effect)
from recorder.syscall_effects import EffectRecorder
from recorder.sysbuf_fds import FdBits
from recorder.sysbuf_record import SyscallBuffer
from tracee import cpuid, fastloop, seccomp, sysbuf
from tracee import ptrace_api as api
from tracee.address_space import AddressSpace
from tracee.spawn import pin_to_one_cpu, spawn
from tracee.stops import EventStop, Exited, Killed, SignalStop, Stop, SyscallStop, decode
from tracee.syscalls import outputs, queries
from tracee.syscalls.rules import Record
from tracee.sysnums import name_of
from tracee.address_space import Flag
from tracee.remote import RELIVE_PAGE, InjectionError
from tracee.task import Memory, MemoryAccessError, Task, kill_tasks
from tracefile.columnar import Columns
from tracefile.records import Event, Kind, MemoryWrite, TaskRecord
from tracefile.writer import SyscallRecord, TraceWriter

log = logging.getLogger(__name__)

ENOSYS = 38
# prctl options that would undo what the recorder set up: answered as if they worked.
PR_SET_TSC, PR_SET_SECCOMP = 26, 22
CLONE_VM, CLONE_VFORK, CLONE_THREAD, CLONE_NEWPID = 0x100, 0x4000, 0x10000, 0x20000000
CLONE_PARENT_SETTID, CLONE_CHILD_SETTID = 0x100000, 0x1000000
# The clone flags fork and vfork stand for.
FORK_FLAGS, VFORK_FLAGS = int(signal.SIGCHLD), CLONE_VM | CLONE_VFORK | int(signal.SIGCHLD)
# A syscall interrupted by PTRACE_INTERRUPT (no signal) is restarted by the kernel.
ERESTART = {-512, -513, -514, -516}
ERESTART_RESTARTBLOCK = -516  # resumed with restart_syscall once the signal is handled
NR_RESTART_SYSCALL = 219
CLONE_EVENTS = (api.Event.CLONE, api.Event.FORK, api.Event.VFORK)
# The futex waits the compiled loop may switch threads at (recorder.handoff): FUTEX_WAIT,
# FUTEX_WAIT_BITSET (private or not, either clock); RELIVE_HANDOFF=0 leaves them to Python.
NR_FUTEX, FUTEX_CMD_MASK, FUTEX_PLAIN_WAITS = 202, 0x7F, (0, 9)
HANDOFF_OFF = os.environ.get("RELIVE_HANDOFF", "1") == "0"


# The two classes below are mutable state with slots, written out rather than dataclasses
# (creating a dataclass costs ~1 ms of start-up: docs/performance.md, "Start-up").

class Entry:
    """A syscall between its entry and exit stops."""
    __slots__ = ("nr", "args", "regs", "fake_result", "done", "redirect", "view")

    def __init__(self, *, nr: int, args: tuple[int, ...], regs: bytes) -> None:
        self.nr = nr
        self.args = args
        self.regs = regs
        self.fake_result: int | None = None
        # Already recorded (exec, clone): its exit stop only resumes the task.
        self.done = False
        self.redirect: Redirect | None = None  # outputs moved to the thread's scratch area
        self.view = False  # what it shows of the CPUs is rewritten at its exit (cpu_view)


class RecordedTask:
    __slots__ = ("task", "space", "entry", "exited", "exit_at", "last_event", "held",
                 "restart_of", "pending", "wants", "in_kernel", "entered", "running_user")

    def __init__(self, *, task: Task, space: AddressSpace) -> None:
        self.task = task
        # Shared by every task of one address space (threads, a vfork child until it execs).
        self.space = space
        self.entry: Entry | None = None
        self.exited = False
        # (rip, rax) at its last syscall's exit: a signal stop that follows with both the
        # same came before any user instruction ran, i.e. right after that syscall (rip
        # alone does not say it: rt_sigreturn returns into loops that come back to it).
        self.exit_at: tuple[int, int] | None = None
        self.last_event = -1
        self.held: list[bytes] = []
        # The call a signal cut short, which the kernel may resume with restart_syscall.
        self.restart_of: Entry | None = None
        # -- scheduling (recorder.scheduler) --
        self.pending: Stop | None = None  # a stop reported while another task ran
        self.wants: tuple[api.Req, int] | None = None  # how to resume it when it runs again
        self.in_kernel = False            # inside a syscall that may block (exit not seen yet)
        self.entered = False              # an ENTER was recorded for the syscall it is in
        self.running_user = False         # resumed into user code (may be interrupted)


class Recorder:
    def __init__(self, writer: TraceWriter, path: str, argv: list[str],
                 env: dict[str, str]) -> None:
        self.writer = writer
        self.path = path
        self.argv = argv
        self.env = env
        self.tasks: dict[int, RecordedTask] = {}
        self.queue = RunQueue()
        self.effects = EffectRecorder(writer, own_outputs=_own_outputs())
        self.signals = SignalRecorder(self)
        self.preempter = Preempter(self)
        self.scratch = ScratchAreas()
        self.descriptors = Descriptors()  # what waits, for recorder.blocking
        self.cpus = CpuView(frozenset(), None)
        self.cpuid = CpuidRecorder(self, faulting=False)
        self.sysbuf = SyscallBuffer(writer)  # in-process recording (tracee.sysbuf)
        self.effects.sysbuf = self.sysbuf
        self.fdbits = FdBits(self.effects.watched_files)  # the hook's regular files
        self.queue.on_leave = self._flush_buffer
        self._info = api.SyscallInfo()
        self.seccomp = False  # the tasks stop at syscalls through tracee.seccomp's filter
        self.seccomp_clocks = True  # ... and the compiled loop answers their clock reads
        # Statuses reaped while waiting for one task: new tasks' first stops (before their
        # parent's clone event) and stops of others, handled by the main loop later.
        self._stashed: dict[int, int] = {}
        self._ppid: dict[int, int] = {}      # pid -> parent pid
        self.root = 0
        self.status = 0
        lib = fastloop.load()
        self.fast = RecordLoop(lib) if lib is not None else None

    # -- events -----------------------------------------------------------------------------
    def emit(self, t: RecordedTask, kind: Kind, **fields: object) -> int:
        if self.sysbuf.on:  # what the thread that ran did without a stop comes first
            self._flush_buffer(self._runner(t))
        seq = self.writer.add(Event(seq=-1, tid=t.task.tid, kind=kind, **fields))  # type: ignore[arg-type]
        t.last_event = seq
        return seq

    def _runner(self, t: RecordedTask) -> RecordedTask:
        """The thread whose records t's address space holds: the one running user code
        there (one at a time; a switch writes the leaving thread's records)."""
        cur = self.queue.current
        return cur if cur is not None and cur.space is t.space else t

    def _flush_buffer(self, t: RecordedTask) -> None:
        """Write the calls t's address space made through the in-process hook since the
        last flush as BUFFERED events of `t`, the thread that ran them."""
        taken = self.sysbuf.take(t.task, t.space)
        if taken:
            t.last_event = self.writer.add_runs(t.task.tid, taken.segments())
            if taken.closes_or_makes():
                self._buffered_fd_calls(t)
            # It ran user code since its last stopped syscall, unless it is stopped right
            # where the last buffered one returned.
            t.exit_at = self.sysbuf.at_return

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Record until the program ends; returns its wait status."""
        native = frozenset(os.sched_getaffinity(0))
        cpu = pin_to_one_cpu()
        if cpu is not None:
            self.writer.avoid_cpu(cpu)  # SQLite's work goes on beside the recording
        self.cpus = CpuView(native, cpu)
        self.cpuid = CpuidRecorder(self, faulting=cpuid.faulting_available())
        fastloop.trap_cpuid(self.cpuid.faulting)
        fastloop.record_seccomp(False)  # (until the filter is in: a former recording's state)
        fastloop.sysbuf_cursor(0, 0)
        self.writer.set_meta(**self.cpuid.meta(cpu))
        self.writer.set_meta(relive_page=RELIVE_PAGE)  # (tracee.remote; absent: the legacy page)
        pid = spawn(self.path, self.argv, self.env)
        self.root = pid
        self._ppid[pid] = os.getpid()
        t = self._add_task(Task(pid, pid, Memory(pid)), AddressSpace())
        self.cpus.add_task(pid, pid, None, None)
        self.writer.put_task(TaskRecord(tid=pid, pid=pid, ppid=os.getpid(),
                                        argv=tuple(self.argv), exe=self.path))
        self._refuse_32_bit(t)
        # (the first image's bitmap is made at its EXEC event, before the filter is in)
        self.fdbits.on = self.sysbuf.hook is not None and seccomp.enabled()
        self._record_exec(t)
        self._install_filter(t)
        self.queue.current = t
        self.resume(t)
        try:
            while self.tasks:
                if self.queue.current is None:
                    nxt = self.queue.pick()
                    if nxt is not None:
                        self._run(nxt)
                        continue
                tid, status = self._next_status()
                t = self.tasks.get(tid)  # type: ignore[assignment]
                if t is None:
                    self._stashed[tid] = status
                    continue
                t.running_user = t.in_kernel = False
                stop = decode(tid, status)
                if t is not self.queue.current and (not _ends_task(stop)
                                                     or self._exit_waits(t, stop)):
                    t.pending = stop
                    self.queue.make_ready(t)
                    cur = self.queue.current
                    if cur is not None and cur.in_kernel:  # it may wait for t: let t run
                        self._leave_cpu(cur)
                    continue
                self.handle(t, stop)
        finally:
            q = self.queue
            log.debug("%d stops handled in Python, %d syscalls recorded by the compiled "
                      "loop, %d thread switches, %d syscalls recorded from the buffer",
                      q.python_stops, q.compiled_calls, q.switches, self.sysbuf.taken)
            self.queue.close()
            self.preempter.jumps.close()
            kill_tasks([t.task for t in self.tasks.values()])
        return self.status

    def _install_filter(self, t: RecordedTask) -> None:
        """The seccomp filter (tracee.seccomp), inherited by every task from now on; without
        it (RELIVE_SYSCALLBUF=0, or refused) every syscall stops twice, as before."""
        if not seccomp.enabled():
            return
        try:
            seccomp.install(t.task, seccomp.UNTRACED + self.sysbuf.untraced())
        except InjectionError as e:
            log.warning("relive: recording without the seccomp filter: %s", e)
            self.fdbits.on = False
            return
        self.seccomp = True
        if self.sysbuf.hook is not None:
            self.sysbuf.on = True
            if self.fast is not None:
                self.fast.sysbuf = True
            self.writer.set_meta(syscallbuf=True)
        t.task.seccomp = True
        self._answer_clocks(t.task.pid, first=True)
        self.writer.set_meta(seccomp=True)

    def _answer_clocks(self, pid: int, *, first: bool = False) -> None:
        """Clock reads are answered by the compiled loop (one stop) while every recorded
        process shares the recorder's clocks (its time namespace): checked for each new
        process and exec'd image."""
        if not (self.seccomp and self.seccomp_clocks):
            return
        same = seccomp.same_clocks(pid)
        if same and not first:
            return
        if not same:
            log.debug("process %d is in another time namespace: its clock reads run", pid)
            self.seccomp_clocks = False
        clocks = queries.numbers(queries.CLOCK_READS) if same else frozenset()
        if not fastloop.record_seccomp(True, clocks):
            if same and fastloop.load() is not None:
                log.warning("relive: the compiled loop cannot answer the catalogue's clock "
                            "reads; they are recorded as they run")
            self.seccomp_clocks = False

    def _add_task(self, task: Task, space: AddressSpace) -> RecordedTask:
        task.seccomp = self.seccomp
        t = RecordedTask(task=task, space=space)
        task.wait_hook = lambda: self.wait_for(t)
        self.tasks[task.tid] = t
        return t

    def _next_status(self) -> tuple[int, int]:
        for tid in self._stashed:
            if tid in self.tasks:
                return tid, self._stashed.pop(tid)
        return self.signals.wait_any()

    def wait_for(self, t: RecordedTask) -> Stop:
        """The next stop of `t`. Other tasks' stops that come first are kept for the main
        loop, except exits, which are let go at once: a thread stopped at its exit keeps its
        process's leader from ever reporting (the wait for `t` would never end)."""
        while True:
            status = self._stashed.pop(t.task.tid, None)
            if status is not None:
                return decode(t.task.tid, status)
            tid, status = api.wait_any()
            if tid == t.task.tid:
                return decode(tid, status)
            other = self.tasks.get(tid)
            stop = decode(tid, status)
            if other is not None and isinstance(stop, EventStop) and stop.event == api.Event.EXIT:
                self._exiting(other)
                other.task.resume(api.Req.CONT)
            else:
                self._stashed[tid] = status

    def _run(self, t: RecordedTask) -> None:
        """Give the CPU to `t`: handle the stop it reported while waiting, or resume it.
        A task killed while it waited (another thread's exit_group) is no longer in that
        stop: it reports its exit next."""
        try:
            if t.pending is not None:
                stop, t.pending = t.pending, None
                self.handle(t, stop)
                return
            request, sig = t.wants or (api.Req.SYSCALL, 0)
            t.wants = None
            t.running_user = True  # first: see `resume`
            t.task.resume(request, sig)
        except api.PtraceError as e:
            if e.errno != errno.ESRCH:
                raise
            log.debug("task %d died while it waited for the CPU", t.task.tid)
            self.queue.remove(t)

    def resume(self, t: RecordedTask, sig: int = 0, *, in_syscall: bool = False,
               mid_user: bool = False) -> None:
        """Let `t` go on, unless its timeslice is over and another task is ready: then it
        waits in the run queue, stopped where it is (an exact point for replay). A task
        stopped in user code where no event was recorded (`mid_user`: a signal it holds
        for later, one without effect) goes on: replay could not find that point, and the
        other tasks' events would replay before the user code it ran up to there."""
        if t is self.queue.current and (in_syscall or mid_user
                                        or not self.queue.should_switch()):
            # Marked before it goes: the timeslice's end (SIGALRM) interrupts the task only
            # when this says it runs user code, and an end that came between the resume and
            # the mark would never interrupt it (a thread spinning on another would keep the
            # CPU for good). Interrupted just before it goes, it stops as soon as it goes.
            t.running_user = not in_syscall
            t.task.resume(api.Req.SYSCALL, sig)  # never parked at an entry without ENTER
            return
        t.wants = (api.Req.SYSCALL, sig)
        self.queue.make_ready(t)

    def handle(self, t: RecordedTask, stop: Stop) -> None:
        self.queue.python_stops += 1
        if self.sysbuf.on:  # before whatever this stop records (an exec drops the buffer)
            self._flush_buffer(self._runner(t))
        match stop:
            case SyscallStop():
                info = api.get_syscall_info(t.task.tid, self._info)
                if info.op == api.SYSCALL_INFO_NONE:
                    # No longer in that stop: killed while the stop waited to be handled
                    # (another thread's exit_group); its exit event comes next.
                    log.debug("task %d left its syscall stop unhandled", t.task.tid)
                    return
                if info.arch != api.AUDIT_ARCH_X86_64:
                    raise self._not_64_bit(t, info)
                if info.op != api.SYSCALL_INFO_EXIT:  # an entry or seccomp stop
                    self.on_entry(t, info.u[0], tuple(info.u[1:7]))
                else:
                    self.on_exit(t, api.signed(info.u[0]), info.instruction_pointer)
            case SignalStop(signal=sig):
                self.signals.on_signal_stop(t, sig)
            case EventStop(event=api.Event.EXEC):
                self.on_exec(t)
            case EventStop(event=api.Event.EXIT):
                self.on_exit_event(t)
            case EventStop(event=api.Event.STOP):
                if not self._stepped_past_buffered_return(t):
                    self.signals.on_interrupt(t)
            case EventStop(event=ev) if ev in CLONE_EVENTS:
                self.on_clone(t, ev)
            case EventStop(event=ev):
                raise UnsupportedError(f"ptrace event {ev.name} is not supported by relive")
            case Exited() | Killed():
                self.on_gone(t, stop)

    def _stepped_past_buffered_return(self, t: RecordedTask) -> bool:
        """Interrupted right where the hook's untraced `syscall` returned, the thread still
        shows that call (orig_rax), which replay cannot give a point it reaches by running
        or jumping: step it over the instruction that stores the result first. True if
        that step met another stop, which was handled instead."""
        hook = self.sysbuf.hook
        if not self.sysbuf.on or hook is None or t.task.regs.rip != hook.untraced_insn + 2:
            return False
        stop = t.task.step()
        if (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
                and t.task.regs.rip != hook.untraced_insn + 2):
            t.exit_at = None
            return False
        self.handle(t, stop)
        return True

    # -- syscalls ---------------------------------------------------------------------------
    def on_entry(self, t: RecordedTask, nr: int, args: tuple[int, ...]) -> None:
        if nr == NR_RESTART_SYSCALL and t.restart_of is not None:
            nr, args = self._call_again(t, t.restart_of)
        t.restart_of = None
        t.exit_at = None
        self.preempter.made_syscall(t)
        if t.held:
            self.signals.deliver_held_before_syscall(t)
            return
        name = name_of(nr)
        entry = Entry(nr=nr, args=args, regs=t.task.regs_bytes())
        call = queries.entry(name)
        if call is None:
            raise UnsupportedError(f"the program called syscall {name} (number {nr}), which "
                                   "relive cannot record yet")
        if call.record is Record.FAKE_ENOSYS:
            entry.fake_result = -ENOSYS
        elif name == "prctl" and args[0] in (PR_SET_TSC, PR_SET_SECCOMP):
            entry.fake_result = 0 if args[0] == PR_SET_TSC else -22
        elif name == "arch_prctl":
            entry.fake_result = self.cpuid.arch_prctl(t.task.tid, args)
        elif (view := self.cpus.on_entry(t.task, name, args)) is not None:
            entry.fake_result = view.answer
            entry.view = view.answer is None
        if name == "clone":
            _check_clone_flags(args[0])
        elif name in queries.EXECS and t.task.tid != t.task.pid:
            raise UnsupportedError(f"thread {t.task.tid}, not the main thread of its process, "
                                   "called execve (the kernel would give it the main thread's "
                                   "id): not supported by relive yet")
        # Only another task can end a wait, and only when there is one does it matter.
        blocks = (entry.fake_result is None and not entry.view and len(self.tasks) > 1
                  and may_block(self.descriptors, t.task.pid, t.task.tid, t.task.mem, call,
                                args))
        if entry.fake_result is not None:
            t.task.set_reg("orig_rax", -1)  # the kernel skips the call
        elif blocks and self._shares_memory(t) and not self._use_scratch(t, entry, name):
            return  # the call is made again once its scratch area exists
        if name in queries.ENDS_TASK:  # no exit stop follows: record it now
            self.emit(t, Kind.SYSCALL, nr=nr, result=0, regs=entry.regs)
        t.entry = entry
        t.in_kernel = blocks and not self._writes_own_output_at_once(t, name, args)
        if t.in_kernel and self.queue.ready:
            self._enter_blocking(t)
            return
        self.resume(t, in_syscall=True)

    def _writes_own_output_at_once(self, t: RecordedTask, name: str,
                                   args: tuple[int, ...]) -> bool:
        """Is this a write to relive's stdout or stderr that no other task must overtake (the
        user sees those in the order they complete)? Not a copy from a descriptor that may
        wait (grep -c ... >/dev/null drains its pipe with splice into /dev/null): it writes
        nothing before its input comes, and only another task can send that (a hang)."""
        if not self.effects.writes_own_output(t.task.tid, name, args):
            return False
        copy = queries.COPIERS.get(name)
        return copy is None or not self.descriptors.fd_waits(
            t.task.pid, t.task.tid, queries.int_arg(args[copy.in_fd]))

    def _shares_memory(self, t: RecordedTask) -> bool:
        return any(o.space is t.space and o is not t for o in self.tasks.values())

    def _use_scratch(self, t: RecordedTask, entry: Entry, name: str) -> bool:
        """Move a blocking call's outputs to the thread's scratch area (recorder.scratch).
        False when the area had to be mapped first: the call is then made again."""
        plan = self.scratch.plan(name, entry.args, t.task)
        if not plan:
            return True
        tid = t.task.tid
        area = self.scratch.area_of(tid, t.space) or self.scratch.claim(tid, t.space)
        if area is None:
            try:
                made = self.scratch.create(t.task, t.space)
            except InjectionError as e:  # killed meanwhile (another thread's exit_group)
                if e.stop is None:
                    raise
                self.handle(t, e.stop)
                return False
            for m in made:
                self.emit(t, Kind.MAPPING, info=mapping_event_info(m))
            regs = t.task.regs  # restored to the entry: run the `syscall` instruction again
            t.task.set_reg("rip", regs.rip - 2)
            t.task.set_reg("rax", regs.orig_rax)
            t.task.set_reg("orig_rax", -1)
            t.running_user = True  # first: see `resume`
            t.task.resume(api.Req.SYSCALL)
            return False
        try:
            entry.redirect = self.scratch.redirect(t.task, area, plan, entry.args)
        except MemoryAccessError:
            pass  # an unreadable input: the kernel will say EFAULT on the real buffer
        return True

    def _effects(self, t: RecordedTask, entry: Entry, result: int) -> tuple[list[MemoryWrite],
                                                                           dict[str, object]]:
        """What the call wrote; outputs that went to scratch are copied to the program's
        buffers now (the thread runs again) and recorded there."""
        red = entry.redirect
        eff = self.effects.effects(t.task, t.space, entry.nr, red.args if red else entry.args,
                                   result)
        if self.fdbits.on:  # the descriptors the hook may read and write (after `effects`:
            eff.writes.extend(MemoryWrite(addr=a, data=d)  # a file it mapped is watched)
                              for a, d in self.fdbits.after_call(
                                  t.task, t.space, name_of(entry.nr), entry.args, result))
            eff.writes.extend(MemoryWrite(addr=a, data=d)
                              for a, d in self.fdbits.reseed(t.task, t.space))
            eff.writes.extend(MemoryWrite(addr=a, data=d)
                              for a, d in self.fdbits.table_writes(t.task, t.space))
        if not self.descriptors.empty:
            call = queries.entry(name_of(entry.nr))
            if call is not None:
                self.descriptors.after_call(t.task.pid, call, entry.args, result)
        if red is None:
            return eff.writes, eff.info
        writes = []
        for w in eff.writes:
            addr = red.to_program(w.addr)
            if addr is not None:
                t.task.mem.write(addr, w.data)
                w = MemoryWrite(addr=addr, data=w.data)
            writes.append(w)
        self._restore_args(t, entry)
        return writes, eff.info

    def _other_process_written(self, t: RecordedTask, args: tuple[int, ...], result: int,
                               info: dict[str, object]) -> None:
        """process_vm_writev(pid, local_iov, n, remote_iov, n, 0) wrote `result` bytes into
        process `pid`, filling its remote iovecs in order. If that process is recorded too
        (or is the caller), replay must make the write there: info["remote"] keeps the bytes
        it now holds, as (recorded tid, [(address, hex)]). Outside the recording: nothing."""
        target = self.tasks.get(queries.int_arg(args[0]))
        if target is None:
            return
        try:
            ranges = outputs.iovec_ranges(args[3], args[4], result, t.task.mem.read_uint)
            written = [(addr, target.task.mem.read_upto(addr, n)) for addr, n in ranges]
        except MemoryAccessError as e:
            raise UnsupportedError(f"cannot read what process_vm_writev wrote into process "
                                   f"{target.task.pid}: {e}") from None
        info["remote"] = {"tid": target.task.tid,
                          "writes": [[addr, data.hex()] for addr, data in written if data]}

    def _call_again(self, t: RecordedTask, entry: Entry) -> tuple[int, tuple[int, ...]]:
        """restart_syscall: the kernel resumes a call that a dropped signal (SIGCONT, say)
        cut short. Make that call again instead, with its arguments, as for the restarts
        the program never sees (`_restarts_unseen`): a sleep or poll starts its time over,
        which the program cannot tell from a slow machine."""
        self._restore_args(t, entry)
        t.task.set_reg("orig_rax", entry.nr)
        t.task.flush_regs()
        return entry.nr, entry.args

    @staticmethod
    def _restore_args(t: RecordedTask, entry: Entry) -> None:
        if entry.redirect is not None:
            for reg, value in zip(ARG_REGS, entry.args):
                t.task.set_reg(reg, value)

    def _enter_blocking(self, t: RecordedTask) -> None:
        """A syscall that may wait for another task while one is ready: if it does not
        return at once, leave it in the kernel and let the ready task run."""
        t.task.resume(api.Req.SYSCALL)
        os.sched_yield()
        tid, status = os.waitpid(t.task.tid, api.WALL | os.WNOHANG)
        if tid:
            t.in_kernel = False
            self.handle(t, decode(tid, status))
            return
        self._leave_cpu(t)

    def _leave_cpu(self, t: RecordedTask) -> None:
        """The current task stays in its syscall while others run: ENTER records where it
        left the CPU, so replay parks it there too."""
        assert t.entry is not None
        if not t.entered:  # (a restarted call keeps the ENTER of its first attempt)
            self.emit(t, Kind.ENTER, nr=t.entry.nr, regs=t.entry.regs)
            t.entered = True
        self.queue.current = None

    def on_exit(self, t: RecordedTask, result: int, rip: int) -> None:
        entry, t.entry = t.entry, None
        if entry is None:  # the exit half of an exec whose entry we saw before the image
            self.resume(t)
            return
        if entry.done:
            t.exit_at = (rip, result)
            self.resume(t)
            return
        if entry.fake_result is not None:
            result = entry.fake_result
            t.task.set_reg("rax", result)
        elif entry.view:
            result = self.cpus.on_exit(t.task, name_of(entry.nr), entry.args, result)
        if result == ERESTART_RESTARTBLOCK:
            t.restart_of = entry
        if result in ERESTART and self._restarts_unseen(t, entry, result, rip):
            return
        writes, info = self._effects(t, entry, result)
        if result > 0 and name_of(entry.nr) == "process_vm_writev":
            self._other_process_written(t, entry.args, result, info)
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=result, regs=entry.regs,
                  writes=tuple(writes), info=info)
        t.entered = False
        t.exit_at = (rip, result)
        self._resume_after_exit(t, entry.nr)

    def _resume_after_exit(self, t: RecordedTask, nr: int) -> None:
        """Resume `t` after recording the exit of syscall `nr`: if that was a simple one,
        through the compiled loop (recorder.fastpath), which records the simple syscalls
        that follow, when nothing else waits to be handled; otherwise as usual. A loop that
        used up its time is entered again at once when nothing else waits still."""
        alone = len(self.tasks) == 1
        if self.fast is None or not self.fast.resumes(nr, alone=alone):
            self.resume(t)
            return
        resume = -1  # the loop starts at this entry stop (its buffer's records written)
        while self._nothing_else_waits(t):
            t.task.hand_over(api.Req.SYSCALL)
            # While the loop runs, the timer's handler cannot: it runs once the loop returns,
            # when the task may be inside a syscall, which must not be interrupted (the
            # Python path never does). So it sees no task in user code; the interrupt it
            # would have sent is sent by `_take_batch` if the task is in user code.
            t.running_user = False
            alarms = self.queue.alarms
            if self.sysbuf.on:
                fastloop.sysbuf_cursor(sysbuf.HOOK_BUF, self.sysbuf.cursor(t.space), resume,
                                       sysbuf.HDR_SIZE, sysbuf.BUF_SIZE)
            fastloop.sysbuf_fds(sysbuf.FDS if self.fdbits.on else 0,
                                self.fdbits.may_set(t.task.tid, t.space))
            waiters = () if alone else self._futex_waiters(t)
            batch = self.fast.run(t.task.tid, t.task.mem.fd, alone=alone,
                                  watched=self.effects.watched_files(),
                                  reads_left=self.cpus.watched_fds(t.task.pid),
                                  arm_us=self.queue.loop_arm_us(), waiters=waiters,
                                  slice_us=int(TIMESLICE * 1_000_000))
            t = self._take_batch(t, batch, alarms_before=alarms)
            resume = -1
            if batch.reason == fastloop.SYSBUF:  # at an entry stop, records to write first
                self._flush_buffer(t)
                resume = batch.status
                continue
            if batch.reason != fastloop.PARKED:
                return
        if resume >= 0:  # something else waits: the main loop handles that entry stop
            self._stashed[t.task.tid] = resume
            return
        self.resume(t)

    def _futex_waiters(self, t: RecordedTask) -> tuple[int, ...]:
        """The threads the compiled loop may switch to when `t` enters a futex wait
        (recorder.handoff): t's process's threads parked in a plain futex wait (ENTER
        recorded) whose exit this recorder would record with its result alone and then run
        through the loop, as `t`. Only while no thread waits in the run queue (the loop's
        kept stops are then the whole queue, in order) and the timeslice has not ended."""
        if HANDOFF_OFF or self.queue.ready or self.queue.expired:
            return ()
        may_set = self.fdbits.may_set(t.task.tid, t.space)
        out = []
        for o in self.tasks.values():
            e = o.entry
            if (o is t or e is None or not o.entered or e.nr != NR_FUTEX
                    or e.args[1] & FUTEX_CMD_MASK not in FUTEX_PLAIN_WAITS
                    or o.space is not t.space or o.task.pid != t.task.pid or o.exited
                    or e.fake_result is not None or e.view or e.done or e.redirect is not None
                    or o.pending is not None or o.wants is not None or o.held
                    or o.restart_of is not None or o.task.tid in self._stashed
                    or self.fdbits.may_set(o.task.tid, o.space) != may_set):
                continue
            o.task.hand_over(api.Req.SYSCALL)  # the loop may resume it
            out.append(o.task.tid)
            if len(out) == MAX_WAITERS:
                break
        return tuple(out)

    def _take_switches(self, t: RecordedTask, batch: Batch, alarms_before: int) -> RecordedTask:
        """Write a batch in which the compiled loop switched threads at futex waits, and
        leave every thread it switched as the Python path would have: the one that left the
        CPU inside its wait (ENTER), the one whose wait returned (its SYSCALL event, then
        its runs). Returns the thread the loop ran last, now current."""
        runs: list[tuple[int, Kind, int, Callable[[], Iterable[SyscallRecord] | Columns]]] = []
        last: dict[int, int] = {}  # tid -> index of its last event in this batch
        at = 0
        cur = t
        for item in batch.mixed:
            if isinstance(item, Switch):
                nxt = self.tasks[item.to_tid]
                wait = nxt.entry
                assert wait is not None and item.from_tid == cur.task.tid
                nr, args = entry_of(item.regs)
                runs.append((cur.task.tid, Kind.ENTER, 1, _one(nr, 0, item.regs)))
                runs.append((nxt.task.tid, Kind.SYSCALL, 1,
                             _one(wait.nr, item.result, wait.regs)))
                last[cur.task.tid], last[nxt.task.tid] = at, at + 1
                at += 2
                cur.entry = Entry(nr=nr, args=args, regs=item.regs)
                cur.entered = cur.in_kernel = True
                cur.running_user = False
                cur.exit_at = cur.restart_of = None
                self.preempter.made_syscall(cur)
                nxt.entry = None
                nxt.entered = nxt.in_kernel = False
                nxt.exit_at = (item.exit_rip, item.result)
                cur = nxt
            else:
                kind, n, records = item
                runs.append((cur.task.tid, kind, n, records))
                at += n
                last[cur.task.tid] = at - 1
                if kind == Kind.BUFFERED:
                    self.sysbuf.taken += n
        first = self.writer.add_task_runs(runs) - at + 1
        for tid, i in last.items():
            self.tasks[tid].last_event = first + i
        if self.sysbuf.on:
            self.sysbuf.moved_to(t.space, batch.sysbuf_cursor)
        self.queue.switched_in_loop(cur, batch.switches, timer_on=batch.timer_on
                                    and self.queue.alarms == alarms_before)
        return cur

    def _nothing_else_waits(self, t: RecordedTask) -> bool:
        return (t is self.queue.current and not t.held and not self._stashed
                and not self.signals.holding() and not self.queue.should_switch())

    def _take_batch(self, t: RecordedTask, batch: Batch, *,
                    alarms_before: int) -> RecordedTask:
        """Write what the compiled loop recorded and put `t` in the state the Python path
        would have left it in at the stop where the loop gave up (PARKED: stopped after the
        last record, for the caller to resume). `alarms_before`: the timer signals handled
        before the loop ran. Returns the task the loop ran last (`t`, unless it switched
        threads: then the thread now current)."""
        if batch.switches:
            t = self._take_switches(t, batch, alarms_before)
            if self.queue.alarms == alarms_before:
                self.queue.expired = False  # (RunQueue.pick's start_slice)
        elif batch.segments:  # with records of the syscall buffer (recorder.sysbuf_record)
            t.last_event = self.writer.add_runs(t.task.tid, batch.segments)
            self.sysbuf.taken += sum(n for kind, n, _ in batch.segments
                                     if kind == Kind.BUFFERED)
            self.sysbuf.moved_to(t.space, batch.sysbuf_cursor)
        elif batch.recorded:
            t.last_event = self.writer.add_syscalls(t.task.tid, batch.recorded, batch.records)
        if batch.recorded or batch.segments or batch.mixed:
            if not self.descriptors.empty:
                self._descriptors_after(t, batch)
            if batch.buffered_fd_calls:
                self._buffered_fd_calls(t)
            t.exit_at = batch.exit_at
            self.preempter.made_syscall(t)
        if batch.entry is not None:  # entered, resumed into the kernel, not recorded
            nr, args = entry_of(batch.entry)
            t.exit_at = None
            self.preempter.made_syscall(t)
            t.entry = Entry(nr=nr, args=args, regs=batch.entry)
            call = queries.entry(name_of(nr))  # (simple calls never write our outputs)
            t.in_kernel = (call is not None and len(self.tasks) > 1
                           and may_block(self.descriptors, t.task.pid, t.task.tid,
                                         t.task.mem, call, args))
            t.running_user = False
        self.queue.compiled_calls += batch.recorded
        for tid, status in batch.others:  # other tasks' stops, in the order they came
            self._stashed[tid] = status
        if batch.armed and not batch.switches:
            self.queue.armed_by_loop(alarms_before)
        if batch.reason == fastloop.STOP:
            self._stashed[batch.tid] = batch.status  # the main loop takes it from here
            if batch.tid == t.task.tid and batch.entry is not None:
                t.in_kernel = False  # its own stop came: not left waiting in the kernel
        # `t` still runs user code if the loop stopped waiting for it (EINTR) or met another
        # task's stop, while `t` was not inside a syscall it entered (the main loop then
        # waits for that syscall's exit). It may be interrupted again from now on.
        left_running = (batch.reason == fastloop.EINTR
                        or batch.reason == fastloop.STOP and batch.tid != t.task.tid)
        if left_running and batch.entry is None:
            t.running_user = True
            # (counted after the mark: a later signal interrupts the task itself)
            if self.queue.alarms != alarms_before and t is self.queue.current:
                try:
                    api.ptrace(api.Req.INTERRUPT, t.task.tid)
                except OSError:
                    pass
        return t

    def _buffered_fd_calls(self, t: RecordedTask) -> None:
        """The hook closed or made descriptors of t's process without a stop (close, openat,
        fcntl F_DUPFD: the bits stay right, the hook keeps them): a number recorder.blocking
        knew may now be another file, a status file may have a copy."""
        self.descriptors.forget(t.task.pid)
        self.cpus.copies_made(t.task)

    def _descriptors_after(self, t: RecordedTask, batch: Batch) -> None:
        """The compiled loop recorded calls (close, dup2, fcntl F_SETFL, ...) that may have
        changed what recorder.blocking knows of t's descriptors."""
        changers = queries.FD_CHANGER_NUMBERS
        for nr, result, regs, _ in batch.records():
            if nr in changers:
                call = queries.entry(name_of(nr))
                if call is not None:
                    self.descriptors.after_call(t.task.pid, call, entry_of(regs)[1], result)

    def _restarts_unseen(self, t: RecordedTask, entry: Entry, result: int, rip: int) -> bool:
        """A syscall cut short without a signal to deliver (a PTRACE_INTERRUPT, or a signal
        that is dropped because it is ignored) is restarted by the kernel before any user
        instruction runs: the program never sees the first attempt, so it is not recorded.
        With a signal delivered next, the ERESTART result is recorded as usual (replay
        delivers the signal and the kernel decides the same way)."""
        self._restore_args(t, entry)  # the kernel restarts the call with these registers
        t.task.resume(api.Req.SYSCALL)
        stop = self.wait_for(t)
        while ((isinstance(stop, SignalStop)  # e.g. SIGCHLD at its default: dropped, restarted
                and has_no_effect(disposition(t.task.pid, stop.signal), stop.signal))
               # An event stop (SIGCONT makes one) before a signal that will be delivered
               # (the call then fails with EINTR or is restarted after the handler).
               or (isinstance(stop, EventStop) and stop.event == api.Event.STOP
                   and pending_with_effect(t.task.tid))):
            t.task.resume(api.Req.SYSCALL)
            stop = self.wait_for(t)
        if isinstance(stop, EventStop) and stop.event == api.Event.STOP:
            if t.task.regs.rax == NR_RESTART_SYSCALL:
                t.task.set_reg("rax", entry.nr)  # start it again rather than resume it
            if t.entered:  # replay waits at this call's entry: make it again at once
                self.resume(t, in_syscall=True)
            else:
                self.signals.on_interrupt(t)
            return True
        if isinstance(stop, SyscallStop):  # already restarted: this is its new entry
            self.handle(t, stop)  # (restart_syscall is made the call again: on_entry)
            return True
        if isinstance(stop, SignalStop) and t.task.regs.rip != rip:
            # The kernel restarted the call (cut short without a signal: a PTRACE_INTERRUPT)
            # before this signal came: the program never saw the first attempt, and the
            # signal comes before the call is made again (held: "before_syscall").
            log.debug("task %d: %s after its %s was restarted", t.task.tid,
                      signal.Signals(stop.signal).name, name_of(entry.nr))
            self.handle(t, stop)
            return True
        writes, info = self._effects(t, entry, result)
        if result > 0 and name_of(entry.nr) == "process_vm_writev":
            self._other_process_written(t, entry.args, result, info)
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=result, regs=entry.regs,
                  writes=tuple(writes), info=info)
        t.entered = False
        t.exit_at = (rip, result)
        self.handle(t, stop)
        return True

    # -- new tasks ----------------------------------------------------------------------------
    def on_clone(self, t: RecordedTask, event: api.Event) -> None:
        """clone/fork/vfork at its ptrace event: record it with the new task's tid before
        either side runs again; the child joins the run queue."""
        entry = t.entry
        if entry is None:
            raise UnsupportedError(f"ptrace {event.name} event without a syscall entry")
        name = name_of(entry.nr)
        flags = (FORK_FLAGS if name == "fork" else VFORK_FLAGS if name == "vfork"
                 else entry.args[0])
        self._flush_buffer(t)  # (before the child's copy of the buffer is made)
        child_tid = api.get_event_msg(t.task.tid)
        status = self._stashed.pop(child_tid, None)
        if status is None:
            status = api.wait_task(child_tid)
        thread = bool(flags & CLONE_THREAD)
        pid = t.task.pid if thread else child_tid
        memory = t.task.mem if thread else Memory(child_tid)
        space = t.space if flags & CLONE_VM else t.space.copy()
        if not flags & CLONE_VM:
            self.sysbuf.forked(t.space, space)
        self.fdbits.cloned(t.space, child_tid, space, flags)
        if not flags & CLONE_VM:  # the copied scratch areas are the child's to reuse
            for m in space.flagged(Flag.SCRATCH):
                self.scratch.release(m.owner, space)
        child = self._add_task(Task(child_tid, pid, memory), space)
        self.cpus.add_task(child_tid, pid, t.task.tid, t.task.pid)
        self.cpuid.on_clone(t.task.tid, child_tid)
        if not thread:
            self._answer_clocks(pid)
            self._ppid[pid] = t.task.pid
            self.descriptors.forget(pid)  # (a number used before)
        self.writer.put_task(TaskRecord(
            tid=child_tid, pid=pid, ppid=self._ppid.get(pid, 0),
            argv=tuple(_cmdline(child_tid)), exe=_exe(child_tid)))
        info: dict[str, object] = {"child": child_tid, "flags": flags}
        if flags & CLONE_PARENT_SETTID:
            info["ptid"] = entry.args[2]
        if flags & CLONE_CHILD_SETTID:
            info["ctid"] = entry.args[3]
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=child_tid, regs=entry.regs, info=info)
        entry.done = True
        if decode(child_tid, status) != EventStop(child_tid, api.Event.STOP, signal.SIGTRAP):
            log.debug("new task %d first reported %#x", child_tid, status)
        child.wants = (api.Req.SYSCALL, 0)
        self.queue.make_ready(child)
        if event == api.Event.VFORK:  # the parent waits in the kernel until the child execs
            t.task.resume(api.Req.SYSCALL)
            t.in_kernel = True
            self.queue.current = None
        else:
            self.resume(t, in_syscall=True)

    # -- exec and exit ----------------------------------------------------------------------
    def _not_64_bit(self, t: RecordedTask, info: api.SyscallInfo) -> UnsupportedError:
        """An i386 system call (int $0x80, sysenter): recorded under the x86-64 numbers it
        would be another call, and replay could not make it at all."""
        what = (f"system call {info.u[0]} of the i386 ABI"
                if info.op != api.SYSCALL_INFO_EXIT else "an i386 system call")
        program = _exe(t.task.tid) or "the program"
        return UnsupportedError(
            f"32-bit system calls (int $0x80) are not supported: {program} (pid {t.task.tid}) "
            f"called {what} at event {self.writer.event_count}")

    def _refuse_32_bit(self, t: RecordedTask) -> None:
        """At an exec, before anything of it is recorded (replay would expect its image)."""
        if _is_32_bit(t.task.tid):
            raise UnsupportedError(
                f"32-bit programs are not supported: {_exe(t.task.tid)} (pid {t.task.tid}), "
                f"started at event {self.writer.event_count}, is a 32-bit (i386) program")

    def on_exec(self, t: RecordedTask) -> None:
        self._refuse_32_bit(t)
        entry = t.entry
        if entry is None or name_of(entry.nr) not in queries.EXECS:
            raise UnsupportedError("exec stop without an execve entry")
        if t.task.tid != t.task.pid or any(
                o.task.pid == t.task.pid and o is not t for o in self.tasks.values()):
            raise UnsupportedError("execve in a multi-threaded process is not supported by "
                                   "relive yet")
        self.scratch.release(t.task.tid, t.space)  # a vfork child leaves it to its parent
        self.descriptors.forget(t.task.pid)  # close-on-exec
        self.preempter.jumps.forget(t.task.pid)  # a new address space
        t.task.mem.reopen()
        t.task.invalidate_regs()
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=0, regs=entry.regs)
        entry.done = True
        self._record_exec(t)
        self._answer_clocks(t.task.pid)
        self.resume(t)

    def _record_exec(self, t: RecordedTask) -> None:
        first = t.last_event < 0 and t.task.tid == self.root
        argv = self.argv if first else _cmdline(t.task.tid)
        event, space, files = snapshot_image(t.task, self.writer, argv, self.effects.patcher,
                                             self.sysbuf)
        for ident, file_id in files:
            self.effects.note_mapped_file(ident, file_id)
        t.space = space
        if not first:
            self.writer.set_task_command(t.task.tid, argv, _exe(t.task.tid))
        info = {**event.info, **self.cpuid.on_exec(t)}
        self.fdbits.gone(t.task.tid)  # (its own table now)
        seeded = tuple(MemoryWrite(addr=a, data=d) for a, d in (
            *self.fdbits.seed(t.task), *self.fdbits.table_writes(t.task, space)))
        self.emit(t, Kind.EXEC, regs=event.regs, writes=event.writes + seeded, info=info)

    def on_exit_event(self, t: RecordedTask) -> None:
        """The task is exiting (PTRACE_EVENT_EXIT). It is let go and, unless it leads a
        process whose other threads live on, reaped here: its exit (the kernel clearing
        the CLONE_CHILD_CLEARTID word, a parent's wait returning) completes before any other
        task runs, as it does in replay."""
        self._exiting(t)
        t.task.resume(api.Req.CONT)
        if t.task.tid == t.task.pid and any(
                o.task.pid == t.task.pid and o is not t for o in self.tasks.values()):
            return
        while True:
            stop = self.wait_for(t)
            if isinstance(stop, (Exited, Killed)):
                self.on_gone(t, stop)
                return
            t.task.resume(api.Req.CONT)

    def _exiting(self, t: RecordedTask) -> None:
        """At a task's PTRACE_EVENT_EXIT stop: its EXIT event. A thread killed because
        another thread of its process is inside execve is marked so (`exec`: that thread's
        tid): in replay the exec kills it, it does not run to an exit of its own."""
        status = api.get_event_msg(t.task.tid)
        execing = self._execing_thread(t)
        info = {"exec": execing.task.tid} if execing is not None else {}
        self.emit(t, Kind.EXIT, result=status, info=info, writes=self._owner_died(t))
        t.exited = True
        self.writer.set_task_exit(t.task.tid, status)
        self.queue.remove(t)

    def _exit_waits(self, t: RecordedTask, stop: Stop) -> bool:
        """An exit stop that waits for the CPU like any other stop: `t`, killed from outside
        its process, holds robust mutexes the kernel marks once it is let go, and the task
        running now, of another process, could meet that write anywhere in the stretch it
        runs (in replay the EXIT event's writes come before that stretch). At t's turn that
        task is stopped; were it waiting for t in the kernel, it leaves the CPU to t."""
        cur = self.queue.current
        return (isinstance(stop, EventStop) and stop.event == api.Event.EXIT
                and cur is not None and cur.task.pid != t.task.pid
                and bool(self._owner_died(t)))

    @staticmethod
    def _owner_died(t: RecordedTask) -> tuple[MemoryWrite, ...]:
        """What the kernel is about to write into the robust mutexes t holds (FUTEX_OWNER_DIED:
        recorder.robust_list), as the EXIT event's writes."""
        head = robust_list.robust_head(t.task.tid)
        if not head:
            return ()
        writes = robust_list.owner_died_writes(t.task.mem, t.task.tid, head)
        if writes:
            log.debug("task %d exits holding %d robust futex(es)", t.task.tid, len(writes))
        return tuple(MemoryWrite(addr=a, data=d) for a, d in writes)

    def _execing_thread(self, t: RecordedTask) -> RecordedTask | None:
        """Another thread of t's process that is inside execve (which kills t), if any."""
        for o in self.tasks.values():
            if (o is not t and o.task.pid == t.task.pid and o.entry is not None
                    and not o.entry.done and name_of(o.entry.nr) in queries.EXECS):
                return o
        return None

    def on_gone(self, t: RecordedTask, stop: Exited | Killed) -> None:
        status = (stop.code << 8) if isinstance(stop, Exited) else stop.signal
        if not t.exited:
            self.emit(t, Kind.EXIT, result=status)
            self.writer.set_task_exit(t.task.tid, status)
        self.scratch.release(t.task.tid, t.space)
        self.fdbits.gone(t.task.tid)
        self.cpus.remove_task(t.task.tid)
        self.cpuid.forget(t.task.tid)
        self.queue.remove(t)
        del self.tasks[t.task.tid]
        if not any(o.task.mem is t.task.mem for o in self.tasks.values()):
            t.task.mem.close()
            self.descriptors.forget(t.task.pid)
            self.preempter.jumps.forget(t.task.pid)
        if t.task.tid == self.root:
            self.status = status
            pids = sorted({o.task.pid for o in self.tasks.values()} - {self.root})
            if pids:
                self._left_running(pids)

    def _left_running(self, pids: list[int]) -> None:
        """The program exited but processes it started run on (daemons, `cmd &`): they are
        recorded until they exit too, which may be never (gpg-agent). Say so, and let Ctrl-C
        (SIGINT, until now the program's) stop the recording: KeyboardInterrupt."""
        signal.signal(signal.SIGINT, signal.default_int_handler)  # before anyone reads it
        log.warning("the program exited; still recording %d process%s it left running "
                    "(pid %s) until %s; Ctrl-C stops the recording here",
                    len(pids), "es" if len(pids) > 1 else "", ", ".join(map(str, pids)),
                    "they exit" if len(pids) > 1 else "it exits")


def _one(nr: int, result: int, regs: bytes) -> Callable[[], Iterable[SyscallRecord]]:
    """A run of one event without writes, for TraceWriter.add_task_runs."""
    return lambda: ((nr, result, regs, []),)


def _check_clone_flags(flags: int) -> None:
    if flags & CLONE_VM and not flags & (CLONE_THREAD | CLONE_VFORK):
        raise UnsupportedError("the program called clone with CLONE_VM but neither "
                               "CLONE_THREAD nor CLONE_VFORK (two processes sharing memory): "
                               "not supported by relive")
    if flags & CLONE_NEWPID:  # (unshare and setns are refused: not in the catalogue)
        raise UnsupportedError("the program called clone with CLONE_NEWPID (a new PID "
                               "namespace, whose process ids are not those the recorder "
                               "sees): not supported by relive")


def _ends_task(stop: Stop) -> bool:
    return isinstance(stop, (Exited, Killed)) or (
        isinstance(stop, EventStop) and stop.event == api.Event.EXIT)


def _cmdline(tid: int) -> list[str]:
    try:
        with open(f"/proc/{tid}/cmdline", "rb") as f:
            return [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def _is_32_bit(tid: int) -> bool:
    """Is the program task `tid` runs now a 32-bit ELF (e_ident[EI_CLASS] = ELFCLASS32)?"""
    try:
        with open(f"/proc/{tid}/exe", "rb") as f:
            ident = f.read(5)
    except OSError:
        return False
    return ident[:4] == b"\x7fELF" and ident[4] == 1


def _exe(tid: int) -> str:
    try:
        return os.readlink(f"/proc/{tid}/exe")
    except OSError:
        return ""


def _own_outputs() -> dict[int, tuple[int, int]]:
    out = {}
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
            out[fd] = (st.st_dev, st.st_ino)
        except OSError:
            pass
    return out


def exit_code(status: int) -> int:
    """A wait status as a shell exit code (128+N when killed by signal N)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
