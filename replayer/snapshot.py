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
The copies are not each other's children any more: nothing in replay needs it, since every
call between processes (wait4, kill, pipes, sockets) is emulated and a child's real SIGCHLD
is dropped (Task.drop_child_signals). What would make copies of several processes differ
from the originals is refused (ReplaySession.can_snapshot): memory they share (writable
MAP_SHARED, or a clone(CLONE_VM) child or vfork child), a process whose leader is gone, a
thread inside a real syscall (a vfork parent) or on its way out, or a signal half delivered.
"""
from __future__ import annotations

from typing import NamedTuple

from tracee import thread_state
from tracee.fork import clone_thread, fork_tracee
from tracee.task import Task, kill_tasks
from tracee.thread_state import ThreadState

from replayer.errors import ReplayError
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
        kill_tasks(self.stored(), later=True)  # (reaped when the tracer is idle)


def take(taskset: TaskSet, position: int, current: Task | None, steps: int = 0) -> Snapshot:
    """A snapshot of every replayed process; the live tasks are left as they were."""
    images: list[ProcessImage] = []
    try:
        for pid in dict.fromkeys(t.pid for t in taskset.tasks.values()):
            images.append(_take_process(taskset, pid))
    except BaseException:
        kill_tasks([i.stored for i in images])
        raise
    return Snapshot(position=position, processes=tuple(images), order=tuple(taskset.tasks),
                    root=taskset.root, current=_recorded(taskset, current), steps=steps)


def _take_process(taskset: TaskSet, pid: int) -> ProcessImage:
    order = [(tid, t) for tid, t in taskset.tasks.items() if t.pid == pid]
    owner, task = _forker(order)
    images = tuple(ThreadImage(tid, thread_state.capture(
        t, altstack=taskset.altstack.get(tid), clear_tid=taskset.clear_tid.get(tid, 0)),
        t.tid in taskset.entered) for tid, t in order)
    stored = fork_tracee(task)
    if task.tid in taskset.entered:  # the fork took it out of its syscall: back in
        thread_state.enter_syscall(task, _image(images, owner).state.regs)
    return ProcessImage(stored=stored, owner=owner, threads=images,
                        proc=taskset.procs[owner].copy())


def restore(snap: Snapshot) -> TaskSet:
    """Live replayed processes in the snapshot's state (the stored copies stay untouched)."""
    made: list[Task] = []
    live: dict[int, tuple[Task, ProcessState]] = {}
    try:
        for image in snap.processes:
            leader = fork_tracee(image.stored)
            made.append(leader)
            live.update(_rebuild(image, leader, made))
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
