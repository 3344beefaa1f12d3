"""Checkpoints of the replayed process, threads included.

fork copies only the thread that calls it. A snapshot is therefore two things: a forked copy
of the process made by its leader (a frozen memory image that never runs: to use it, it is
forked again), and every other thread's state as plain data (tracee.thread_state).
Restoring forks the stored copy, clones the other threads into the new copy (through the
relive page), gives each its registers, extended state, signal mask, signal stack and
clear-tid word, and parks each where its original was: after its last event, or at the entry
of the syscall an ENTER event left it in. The recorded tid -> live task map is rebuilt around
them, so replay goes on as if nothing happened.

Only one process, its leader alive, with no thread inside a real syscall (a vfork parent) or on
its way out, and no signal half delivered, can be snapshotted (ReplaySession.can_snapshot).
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


class Snapshot(NamedTuple):
    """The replay at event boundary `position` (plus `steps` instructions, for the forks a
    reverse-stepi keeps inside a stretch)."""
    position: int
    stored: Task  # the forked copy, made by thread `owner` (the leader)
    owner: int
    threads: tuple[ThreadImage, ...]  # every thread, the owner too, in the TaskSet's order
    proc: ProcessState
    root: int
    current: int | None  # the thread of the last event replayed
    steps: int = 0

    @property
    def multi(self) -> bool:
        return len(self.threads) > 1

    def discard(self) -> None:
        kill_tasks([self.stored], later=True)  # (reaped when the tracer is idle)


def take(taskset: TaskSet, position: int, current: Task | None, steps: int = 0) -> Snapshot:
    """A snapshot of the (one) replayed process; the live tasks are left as they were."""
    order = list(taskset.tasks.items())
    owner, task = _forker(taskset)
    images = tuple(ThreadImage(tid, thread_state.capture(
        t, altstack=taskset.altstack.get(tid), clear_tid=taskset.clear_tid.get(tid, 0)),
        t.tid in taskset.entered) for tid, t in order)
    stored = fork_tracee(task)
    if task.tid in taskset.entered:  # the fork took it out of its syscall: back in
        thread_state.enter_syscall(task, _image(images, owner).state.regs)
    proc = taskset.procs[owner].copy()
    return Snapshot(position=position, stored=stored, owner=owner, threads=images, proc=proc,
                    root=taskset.root, current=_recorded(taskset, current), steps=steps)


def restore(snap: Snapshot) -> TaskSet:
    """A live replayed process in the snapshot's state (the stored copy stays untouched)."""
    leader = fork_tracee(snap.stored)
    made = [leader]
    try:
        return _rebuild(snap, leader, made)
    except BaseException:
        kill_tasks(made)
        raise


def _rebuild(snap: Snapshot, leader: Task, made: list[Task]) -> TaskSet:
    owner = _image(snap.threads, snap.owner)
    proc = snap.proc.copy()
    live: dict[int, Task] = {snap.owner: leader}
    for image in snap.threads:
        if image.tid != snap.owner:
            task = clone_thread(leader)
            made.append(task)
            thread_state.give_kernel_state(task, image.state, inherited=owner.state)
            _park(task, image)
            live[image.tid] = task
    if owner.state.clear_tid:  # (fork does not keep it)
        thread_state.set_clear_tid(leader, owner.state.clear_tid)
    if snap.multi or owner.entered:
        _park(leader, owner)
    for image in snap.threads:  # last: parking runs the tasks (thread_state)
        thread_state.give_extended_state(live[image.tid], image.state)
    taskset = TaskSet()
    for image in snap.threads:
        taskset.add(image.tid, live[image.tid], proc)
        if image.entered:
            taskset.entered.add(live[image.tid].tid)
        if image.state.clear_tid:
            taskset.clear_tid[image.tid] = image.state.clear_tid
        if image.state.altstack is not None:
            taskset.altstack[image.tid] = image.state.altstack
    taskset.root = snap.root
    return taskset


def _park(task: Task, image: ThreadImage) -> None:
    if image.entered:
        thread_state.enter_syscall(task, image.state.regs)
    else:
        thread_state.stand_at_syscall_entry(task, image.state.regs)


def _forker(taskset: TaskSet) -> tuple[int, Task]:
    """The process leader forks: the copy's leader is then the same thread, and the copy's
    /proc/PID files (memory, maps) stay readable as long as the original's do."""
    for tid, task in taskset.tasks.items():
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
