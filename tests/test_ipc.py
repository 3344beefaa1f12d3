"""Kernel IPC between recorded tasks: POSIX message queues, SysV semaphores and message
queues, another process's memory, userfaultfd (all refused at record time before).

  - a task waiting in mq_receive, semop/semtimedop or msgrcv for another recorded task (a
    child process or a thread) that acts 0.2 s later records in about native time (the
    waiter leaves the CPU) and replays what it printed;
  - mq_notify's SIGEV_THREAD (glibc's helper thread on a netlink socket) and SIGEV_SIGNAL;
  - process_vm_readv of a child's memory replays the bytes read; process_vm_writev into a
    recorded child (or the caller itself) replays the write there;
  - userfaultfd is answered ENOSYS and the program's fallback shows in its output;
  - real programs: util-linux's ipcmk/ipcs/ipcrm (shared memory segments made and shown:
    shmget, shmctl; shmat stays refused), python's posix_ipc and sysv_ipc, py-spy (PyPI,
    skipped when not installed).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_faithful, describe, replay, run_relive

from tracee.syscalls import queries

LIMIT = 60  # natively each takes under 0.5 s; a waiter keeping the CPU hangs forever

PING_PONG = b"".join(b"ping %d\n  pong %d\n" % (i, i) for i in range(5))
EXPECTED = {
    "mq": b'received 14 bytes "first message" priority 7\n'
          b'received 14 bytes "second, timed"\n'
          b"maxmsg 4 msgsize 64 curmsgs 0 flags 0\n"
          b"empty queue: Resource temporarily unavailable (old flags 0)\n"
          b"unlinked: No such file or directory\n",
    "sem": PING_PONG + b"values 0 0, 2 semaphores, last op on 1 by this one\nSEM_INFO: ok\n",
    "msg": b"nothing yet: No message of desired type\n"
           b'got 17 bytes of type 2: "sent after 0.2 s"\n'
           b'  other got type 3 "the reply"\n'
           b"queue: 0 messages, 0 bytes, mode 600, last sender this one\n",
}


def record_within(trace: Path, argv: list[object], limit: float = LIMIT,
                  **kw: object) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    try:
        rec = run_relive("record", "-o", trace, *argv, stdin=subprocess.DEVNULL,
                         timeout=limit, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"relive record {' '.join(map(str, argv))} still ran after {limit} s "
                    "(natively under 0.5 s): a task waiting for another kept the CPU",
                    pytrace=False)
    return rec, time.monotonic() - started


@pytest.mark.parametrize("how", ["proc", "thread"])
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_waiting_on_ipc_objects_records_and_replays(programs, tmp_path: Path, mode: str,
                                                    how: str) -> None:
    trace = tmp_path / "trace"
    rec, took = record_within(trace, [programs["ipc_between_tasks"], mode, how])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == EXPECTED[mode], describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))
    print(f"{mode} {how}: recorded in {took:.2f} s")


def test_mq_notify_by_thread_and_by_signal(programs, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    rec, _ = record_within(trace, [programs["ipc_between_tasks"], "mqnotify"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == b"thread notified with 42\nsignal notified, 5 bytes waiting\n", \
        describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))


def test_process_vm_readv_of_a_child(programs, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    rec, _ = record_within(trace, [programs["ipc_between_tasks"], "vmread"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == (b'read 42 bytes: "changed i" + "n the child\'s heap" + '
                          b'"child\'s stack"\nown copy still "the child\'s heap"\n'
                          b'child sees "changed in the child\'s heap"\n'), describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))


def test_process_vm_writev_into_a_recorded_process(programs, tmp_path: Path) -> None:
    """The write lands in the child (and in the caller's own memory) in replay too: the child
    prints what it finds there."""
    trace = tmp_path / "trace"
    rec, _ = record_within(trace, [programs["ipc_between_tasks"], "vmwrite"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == (b'process_vm_writev: 22\ninto itself: 8 "written d"\n'
                          b'child sees "written by the parent"\n'), describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))


def test_userfaultfd_is_answered_enosys_and_the_program_falls_back(programs,
                                                                   tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    rec, _ = record_within(trace, [programs["ipc_between_tasks"], "uffd"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == (b"userfaultfd: Function not implemented; falling back to reading "
                          b"the pages eagerly\nfallback read 1 pages\n"), describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))


def test_the_catalogue_knows_them() -> None:
    for name in ("mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
                 "mq_getsetattr", "semget", "semop", "semtimedop", "semctl", "msgget",
                 "msgsnd", "msgrcv", "msgctl", "process_vm_readv", "process_vm_writev"):
        assert queries.entry(name) is not None, name
    assert "userfaultfd" in queries.FAKE_ENOSYS
    assert queries.entry("shmget") is not None and queries.entry("shmctl") is not None
    assert queries.entry("shmat") is None  # shared memory others write: still refused


# ---- programs relive's authors did not write ------------------------------------------------

IPC_TOOLS = """
set -e
id=$(ipcmk -S 3 | grep -o '[0-9]*$')
ipcs -s -i "$id" | grep -c '^[0-9]'
ipcrm -s "$id"
q=$(ipcmk -Q | grep -o '[0-9]*$')
ipcs -q | grep -c " $q "
ipcrm -q "$q"
m=$(ipcmk -M 4096 | grep -o '[0-9]*$')
ipcs -m -i "$m" | grep -c 'bytes=4096'
ipcs -u | grep -c 'segments allocated'
ipcrm -m "$m"
echo done
"""


def test_util_linux_ipc_tools(tmp_path: Path) -> None:
    if not all(os.access(f"/usr/bin/{t}", os.X_OK) for t in ("ipcmk", "ipcs", "ipcrm")):
        pytest.skip("util-linux's ipcmk/ipcs/ipcrm are not installed")
    trace = tmp_path / "trace"
    rec, _ = record_within(trace, ["/bin/sh", "-c", IPC_TOOLS])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == b"3\n1\n1\n1\ndone\n", describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))


POSIX_IPC_PY = """
import os, sys, time, posix_ipc
name = "/relive-py-%d" % os.getpid()
q = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=4, max_message_size=64)
pid = os.fork()
if pid == 0:
    time.sleep(0.2)
    posix_ipc.MessageQueue(name).send(b"hello from the child", priority=5)
    os._exit(0)
