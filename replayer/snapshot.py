"""Checkpoints of the replayed process tree, threads included.

fork copies only the thread that calls it. A snapshot of one process is therefore two things:
a forked copy of the process made by its leader (a frozen memory image that never runs: to
use it, it is forked again), and every other thread's state as plain data
(tracee.thread_state). Restoring forks the stored copy, clones the other threads into the
new copy (through the relive page), gives each its registers, extended state, signal mask,
signal stack and clear-tid word, and parks each where its original was: after its last
event, or at the entry of the syscall an ENTER event left it in. The recorded tid -> live
task map is rebuilt around them, so replay goes on as if nothing happened.

A snapshot of a tree (issue 23) is one such image per live process, all taken at the same
point (only one task runs at a time, so every other process stands after its last event).
The copies are not each other's children any more: every copy, like every replayed process,
is a child of relive (clone with CLONE_PARENT: tracee.fork, replayer.tasks), which reaps it
completely when it kills it, so no zombie is left under a replayed process or a stored copy.
Nothing in replay needs the kinship, since every call between processes (wait4, kill, pipes,
sockets) is emulated and a child's real SIGCHLD is dropped (Task.drop_child_signals). What
would make copies of several processes differ from the originals is refused
(ReplaySession.can_snapshot): memory they share (writable MAP_SHARED, or a clone(CLONE_VM)
child or vfork child), a process whose leader is gone, a thread inside a real syscall (a
vfork parent) or on its way out, or a signal half delivered.

Inside a stretch only the thread of the next event runs, so the other processes stand still
until the next event: snapshots taken at one event boundary share their copies of those
processes (`reuse`; each copy is killed when the last snapshot holding it is discarded), and
going back to a snapshot from the same boundary forks only the running process's copy and
keeps the others' live tasks (`keep`): a snapshot costs one fork, not one per process.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tracee import thread_state
from tracee.fork import ForkFailed, clone_thread, fork_tracee
from tracee.task import Task, kill_tasks
from tracee.thread_state import ThreadState

from replayer.errors import CheckpointFailed, ReplayError
from replayer.syscalls import ProcessState
from replayer.tasks import TaskSet


class ThreadImage(NamedTuple):
    """One thread of a snapshot: its recorded tid, its state, and whether it waits at a
    syscall entry (ENTER)."""
    tid: int
    state: ThreadState
    entered: bool


class ProcessImage(NamedTuple):
    """One process of a snapshot: the forked copy, made by thread `owner` (its leader), and
    every thread's state, the owner's too."""
    stored: Task
    owner: int
    threads: tuple[ThreadImage, ...]
    proc: ProcessState


class Snapshot(NamedTuple):
    """The replay at event boundary `position` (plus `steps` instructions, for the forks a
    reverse-stepi keeps inside a stretch): an image of every live process."""
    position: int
    processes: tuple[ProcessImage, ...]
    order: tuple[int, ...]  # every recorded tid, in the TaskSet's order
    root: int
    current: int | None  # the thread of the last event replayed
    steps: int = 0

    @property
    def threads(self) -> tuple[ThreadImage, ...]:
        return tuple(t for p in self.processes for t in p.threads)

    @property
    def owner(self) -> int:
        return self.processes[0].owner

    def stored(self) -> list[Task]:
        """The stored copies, one per process."""
        return [p.stored for p in self.processes]

    def discard(self) -> None:
        gone = []
        for copy in self.stored():
            holders = _holders.get(copy.pid, set())
            holders.discard(id(self))
            if not holders:
                _holders.pop(copy.pid, None)
                gone.append(copy)
        kill_tasks(gone, later=True)  # (reaped when the tracer is idle)


# The snapshots (by id) holding each stored copy (by its pid): a copy of a process that did not
# run between two snapshots is shared by them, and killed with the last one.
_holders: dict[int, set[int]] = {}


def held(image: ProcessImage) -> bool:
    """Is `image`'s stored copy alive (held by a snapshot not discarded)?"""
    return bool(_holders.get(image.stored.pid))


