"""One syscall catalogue, and no deadlock on calls that wait for another recorded task.

  - the catalogue is the only place that lists syscalls: a scan of every package's source
    fails on a hand-made set, tuple, list or dict of two or more syscall names elsewhere;
  - its rules decide "may this call wait for another task?" from the arguments (fcntl
    command, flock operation, WNOHANG, O_NONBLOCK, MSG_DONTWAIT, the path an open names), and
    recorder.blocking answers the rules' questions from /proc, with a cache kept true;
  - real programs: a task blocked in F_SETLKW, F_OFD_SETLKW, flock, a FIFO open or a pipe read
    while another recorded task holds the lock (or opens the other end) 0.2 s later records
    in about native time and replays what it printed (these hung forever before), as do
    util-linux's flock, shell FIFOs and python's fcntl.lockf across processes.
"""
from __future__ import annotations

import ast
import ctypes
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, assert_faithful, describe, replay, run_relive

from recorder.blocking import Descriptors
from tracee.syscalls import queries
from tracee.syscalls.catalogue import CATALOGUE
from tracee.syscalls.commands import O_CREAT, O_EXCL, O_NONBLOCK, O_PATH, Fcntl, Ioctl
from tracee.syscalls.rules import ArgIs, OnFd, OnOpen, OnQueue, Record, Replay, SemOps
from tracee.sysnums import NAME_OF
from tracee.task import Memory

PACKAGES = ("tracefile", "tracee", "recorder", "replayer", "debugtarget", "gdbstub",
            "relive")
CATALOGUE_DIR = REPO_ROOT / "tracee" / "syscalls"
O_RDONLY = 0
SYSCALL_NAMES = frozenset(NAME_OF.values())

# ---- the catalogue is the only list of syscalls ---------------------------------------------