print(q.receive(), flush=True)   # waits for the child
os.waitpid(pid, 0)
s = posix_ipc.Semaphore(None, posix_ipc.O_CREX)  # (a file in /dev/shm: shared memory)
s.release(); s.acquire()
print("semaphore", s.value)
q.close(); q.unlink(); s.unlink()
"""
SYSV_IPC_PY = """
import os, time, sysv_ipc
q = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX)
sem = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX)
pid = os.fork()
if pid == 0:
    time.sleep(0.2)
    q.send(b"from the child", type=4)
    sem.acquire()          # waits for the parent's release
    q.send(b"acquired", type=5)
    os._exit(0)
print(q.receive(), flush=True)
time.sleep(0.1)
sem.release()
print(q.receive(type=5), flush=True)
os.waitpid(pid, 0)
print("messages left", q.current_messages, "semaphore", sem.value)
q.remove(); sem.remove()
"""
PYTHON = {
    "posix_ipc": (POSIX_IPC_PY, b"(b'hello from the child', 5)\nsemaphore 0\n"),
    "sysv_ipc": (SYSV_IPC_PY, b"(b'from the child', 4)\n(b'acquired', 5)\n"
                              b"messages left 0 semaphore 0\n"),
}


@pytest.mark.parametrize("module", sorted(PYTHON))
def test_python_ipc_modules(tmp_path: Path, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"python's {module} (PyPI) is not installed")
    script, expected = PYTHON[module]
    (tmp_path / "prog.py").write_text(script)
    trace = tmp_path / "trace"
    rec, took = record_within(trace, [sys.executable, tmp_path / "prog.py"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == expected, describe(rec)
    assert_faithful(rec, replay(trace, timeout=LIMIT))
    print(f"{module}: recorded in {took:.2f} s")


SPIN_PY = """
import time
def work():
    t = time.time()
    while time.time() - t < 1.5:
        sum(range(1000))
work()
print("spun")
"""


def test_py_spy_samples_a_recorded_python(tmp_path: Path) -> None:
    """py-spy (PyPI) reads the sampled interpreter's memory with process_vm_readv, hundreds
    of times a second. (--idle: without it py-spy skips threads it sees stopped, and under
    relive the sampled thread is ptrace-stopped whenever py-spy runs: no samples.)"""
    spy = shutil.which("py-spy")
    if spy is None:
        pytest.skip("py-spy (PyPI) is not installed")
    (tmp_path / "spin.py").write_text(SPIN_PY)
    out = tmp_path / "samples.txt"
    trace = tmp_path / "trace"
    rec, took = record_within(trace, [spy, "record", "--idle", "--nonblocking", "-d", "1",
                                      "-r", "20", "-f", "raw", "-o", out, "--",
                                      sys.executable, tmp_path / "spin.py"], limit=120)
    assert rec.returncode == 0, describe(rec)
    assert re.search(rb"Samples: [1-9]", rec.stdout), describe(rec)
    assert re.search(r"^<module> \(.*spin\.py:\d+\);work \(.*spin\.py:\d+\) \d+$",
                     out.read_text(), re.M), out.read_text()
    assert_faithful(rec, replay(trace, timeout=120))
    print(f"py-spy: recorded in {took:.2f} s")