def take(taskset: TaskSet, position: int, current: Task | None, steps: int = 0,
         reuse: Mapping[int, ProcessImage] | None = None) -> Snapshot:
    """A snapshot of every replayed process; the live tasks are left as they were. `reuse`:
    images of processes (by live pid) known to stand exactly as they do now."""
    images: list[ProcessImage] = []
    made: list[Task] = []
    try:
        for pid in dict.fromkeys(t.pid for t in taskset.tasks.values()):
            image = (reuse or {}).get(pid)
            if image is None or not held(image):
                image = _take_process(taskset, pid)
                made.append(image.stored)
            images.append(image)
    except ForkFailed as e:
        kill_tasks(made)
        raise CheckpointFailed(f"cannot make a checkpoint: {e.reason}; the replay stays "
                               "where it is") from e
    except BaseException:
        kill_tasks(made)
        raise
    snap = Snapshot(position=position, processes=tuple(images), order=tuple(taskset.tasks),
                    root=taskset.root, current=_recorded(taskset, current), steps=steps)
    for image in images:
        _holders.setdefault(image.stored.pid, set()).add(id(snap))
    return snap


def _take_process(taskset: TaskSet, pid: int) -> ProcessImage:
    order = [(tid, t) for tid, t in taskset.tasks.items() if t.pid == pid]
    owner, task = _forker(order)
    images = tuple(ThreadImage(tid, thread_state.capture(
        t, altstack=taskset.altstack.get(tid), clear_tid=taskset.clear_tid.get(tid, 0)),
        t.tid in taskset.entered) for tid, t in order)
    try:
        stored = fork_tracee(task)
    finally:  # (made or not:) the fork took it out of its syscall: back in
        if task.tid in taskset.entered:
            thread_state.enter_syscall(task, _image(images, owner).state.regs)
    return ProcessImage(stored=stored, owner=owner, threads=images,
                        proc=taskset.procs[owner].copy())


class SharedCopies:
    """The last snapshot taken and the live tasks of each of its processes then: the next
    one at the same boundary reuses the images of the processes that have not run since."""

    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._tasks: dict[int, tuple[Task, ...] | None] = {}

    def note(self, snap: Snapshot, taskset: TaskSet) -> None:
        self._snap = snap
        self._tasks = {image.owner: _live_threads(taskset, image) for image in snap.processes}

    def reusable(self, taskset: TaskSet, position: int, running: int | None
                 ) -> dict[int, ProcessImage]:
        """Images of the last snapshot, by live pid, of the processes that have not run
        since: it was taken at this boundary, their tasks are the very same, and they are
        not the process that runs here (`running`, a live pid)."""
        if self._snap is None or self._snap.position != position or running is None:
            return {}
        out = {}
        for image in self._snap.processes:
            live, then = _live_threads(taskset, image), self._tasks.get(image.owner)
            if (live is not None and then is not None and len(live) == len(then)
                    and all(a is b for a, b in zip(live, then)) and live[0].pid != running):
                out[live[0].pid] = image
        return out


def standing(snap: Snapshot, taskset: TaskSet, position: int, running: int | None
             ) -> set[int]:
    """Recorded tids of the live tasks that stand where `snap` has them: at its boundary,
    those of the processes other than the one that runs there (`running`, a live pid), when
    the live processes are the snapshot's, thread for thread."""
    if snap.position != position or running is None or set(taskset.tasks) != set(snap.order):
        return set()
    keep: set[int] = set()
    for image in snap.processes:
        live = _live_threads(taskset, image)
        if live is None:
            return set()
        if live[0].pid != running:
            keep |= {t.tid for t in image.threads}
    return keep