def _names_in(node: ast.AST) -> list[str]:
    """The syscall names a literal collection (or a "...".split()) spells out; none if it
    also holds other words (DAP's access types "read", "write", "readWrite" are no syscall
    set)."""
    match node:
        case ast.Set(elts=elts) | ast.Tuple(elts=elts) | ast.List(elts=elts):
            items = elts
        case ast.Dict(keys=keys):
            items = [k for k in keys if k is not None]
        case ast.Call(func=ast.Attribute(value=ast.Constant(value=str(text)), attr="split")):
            words = text.split()
            return words if all(w in SYSCALL_NAMES for w in words) else []
        case _:
            return []
    words = [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return words if all(w in SYSCALL_NAMES for w in words) else []


def hand_made_name_sets(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names = _names_in(node)
        if len(names) >= 2:
            found.append(f"{filename}:{node.lineno}: {', '.join(names)}")
    return found


def test_no_syscall_name_sets_outside_the_catalogue() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if CATALOGUE_DIR in path.parents:
                continue
            found += hand_made_name_sets(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert not found, ("syscall facts belong in tracee/syscalls/catalogue.py (derive the set "
                       "in tracee/syscalls/queries.py):\n" + "\n".join(found))


def test_the_scan_sees_the_shapes_sets_were_made_in() -> None:
    """What the old modules did (scheduler's NEVER_BLOCKS, replayer's sets, a dict keyed by
    name, a tuple in a condition) is caught; one name compared alone, or names among other
    words, is not."""
    caught = hand_made_name_sets('''
NEVER_BLOCKS = frozenset("""getpid gettid mmap""".split())
EXECUTE_AS_IS = frozenset({"munmap", "mprotect"})
FILE_WRITERS = {"write": 0, "pwrite64": 0}
if name in ("execve", "execveat"):
    pass
if name == "prctl" or what in ("skip", "entry", "exit"):
    pass
ACCESS = {"write": "", "read": "-r ", "readWrite": "-a "}
''', "example.py")
    assert sorted(line.split(":")[1] for line in caught) == ["2", "3", "4", "5"], caught


def test_every_entry_is_coherent() -> None:
    for name, call in CATALOGUE.items():
        assert name in SYSCALL_NAMES, name
        if call.record is not Record.TABLE:
            assert not call.outputs, f"{name}: outputs of code or faked calls are not read"
        if call.scratch:
            assert call.may_block is not False, f"{name}: scratch for a call that never waits"
            outs = {o.arg for o in call.outputs}
            assert {m.arg for m in call.scratch} <= outs, f"{name}: scratch for a non-output"
        if call.replay is Replay.CLONE:
            assert call.record is Record.CODE, name


def test_derived_sets() -> None:
    """The facts the recorder and replayer used to list themselves, now asked."""
    assert {"mmap", "munmap", "mremap", "mprotect", "brk", "madvise", "execve"} <= \
        queries.MAP_CHANGERS
    assert queries.CLONES == {"clone", "fork", "vfork"}
    assert queries.ENDS_TASK == {"exit", "exit_group"}
    assert queries.EXECS == {"execve", "execveat"}
    assert {"rt_sigaction", "mmap", "exit", "execve", "clone"} <= queries.NOT_EMULATED
    assert "read" not in queries.NOT_EMULATED and "futex" not in queries.NOT_EMULATED
    assert queries.FILE_WRITERS["write"] == 0 and queries.FILE_WRITERS["splice"] == 2
    assert queries.READS == {"read", "pread64"} and queries.WRITES == {"write", "pwrite64"}
    assert queries.OPENS["openat"] == 1 and queries.OPENS["open"] == 0
    assert "getpid" in queries.NEVER_BLOCKS and "read" not in queries.NEVER_BLOCKS
    # the compiled record loop may take fcntl with others recorded (it leaves the waiting
    # commands to Python), but not open or flock, whose waiting it cannot tell
    assert "fcntl" in queries.PLAIN_WHEN_SHARED
    assert not {"open", "openat", "flock", "read", "ioctl"} & queries.PLAIN_WHEN_SHARED


# ---- deciding from the arguments ------------------------------------------------------------

class FakeProcess:
    """Descriptors 3 (a pipe: waits) and 4 (O_NONBLOCK or a file: does not); paths at 0x1000
    name a FIFO, at 0x2000 a regular file."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def fd_waits(self, fd: int) -> bool:
        self.asked.append(fd)
        return fd == 3

    def opening_waits(self, dirfd: int, path_addr: int) -> bool:
        self.asked.append((dirfd, path_addr))
        return path_addr == 0x1000

    def queue_waits(self, fd: int) -> bool:
        self.asked.append(("queue", fd))
        return fd == 3

    memory: dict[int, bytes] = {}

    def read_memory(self, addr: int, size: int) -> bytes | None:
        self.asked.append(("memory", addr, size))
        data = self.memory.get(addr, b"")
        return data[:size] if len(data) >= size else None


def blocks(name: str, *args: int) -> bool:
    return queries.may_block(CATALOGUE[name], args + (0,) * (6 - len(args)), FakeProcess())


def test_lock_commands_decide() -> None:
    assert blocks("fcntl", 3, Fcntl.F_SETLKW) and blocks("fcntl", 3, Fcntl.F_OFD_SETLKW)
    assert not blocks("fcntl", 3, Fcntl.F_SETLK) and not blocks("fcntl", 3, Fcntl.F_GETFL)
    assert not blocks("fcntl", 3, Fcntl.F_OFD_SETLK)
    LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
    assert blocks("flock", 3, LOCK_EX) and blocks("flock", 3, LOCK_SH)
    assert not blocks("flock", 3, LOCK_EX | LOCK_NB) and not blocks("flock", 3, LOCK_UN)
    assert blocks("ioctl", 0, Ioctl.TCSETSW) and blocks("ioctl", 0, Ioctl.TCSBRK)
    assert not blocks("ioctl", 0, Ioctl.TCGETS) and not blocks("ioctl", 0, Ioctl.FIONREAD)


def test_waits_for_children_unless_wnohang() -> None:
    WNOHANG = 1
    assert blocks("wait4", -1, 0x7000, 0) and not blocks("wait4", -1, 0x7000, WNOHANG)
    assert blocks("waitid", 0, 0, 0x7000, 4) and not blocks("waitid", 0, 0, 0x7000, 4 | WNOHANG)


def test_polls_wait_unless_their_timeout_is_zero() -> None:
    assert blocks("poll", 0x7000, 1, 100) and blocks("poll", 0x7000, 1, (1 << 32) - 1)  # -1
    assert not blocks("poll", 0x7000, 1, 0)
    assert blocks("epoll_wait", 3, 0x7000, 8, 5) and not blocks("epoll_wait", 3, 0x7000, 8, 0)
    assert blocks("ppoll", 0x7000, 1, 0)  # (a pointer to a timespec: assumed to wait)


def test_descriptor_io_decides_by_descriptor_and_flags() -> None:
    MSG_DONTWAIT = 0x40
    assert blocks("read", 3, 0x7000, 10) and not blocks("read", 4, 0x7000, 10)
    assert blocks("write", 3) and blocks("accept4", 3) and blocks("connect", 3)
    assert blocks("recvfrom", 3, 0x7000, 10, 0) and not blocks("recvfrom", 3, 0x7000, 10,
                                                                  MSG_DONTWAIT)
    assert not blocks("sendmsg", 3, 0x7000, MSG_DONTWAIT) and blocks("sendmsg", 3, 0x7000, 0)
    assert blocks("splice", 4, 0, 3) and not blocks("splice", 4, 0, 4)  # either end
    process = FakeProcess()
    queries.may_block(CATALOGUE["read"], (0xFFFF_FFFF, 0, 0, 0, 0, 0), process)
    assert process.asked == [-1]  # an int argument: 32 bits, signed


def test_opening_decides_by_flags_then_path() -> None:
    AT_FDCWD = (1 << 64) - 100
    assert blocks("openat", AT_FDCWD, 0x1000, O_RDONLY)
    assert not blocks("openat", AT_FDCWD, 0x2000, O_RDONLY)
    assert not blocks("openat", AT_FDCWD, 0x1000, O_RDONLY | O_NONBLOCK)
    assert not blocks("openat", AT_FDCWD, 0x1000, O_PATH)
    assert not blocks("open", 0x1000, O_CREAT | O_EXCL)
    assert blocks("open", 0x1000, O_CREAT) and blocks("creat", 0x1000)
    process = FakeProcess()
    queries.may_block(CATALOGUE["openat"], (AT_FDCWD, 0x1000, 0, 0, 0, 0), process)
    assert process.asked == [(-100, 0x1000)]


def test_ipc_waits_unless_told_not_to() -> None:
    """Message queues wait for room or a message: SysV ones unless IPC_NOWAIT, POSIX ones
    unless the queue descriptor is O_NONBLOCK (asked as a queue: its inode is a regular
    file)."""
    IPC_NOWAIT = 0o4000
    assert blocks("msgsnd", 1, 0x7000, 10, 0) and not blocks("msgsnd", 1, 0x7000, 10, IPC_NOWAIT)
    assert blocks("msgrcv", 1, 0x7000, 10, 0, 0)
    assert not blocks("msgrcv", 1, 0x7000, 10, 0, IPC_NOWAIT)
    assert not blocks("semctl", 1, 0, 13, 0x7000) and not blocks("msgget", 0, 0)
    process = FakeProcess()
    assert queries.may_block(CATALOGUE["mq_timedreceive"], (3, 0x7000, 64, 0, 0, 0), process)
    assert not queries.may_block(CATALOGUE["mq_timedsend"], (4, 0x7000, 5, 1, 0, 0), process)
    assert process.asked == [("queue", 3), ("queue", 4)]
    assert not blocks("mq_open", 0x1000, 0) and not blocks("mq_getsetattr", 3, 0x7000, 0)


def sembufs(*ops: tuple[int, int]) -> bytes:
    """struct sembuf {unsigned short num; short op; short flg} for each (op, flg)."""
    return b"".join(struct.pack("<Hhh", k, op, flg) for k, (op, flg) in enumerate(ops))


def test_semop_waits_unless_each_op_that_could_has_ipc_nowait() -> None:
    IPC_NOWAIT = 0o4000
    FakeProcess.memory = {
        0x1000: sembufs((1, 0)),                           # post: never waits
        0x2000: sembufs((1, 0), (-1, 0)),                  # take: waits
        0x3000: sembufs((0, 0)),                           # wait for zero
        0x4000: sembufs((-1, IPC_NOWAIT), (0, IPC_NOWAIT | 0o10000)),  # (SEM_UNDO too)
    }
    assert not blocks("semop", 1, 0x1000, 1) and not blocks("semtimedop", 1, 0x1000, 1, 0)
    assert blocks("semop", 1, 0x2000, 2) and blocks("semtimedop", 1, 0x2000, 2, 0x9000)
    assert not blocks("semop", 1, 0x2000, 1)   # only the post is read
    assert blocks("semop", 1, 0x3000, 1) and not blocks("semop", 1, 0x4000, 2)
    assert not blocks("semop", 1, 0x5000, 1)   # unreadable: EFAULT at once
    process = FakeProcess()
    assert queries.may_block(CATALOGUE["semop"], (1, 0x2000, 5000, 0, 0, 0), process)
    assert process.asked == [], "a count past any the kernel takes: assumed to wait, unread"


def test_mq_setattr_changes_status_flags() -> None:
    call = CATALOGUE["mq_getsetattr"]
    assert queries.changes_status(call, (3, 0x7fff_0000_0000, 0, 0, 0, 0))  # low half 0
    assert not queries.changes_status(call, (3, 0, 0x7000, 0, 0, 0))  # mq_getattr


def test_rules_only_in_the_vocabulary() -> None:
    for name, call in CATALOGUE.items():
        assert isinstance(call.may_block, (bool, ArgIs, OnFd, OnOpen, OnQueue, SemOps)), name


# ---- the process's side: /proc, and a cache kept true --------------------------------------

@pytest.fixture
def me() -> tuple[Descriptors, int, Memory]:
    mem = Memory(os.getpid())
    yield Descriptors(), os.getpid(), mem
    mem.close()


def test_descriptors_from_proc(me, tmp_path: Path) -> None:
    fds, pid, _ = me
    r, w = os.pipe()
    nonblocking_r, nonblocking_w = os.pipe2(os.O_NONBLOCK)
    regular = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        assert fds.fd_waits(pid, pid, r) and fds.fd_waits(pid, pid, w)
        assert not fds.fd_waits(pid, pid, nonblocking_r)
        assert not fds.fd_waits(pid, pid, regular) and not fds.fd_waits(pid, pid, null)
        assert not fds.fd_waits(pid, pid, 999)  # not open: EBADF at once
    finally:
        for fd in (r, w, nonblocking_r, nonblocking_w, regular, null):
            os.close(fd)


def test_message_queue_descriptors_from_proc(me) -> None:
    """A POSIX queue's descriptor stats as a regular file, yet receiving from it waits
    unless it is O_NONBLOCK: the flags are read from /proc/PID/fdinfo."""
    fds, pid, _ = me
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    name = f"/relive-unit-{pid}".encode()
    waiting = libc.mq_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None)
    assert waiting >= 0, os.strerror(ctypes.get_errno())
    libc.mq_unlink(name)
    nonblocking = os.dup(waiting)
    try:
        assert not fds.fd_waits(pid, pid, waiting), "a regular file to stat"
        assert fds.queue_waits(pid, waiting)
        os.close(nonblocking)
        nonblocking = libc.mq_open(name, os.O_RDWR | os.O_CREAT | O_NONBLOCK, 0o600, None)
        libc.mq_unlink(name)
        assert not fds.queue_waits(pid, nonblocking)
        assert not fds.queue_waits(pid, 999)  # not open: EBADF at once
    finally:
        os.close(waiting)
        os.close(nonblocking)


def test_cache_follows_status_flags_close_and_dup(me) -> None:
    fds, pid, _ = me
    r, w = os.pipe()
    other_r, other_w = os.pipe2(os.O_NONBLOCK)
    try:
        assert fds.fd_waits(pid, pid, r)
        os.set_blocking(r, False)  # fcntl(F_SETFL) as the program would
        fcntl_call = CATALOGUE["fcntl"]
        fds.after_call(pid, fcntl_call, (r, Fcntl.F_GETFL, 0, 0, 0, 0), 0)
        assert fds.fd_waits(pid, pid, r), "F_GETFL changes nothing: the cached answer stays"
        fds.after_call(pid, fcntl_call, (r, Fcntl.F_SETFL, O_NONBLOCK, 0, 0, 0), 0)
        assert not fds.fd_waits(pid, pid, r)
        assert fds.fd_waits(pid, pid, w)
        os.dup2(other_r, w)  # w is now a non-blocking read end
        fds.after_call(pid, CATALOGUE["dup2"], (other_r, w, 0, 0, 0, 0), w)
        assert not fds.fd_waits(pid, pid, w)
        os.close(w)
        fds.after_call(pid, CATALOGUE["close"], (w, 0, 0, 0, 0, 0), 0)
        new_r, new_w = os.pipe()  # (w's number again, most likely: it was the lowest free)
        assert fds.fd_waits(pid, pid, new_r) and fds.fd_waits(pid, pid, new_w)
        os.close(new_r)
        os.close(new_w)
    finally:
        for fd in (r, other_r, other_w):
            try:
                os.close(fd)
            except OSError:
                pass


def test_paths_from_proc(me, tmp_path: Path) -> None:
    fds, pid, mem = me
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    buffers = {}
    for name in (str(tmp_path / "fifo"), str(tmp_path / "file"), str(tmp_path / "none"),
                 "fifo", "/dev/null", "/dev/tty"):
        buffers[name] = ctypes_string(name)
    assert fds.opening_waits(pid, mem, -100, buffers[str(tmp_path / "fifo")])
    assert not fds.opening_waits(pid, mem, -100, buffers[str(tmp_path / "file")])
    assert not fds.opening_waits(pid, mem, -100, buffers[str(tmp_path / "none")])
    assert not fds.opening_waits(pid, mem, -100, buffers["/dev/null"])
    assert fds.opening_waits(pid, mem, -100, buffers["/dev/tty"])  # a terminal may wait
    # /proc/self and /dev/fd name the process that opens, not the recorder
    fifo = os.open(tmp_path / "fifo", os.O_RDWR)  # (O_RDWR: a FIFO open that never waits)
    other = subprocess.Popen(["sleep", "30"])  # which has no descriptor `fifo`
    try:
        for name in (f"/proc/self/fd/{fifo}", f"/dev/fd/{fifo}"):
            assert fds.opening_waits(pid, mem, -100, ctypes_string(name))
            assert not fds.opening_waits(other.pid, mem, -100, ctypes_string(name))
    finally:
        other.kill()
        other.wait()
        os.close(fifo)
    dirfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert fds.opening_waits(pid, mem, dirfd, buffers["fifo"])  # relative to dirfd
    finally:
        os.close(dirfd)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert fds.opening_waits(pid, mem, -100, buffers["fifo"])  # relative to the cwd
    finally:
        os.chdir(old)


_KEEP: list[object] = []


def ctypes_string(text: str) -> int:
    """The address of a NUL-terminated copy of `text` in this process."""
    buf = ctypes.create_string_buffer(text.encode())
    _KEEP.append(buf)
    return ctypes.addressof(buf)


# ---- recorded programs: no hang, faithful replay --------------------------------------------

CASES = [(w, h) for w in ("setlkw", "ofd", "flock", "fifo", "pipe") for h in ("proc", "thread")
         if (w, h) != ("setlkw", "thread")]  # (a process's record locks never conflict)
EXPECTED = b"holder releases\nwaiter got it\ndone\n"


def record_within(trace: Path, argv: list[str],
                  limit: float) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    try:
        rec = run_relive("record", "-o", trace, *argv, stdin=subprocess.DEVNULL, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"relive record {' '.join(argv)} still ran after {limit} s (natively it "
                    "takes 0.2 s): a task waiting for another kept the CPU", pytrace=False)
    return rec, time.monotonic() - started


@pytest.mark.parametrize("wait,how", CASES)
def test_waiting_for_another_task_records_and_replays(programs, tmp_path: Path, wait: str,
                                                      how: str) -> None:
    trace = tmp_path / "trace"
    rec, took = record_within(trace, [programs["blocking_between_tasks"], wait, how,
                                      str(tmp_path)], 60)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == EXPECTED, describe(rec)
    rep = replay(trace, timeout=60)
    assert_faithful(rec, rep)
    print(f"{wait} {how}: recorded in {took:.2f} s")


LOCKF_PY = """
import fcntl, multiprocessing, sys, time
def child(path):
    with open(path, "a") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)  # F_SETLKW
        print("child got the lock", flush=True)
if __name__ == "__main__":
    path = sys.argv[1]
    f = open(path, "a")
    fcntl.lockf(f, fcntl.LOCK_EX)
    c = multiprocessing.Process(target=child, args=(path,))
    c.start()
    time.sleep(0.2)
    print("parent releases", flush=True)
    fcntl.lockf(f, fcntl.LOCK_UN)
    c.join()
"""
REAL = {
    # util-linux flock(1): the second waits in flock(2) for the first's sleep
    "flock(1)": ("/usr/bin/flock", 'flock "$D/lock" sleep 0.3 & sleep 0.1; '
                 'flock "$D/lock" echo second; wait',
                 b"second\n"),
    # the shell's reader waits in open() for a writer another process opens 0.2 s later
    "mkfifo + sh": ("/usr/bin/mkfifo", 'mkfifo "$D/f"; (sleep 0.2; echo through the fifo '
                    '> "$D/f") & cat "$D/f"; wait', b"through the fifo\n"),
    "python fcntl.lockf": ("/usr/bin/python3", '/usr/bin/python3 "$D/lockf.py" "$D/lock"',
                           b"parent releases\nchild got the lock\n"),
}


@pytest.mark.parametrize("name", REAL)
def test_real_programs_waiting_for_each_other(tmp_path: Path, name: str) -> None:
    tool, script, expected = REAL[name]
    if not os.access(tool, os.X_OK):
        pytest.skip(f"{tool} is not installed")
    (tmp_path / "lockf.py").write_text(LOCKF_PY)
    trace = tmp_path / "trace"
    env = dict(os.environ, D=str(tmp_path))
    started = time.monotonic()
    try:
        rec = run_relive("record", "-o", trace, "/bin/sh", "-c", script, env=env,
                         stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"relive record of {name} still ran after 60 s (natively 0.3 s)",
                    pytrace=False)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == expected, describe(rec)
    assert_faithful(rec, replay(trace, timeout=60))
    print(f"{name}: recorded in {time.monotonic() - started:.2f} s")
