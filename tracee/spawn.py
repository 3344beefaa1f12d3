"""Start a program under ptrace (PTRACE_SEIZE) and stop it at its first instruction after exec.

The child stops itself before exec so the parent can seize it with all options set; the
first stop the caller sees is the exec event, before the dynamic loader has run.
"""
from __future__ import annotations

import os
import signal

from tracee import ptrace_api as api
from tracee.stops import EventStop, Exited, Killed, SignalStop, decode

OPTIONS = (api.Opt.TRACESYSGOOD | api.Opt.TRACEEXEC | api.Opt.TRACECLONE | api.Opt.TRACEFORK
           | api.Opt.TRACEVFORK | api.Opt.TRACEEXIT | api.Opt.EXITKILL | api.Opt.TRACESECCOMP)


class SpawnError(OSError):
    """The program could not be started (exec failed in the child)."""


# Ignored by the Python interpreter running relive (SIGPIPE, SIGXFSZ) or by relive itself
# (SIGINT, which the terminal should deliver to the program): the program gets the default.
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def ignored_signals(pid: int) -> list[int]:
    """The signals process `pid` ignores (SigIgn in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", errors="surrogateescape") as f:  # Name: is any bytes
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return [sig for sig in range(1, 65) if mask & (1 << (sig - 1))]


def _set_dispositions(ignored: list[int] | None) -> None:
    """In the child before exec: what relive's Python changed goes back to the default; with
    `ignored` (replay), exactly those signals are ignored, as they were when recorded."""
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if ignored is not None:
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def spawn(path: str, argv: list[str], env: dict[str, str], *, no_aslr: bool = False,
          ignored: list[int] | None = None, own_group: bool = False) -> int:
    """Fork, exec `path` under ptrace; returns the pid stopped at its exec event. With
    `own_group` (replay) the program gets a process group of its own, out of the terminal's
    foreground group: the terminal's Ctrl-C is for gdb, which stops the replay through the
    stub, and must never reach the replayed program as a signal it did not get when
    recorded. (A group, not a session: a new session is a new scheduler autogroup, and
    tracer and tracee in two autogroups made replay 3x slower on a busy machine.)"""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(err_r)
            api.prctl(api.PR_SET_PDEATHSIG, signal.SIGKILL)
            if own_group:
                os.setpgid(0, 0)
            _set_dispositions(ignored)
            if no_aslr:
                api.personality(0x0040000)  # ADDR_NO_RANDOMIZE
            os.kill(os.getpid(), signal.SIGSTOP)
            os.execve(path, argv, env)
        except OSError as e:
            os.write(err_w, str(e.errno or 1).encode())
        finally:
            os._exit(127)
    os.close(err_w)
    _, status = os.waitpid(pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        os.close(err_r)
        raise SpawnError(0, f"child {pid} did not stop before exec (wait status {status:#x})")
    api.ptrace(api.Req.SEIZE, pid, 0, int(OPTIONS))
    os.kill(pid, signal.SIGCONT)
    while True:
        stop = decode(pid, api.wait_task(pid))
        match stop:
            case EventStop(event=api.Event.EXEC):
                os.close(err_r)
                return pid
            case Exited() | Killed():
                code = os.read(err_r, 16)
                os.close(err_r)
                errnum = int(code) if code else 0
                raise SpawnError(errnum, f"cannot execute {path}: {os.strerror(errnum)}")
            case EventStop(event=api.Event.EXIT):
                api.ptrace(api.Req.CONT, pid, 0, 0)
            case SignalStop(signal=sig) if sig in (signal.SIGCONT, signal.SIGSTOP):
                api.ptrace(api.Req.CONT, pid, 0, 0)
            case SignalStop(signal=sig):
                api.ptrace(api.Req.CONT, pid, 0, sig)
            case _:
                api.ptrace(api.Req.CONT, pid, 0, 0)


def pin_to_one_cpu(prefer: int | None = None) -> int | None:
    """Bind this process (and so the tracees it starts) to one CPU, as rr does: a ptrace stop
    and resume on the same CPU costs a few microseconds, across CPUs several times more. The
    recorded program is shown the CPUs it would have natively (recorder.cpu_view).
    RELIVE_CPU picks it; RELIVE_CPU=none disables pinning. Otherwise `prefer` if allowed (a
    replay's recording CPU), else the CPU this process runs on, where the scheduler has just
    put it (so concurrent recordings and replays spread out, where always the first CPU made
    them share it)."""
    choice = os.environ.get("RELIVE_CPU", "")
    if choice == "none":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if choice.isdigit() and int(choice) in allowed:
        cpu = int(choice)
    elif prefer is not None and prefer in allowed:
        cpu = prefer
    else:
        current = _current_cpu()
        cpu = current if current in allowed else allowed[0]
    os.sched_setaffinity(0, {cpu})
    return cpu


def _current_cpu() -> int | None:
    """The CPU this thread last ran on (field 39 of /proc/thread-self/stat)."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[36])  # fields from the 3rd (state) on
    except (OSError, IndexError, ValueError):
        return None