def _live_threads(taskset: TaskSet, image: ProcessImage) -> tuple[Task, ...] | None:
    """The live tasks of `image`'s threads, if they are exactly one live process."""
    found = [taskset.tasks.get(t.tid) for t in image.threads]
    live = tuple(t for t in found if t is not None)
    if len(live) != len(found) or not live:
        return None
    pid = live[0].pid
    if {tid for tid, t in taskset.tasks.items() if t.pid == pid} != {t.tid for t in image.threads}:
        return None
    return live


def restore(snap: Snapshot, kept: TaskSet | None = None,
            keep: frozenset[int] = frozenset()) -> TaskSet:
    """Live replayed processes in the snapshot's state (the stored copies stay untouched).
    The processes whose leader's recorded tid is in `keep` stand as the snapshot has them in
    `kept`, the live replay: their tasks are taken from there (the caller killed the rest)."""
    made: list[Task] = []
    live: dict[int, tuple[Task, ProcessState]] = {}
    try:
        for image in snap.processes:
            if kept is not None and image.owner in keep:
                live.update({t.tid: (kept.tasks[t.tid], kept.procs[t.tid])
                             for t in image.threads})
                continue
            leader = fork_tracee(image.stored)
            made.append(leader)
            live.update(_rebuild(image, leader, made))
    except ForkFailed as e:
        kill_tasks(made)
        raise CheckpointFailed(f"cannot go back to a checkpoint: {e.reason}; the replay "
                               "stays where it is") from e
    except BaseException:
        kill_tasks(made)
        raise
    taskset = TaskSet()
    threads = {t.tid: t for t in snap.threads}
    for tid in snap.order:
        task, proc = live[tid]
        taskset.add(tid, task, proc)
        thread = threads[tid]
        if thread.entered:
            taskset.entered.add(task.tid)
        if thread.state.clear_tid:
            taskset.clear_tid[tid] = thread.state.clear_tid
        if thread.state.altstack is not None:
            taskset.altstack[tid] = thread.state.altstack
    taskset.root = snap.root
    return taskset


def _rebuild(image: ProcessImage, leader: Task, made: list[Task]
             ) -> dict[int, tuple[Task, ProcessState]]:
    """The threads of one restored process, by recorded tid, with its ProcessState."""
    owner = _image(image.threads, image.owner)
    proc = image.proc.copy()
    live: dict[int, Task] = {image.owner: leader}
    for thread in image.threads:
        if thread.tid != image.owner:
            task = clone_thread(leader)
            made.append(task)
            thread_state.give_kernel_state(task, thread.state, inherited=owner.state)
            _park(task, thread)
            live[thread.tid] = task
    if owner.state.clear_tid:  # (fork does not keep it)
        thread_state.set_clear_tid(leader, owner.state.clear_tid)
    if len(image.threads) > 1 or owner.entered:
        _park(leader, owner)
    for thread in image.threads:  # last: parking runs the tasks (thread_state)
        thread_state.give_extended_state(live[thread.tid], thread.state)
    return {tid: (task, proc) for tid, task in live.items()}


def _park(task: Task, image: ThreadImage) -> None:
    if image.entered:
        thread_state.enter_syscall(task, image.state.regs)
    else:
        thread_state.stand_at_syscall_entry(task, image.state.regs)


def _forker(order: list[tuple[int, Task]]) -> tuple[int, Task]:
    """The process leader forks: the copy's leader is then the same thread, and the copy's
    /proc/PID files (memory, maps) stay readable as long as the original's do."""
    for tid, task in order:
        if task.tid == task.pid:
            return tid, task
    raise ReplayError("no checkpoint without the process leader")


def _image(images: tuple[ThreadImage, ...], tid: int) -> ThreadImage:
    return next(i for i in images if i.tid == tid)


def _recorded(taskset: TaskSet, task: Task | None) -> int | None:
    if task is None:
        return None
    try:
        return taskset.recorded_tid(task)
    except KeyError:
        return None
