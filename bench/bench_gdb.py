#!/usr/bin/env python3
"""Benchmark gdb's forward commands on a relive replay against gdbserver on the live program.

Both sides run the same binary (bench/bench_hits.c: a loop calling target_fn() N times, no
system calls in the loop) and the same gdb command script, in one run:

  relive      python3 -m relive replay --port 0 TRACE   (TRACE recorded from the binary)
  gdbserver   gdbserver --once 127.0.0.1:0 BINARY ARGS  (the live program)

gdb connects to each with `target remote` and no program file (it reads the executable and
the libraries through the remote target in both cases). Times are taken inside gdb with its
embedded Python (time.perf_counter() around gdb.execute()), so gdb's own start-up is not
counted, except for the wall-clock connect time, where it is subtracted:

  stepi         latency of one `stepi` in the program's own code: median (and 90th
                percentile) of --stepi single steps, taken after the first hit of target_fn
  continue      one `continue` to a breakpoint on target_fn: median of --hits consecutive
                hits (the breakpoint is hit --hits times; every stop goes back to gdb)
  connect       `gdb -batch -ex 'target remote ADDR' -ex 'info registers rip'` wall time
                minus `gdb -batch -ex echo` (gdb's own start-up), median of --connect-repeat
                runs, each against a freshly started server; also the same interval timed
                inside gdb (from `target remote` to its return)

If gdbserver is not installed (`apt-get install -y gdbserver`), its column is n/a and the
script says so. Cells that fail are n/a and the reason is listed under the table.

Usage: python3 bench/bench_gdb.py [--stepi 200] [--hits 10000] [--connect-repeat 5]
                                  [--markdown]

This module also holds the helpers bench/bench_reverse.py uses (servers, the gdb driver,
tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
GDB = shutil.which("gdb")
GDBSERVER = shutil.which("gdbserver")

#: Settings every gdb here starts with: no pager, no questions, no debuginfod downloads,
#: a generous packet timeout (a reverse search can take a while before it answers).
GDB_INIT = ("set pagination off", "set width 0", "set height 0", "set confirm off",
            "set debuginfod enabled off", "set remotetimeout 600")

RELIVE_SERVING = re.compile(r"relive: serving .+ on (?P<host>[0-9.]+):(?P<port>\d+)$",
                            re.MULTILINE)
GDBSERVER_LISTENING = re.compile(r"Listening on port (?P<port>\d+)")


class Failed(Exception):
    pass


# -- building and recording -----------------------------------------------------------------

def compile_c(src: Path, binary: Path, *flags: str) -> Path:
    binary.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["gcc", "-O0", "-g", *flags, "-o", str(binary), str(src)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"compiling {src} failed:\n{proc.stderr}")
    return binary


def relive_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def gdb_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, DEBUGINFOD_URLS="", LC_ALL="C", LANG="C")
    env.pop("GDBHISTFILE", None)
    env.update(extra or {})
    return env


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def relive_record(python: str, trace: Path, argv: list[str], timeout: float) -> float:
    """Record argv into trace; return the wall time. Failed if relive fails."""
    cmd = [python, "-m", "relive", "record", "-o", str(trace), "--force", *argv]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=relive_env(), timeout=timeout, cwd=REPO_ROOT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"relive record: {e}") from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise Failed(f"relive record exited {proc.returncode}: {last_line(proc.stderr)}")
    return elapsed


def relive_event_count(python: str, trace: Path) -> int | None:
    try:
        proc = subprocess.run([python, "-m", "relive", "info", str(trace)], capture_output=True,
                              text=True, env=relive_env(), timeout=120, cwd=REPO_ROOT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\s*events:\s*(\d+)", proc.stdout, re.MULTILINE)
    return int(m.group(1)) if m else None


# -- servers --------------------------------------------------------------------------------

class Server:
    """A debug server as a subprocess in its own process group, its port parsed from its
    stderr; close() ends the whole group."""

    def __init__(self, name: str, argv: list[str], ready: re.Pattern[str], workdir: Path,
                 env: dict[str, str] | None = None, startup_timeout: float = 60.0) -> None:
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=workdir)[1])
        self.out = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".out", dir=workdir)[1])
        with open(self.out, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, cwd=REPO_ROOT, start_new_session=True)
        try:
            self.port = self._wait(ready, startup_timeout)
        except BaseException:
            self.close()
            raise
        self.address = f"127.0.0.1:{self.port}"

    def _wait(self, ready: re.Pattern[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = ready.search(self.stderr())
            if m:
                return int(m["port"])
            if self.proc.poll() is not None:
                raise Failed(f"{self.name} exited {self.proc.returncode} before listening: "
                             f"{last_line(self.stderr())}")
            time.sleep(0.02)
        raise Failed(f"{self.name} did not report its port within {timeout:.0f} s")

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.log, self.out):
            try:
                f.unlink()
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def relive_server(python: str, trace: Path, workdir: Path) -> Server:
    return Server("relive", [python, "-m", "relive", "replay", "--port", "0", str(trace)],
                  RELIVE_SERVING, workdir, env=relive_env())


def gdbserver_server(argv: list[str], workdir: Path) -> Server:
    assert GDBSERVER is not None
    return Server("gdbserver", [GDBSERVER, "--once", "127.0.0.1:0", *argv],
                  GDBSERVER_LISTENING, workdir)


# -- driving gdb ----------------------------------------------------------------------------

#: Loaded into gdb before every benchmark body. `run(cmd)` times one gdb command with
#: time.perf_counter(); `@@CMD`/`@@DONE` lines let the parent interrupt a command that runs
#: past its time limit (it sends gdb SIGINT, which gdb forwards to the target as Ctrl-C).
GDB_PRELUDE = r'''
import gdb, json, time, statistics

P = json.loads(__PARAMS__)

class Interrupted(Exception):
    pass

def emit(key, value):
    print("@@BENCH " + json.dumps([key, value]), flush=True)

def note(msg):
    print("@@NOTE " + str(msg).replace("\n", " | "), flush=True)

_last_stop = [None]

def _on_stop(ev):
    _last_stop[0] = ev

gdb.events.stop.connect(_on_stop)

def _sigint_stop():
    """Whether the parent interrupted the last command (it leaves a flag file)."""
    import os
    try:
        os.unlink(P["_flag"])
        return True
    except OSError:
        pass
    ev = _last_stop[0]
    return isinstance(ev, gdb.SignalEvent) and ev.stop_signal == "SIGINT"

def run(cmd, limit=0):
    """Execute cmd; return (seconds, output). Interrupted if the parent interrupted it
    (after `limit` seconds, 0 = the run's default): gdb then stops with SIGINT."""
    _last_stop[0] = None
    print(f"@@CMD {limit} {cmd}", flush=True)
    t = time.perf_counter()
    try:
        out = gdb.execute(cmd, to_string=True)
    except KeyboardInterrupt:
        print("@@DONE", flush=True)
        _sigint_stop()
        raise Interrupted(f"`{cmd}` interrupted after {time.perf_counter() - t:.1f} s "
                          "(time limit)") from None
    except gdb.error as e:
        print("@@DONE", flush=True)
        raise gdb.error(f"`{cmd}`: {e}") from None
    dt = time.perf_counter() - t
    print("@@DONE", flush=True)
    if _sigint_stop():
        raise Interrupted(f"`{cmd}` interrupted after {dt:.1f} s (time limit)")
    return dt, out

def quiet(cmd):
    return gdb.execute(cmd, to_string=True)

def where():
    try:
        f = gdb.selected_frame()
        return f"{f.name()}:{f.find_sal().line}"
    except gdb.error as e:
        return f"<{e}>"

def value(expr):
    try:
        return int(gdb.parse_and_eval(expr))
    except gdb.error:
        return None

def stats(xs):
    xs = sorted(xs)
    if not xs:
        return None
    return {"n": len(xs), "median": statistics.median(xs), "mean": sum(xs) / len(xs),
            "p90": xs[min(len(xs) - 1, int(0.9 * len(xs)))], "min": xs[0], "max": xs[-1],
            "first": None}

def attempt(key, fn):
    """Run one measurement; a failure is reported, not fatal."""
    try:
        return fn()
    except (gdb.error, Interrupted, RuntimeError, ValueError) as e:
        emit(key + ".error", str(e))
        return None
'''


class GdbResult:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.notes: list[str] = []
        self.transcript: list[str] = []
        self.error: str | None = None

    def get(self, key: str) -> object:
        return self.values.get(key)

    def errors(self) -> dict[str, str]:
        return {k[:-len(".error")]: str(v) for k, v in self.values.items()
                if k.endswith(".error")}


def run_gdb(body: str, params: dict, workdir: Path, *, timeout: float, cmd_limit: float,
            program: list[str] | None = None, env: dict[str, str] | None = None,
            label: str = "gdb") -> GdbResult:
    """Run `gdb -nx -batch` with GDB_PRELUDE + body as a Python script. Any command that
    runs longer than cmd_limit is interrupted (SIGINT to gdb); the whole run is killed after
    timeout. Results are the script's @@BENCH lines, whatever it got to."""
    assert GDB is not None
    workdir.mkdir(parents=True, exist_ok=True)
    fd, script_name = tempfile.mkstemp(prefix=f"{label}-", suffix=".py", dir=workdir)
    script = Path(script_name)
    flag = script.with_suffix(".interrupted")
    params = dict(params, _flag=str(flag))
    with os.fdopen(fd, "w") as f:
        f.write(GDB_PRELUDE.replace("__PARAMS__", repr(json.dumps(params))))
        f.write("\n# -- benchmark body --\n")
        f.write(body)
    argv = [GDB, "-nx", "-batch"]
    for setting in GDB_INIT:
        argv += ["-iex", setting]
    argv += ["-x", str(script)]
    if program:
        argv += ["--args", *program]
    res = GdbResult()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env or gdb_env(),
                            start_new_session=True)
    state = {"cmd": None, "since": 0.0, "interrupts": 0, "limit": cmd_limit}
    lock = threading.Lock()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with lock:
                if line.startswith("@@CMD "):
                    _, limit, cmd = line.split(" ", 2)
                    state.update(cmd=cmd, since=time.monotonic(), interrupts=0,
                                 limit=float(limit) or cmd_limit)
                    continue
                if line == "@@DONE":
                    state["cmd"] = None
                    continue
            if line.startswith("@@BENCH "):
                try:
                    key, val = json.loads(line[8:])
                    res.values[key] = val
                except ValueError:
                    res.notes.append(f"unparsable result line: {line[:200]}")
            elif line.startswith("@@NOTE "):
                res.notes.append(line[7:])
            else:
                if len(res.transcript) < 4000:
                    res.transcript.append(line)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now > deadline:
                res.error = f"{label}: killed after the {timeout:.0f} s time limit"
                break
            with lock:
                cmd, since, n = state["cmd"], state["since"], state["interrupts"]
                limit = state["limit"]
            # Interrupt a command past its limit; again 10 s later if it did not stop.
            if cmd is not None and now - since > limit + 10 * n:
                flag.touch()
                try:
                    os.kill(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
                with lock:
                    state["interrupts"] = n + 1
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        thread.join(timeout=5)
        for f in (script, flag):
            try:
                f.unlink()
            except OSError:
                pass
    if res.error is None and proc.returncode != 0 and not res.values:
        last = last_line(chr(10).join(res.transcript))
        res.error = f"{label}: gdb exited {proc.returncode}: {last}"
    return res


# -- formatting -----------------------------------------------------------------------------

def fmt_s(v: object, unit: str = "ms") -> str:
    if not isinstance(v, (int, float)):
        return "n/a"
    if unit == "us":
        return f"{v * 1e6:.0f} µs"
    if unit == "s":
        return f"{v:.2f} s"
    ms = v * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_ratio(a: object, b: object) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b <= 0:
        return "n/a"
    return f"{a / b:.2f}x"


def print_table(columns: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(columns, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                         for i, (x, w) in enumerate(zip(cells, widths)))
    print(line(columns))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def print_errors(errors: list[str], markdown: bool) -> None:
    if errors:
        print("\nn/a cells and problems:" + ("\n" if markdown else ""))
        for e in errors:
            print(f"- {e}")


def host_description() -> str:
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        gdb_version = subprocess.run([GDB or "gdb", "--version"], capture_output=True,
                                     text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        gdb_version = "gdb ?"
    return (f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {gdb_version}")


def load_note() -> str:
    try:
        return "load average at start: " + " ".join(
            Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


# -- this benchmark -------------------------------------------------------------------------

FORWARD_BODY = r'''
def main():
    t = time.perf_counter()
    run("target remote " + P["address"])
    emit("connect_in_gdb", time.perf_counter() - t)
    run("break target_fn")
    run("continue")
    if where().split(":")[0] != "target_fn":
        raise RuntimeError(f"first continue stopped in {where()}, not target_fn")
    quiet("delete")

    def stepi():
        times = []
        for _ in range(P["stepi"]):
            times.append(run("stepi")[0])
        s = stats(times)
        s["first"] = times[0]
        emit("stepi", s)
        note(f"after {len(times)} stepi: {where()}")
    attempt("stepi", stepi)

    def hits():
        bp = gdb.Breakpoint("target_fn")
        times = []
        for i in range(P["hits"]):
            dt, _ = run("continue")
            times.append(dt)
            if i == 0 and where().split(":")[0] != "target_fn":
                raise RuntimeError(f"continue stopped in {where()}, not target_fn")
        if where().split(":")[0] != "target_fn" or bp.hit_count != P["hits"]:
            raise RuntimeError(f"after {P['hits']} continues: at {where()}, breakpoint hit "
                               f"{bp.hit_count} times")
        s = stats(times)
        s["total"] = sum(times)
        emit("continue", s)
    attempt("continue", hits)

try:
    main()
except Exception as e:
    emit("fatal.error", f"{type(e).__name__}: {e}")
'''

CONNECT_BODY = r'''
t = time.perf_counter()
try:
    if P["address"]:
        gdb.execute("target remote " + P["address"], to_string=True)
        gdb.execute("info registers rip", to_string=True)
    else:
        gdb.execute("echo", to_string=True)
    emit("t", time.perf_counter() - t)
except Exception as e:
    emit("fatal.error", f"{type(e).__name__}: {e}")
'''


def wall_gdb(commands: list[str], timeout: float = 120) -> tuple[float, str]:
    """Wall time of `gdb -nx -batch GDB_INIT commands` (the connect measurement)."""
    assert GDB is not None
    argv = [GDB, "-nx", "-batch"]
    for setting in GDB_INIT:
        argv += ["-iex", setting]
    for c in commands:
        argv += ["-ex", c]
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=gdb_env(), timeout=timeout,
                          check=False)
    elapsed = time.perf_counter() - start
    return elapsed, proc.stdout.decode(errors="replace")


def connect_times(start_server, repeat: int, workdir: Path) -> tuple[list[float], list[float]]:
    """(wall times, in-gdb times) of `target remote` + `info registers rip`, a fresh server
    each time."""
    walls, inside = [], []
    for _ in range(repeat):
        with start_server() as srv:
            t0 = time.perf_counter()
            elapsed, out = wall_gdb(
                ["python import time; _t0 = time.perf_counter()",
                 f"target remote {srv.address}", "info registers rip",
                 "python print('@@T %.9f' % (time.perf_counter() - _t0))"])
            del t0
            m = re.search(r"@@T ([0-9.]+)", out)
            if "rip" not in out or not m:
                raise Failed(f"connect to {srv.name} failed: {last_line(out)}")
            walls.append(elapsed)
            inside.append(float(m.group(1)))
    return walls, inside


def baseline_times(repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        elapsed, _ = wall_gdb(["python import time; _t0 = time.perf_counter()", "echo",
                               "python print('@@T %.9f' % (time.perf_counter() - _t0))"])
        times.append(elapsed)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stepi", type=int, default=200, help="stepi commands timed (200)")
    ap.add_argument("--hits", type=int, default=10_000,
                    help="breakpoint hits timed with `continue` (10000)")
    ap.add_argument("--connect-repeat", type=int, default=5,
                    help="connect measurements per server, median reported (5)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for `python3 -m relive` (default: this one)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                    help="build and trace directory (default bench/out)")
    ap.add_argument("--timeout", type=float, default=420,
                    help="time limit of one gdb session, seconds (420)")
    args = ap.parse_args()
    if GDB is None:
        sys.exit("gdb is not installed")
    args.out = args.out.resolve()
    work = args.out / "gdb-work"
    errors: list[str] = []
    started = time.monotonic()
    load = load_note()

    binary = compile_c(BENCH_DIR / "bench_hits.c", args.out / "bench_hits")
    # A few more iterations than hits: the stepi run goes through some of them first.
    argv = [str(binary), str(args.hits + args.stepi + 100)]
    trace = args.out / "traces" / "bench_hits"
    trace.parent.mkdir(parents=True, exist_ok=True)
    print(f"... recording {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        relive_record(args.python, trace, argv, timeout=300)
        have_trace = True
    except Failed as e:
        errors.append(f"relive: {e}")
        have_trace = False
    if GDBSERVER is None:
        msg = ("gdbserver is not installed (apt-get install -y gdbserver): "
               "the gdbserver column is n/a")
        print(f"NOTE: {msg}", file=sys.stderr)
        errors.append(msg)

    backends = {}
    if have_trace:
        backends["relive"] = lambda: relive_server(args.python, trace, work)
    if GDBSERVER is not None:
        backends["gdbserver"] = lambda: gdbserver_server(argv, work)

    results: dict[str, dict[str, object]] = {"relive": {}, "gdbserver": {}}
    params = {"stepi": args.stepi, "hits": args.hits}
    for name, start_server in backends.items():
        print(f"... {name}: stepi x{args.stepi}, continue x{args.hits}", file=sys.stderr,
              flush=True)
        try:
            with start_server() as srv:
                res = run_gdb(FORWARD_BODY, dict(params, address=srv.address), work,
                              timeout=args.timeout, cmd_limit=60, label=f"fwd-{name}")
        except Failed as e:
            errors.append(f"{name}: {e}")
            continue
        results[name].update(res.values)
        if res.error:
            errors.append(res.error)
        for k, v in res.errors().items():
            errors.append(f"{name} / {k}: {v}")
        for n in res.notes:
            print(f"    {name}: {n}", file=sys.stderr)

    print(f"... connect x{args.connect_repeat} per server, gdb start-up baseline",
          file=sys.stderr, flush=True)
    base = baseline_times(args.connect_repeat)
    for name, start_server in backends.items():
        try:
            walls, inside = connect_times(start_server, args.connect_repeat, work)
            results[name]["connect_wall"] = statistics.median(walls) - statistics.median(base)
            results[name]["connect_inside"] = statistics.median(inside)
        except (Failed, subprocess.TimeoutExpired) as e:
            errors.append(f"{name} / connect: {e}")

    def g(name: str, key: str, field: str | None = None) -> object:
        v = results[name].get(key)
        if field is not None:
            v = v.get(field) if isinstance(v, dict) else None
        return v

    rows_spec = [
        (f"stepi, median of {args.stepi}", "stepi", "median"),
        ("stepi, 90th percentile", "stepi", "p90"),
        (f"continue to a breakpoint, median of {args.hits:,} hits", "continue", "median"),
        (f"continue x {args.hits:,}, total", "continue", "total"),
        ("connect: target remote to prompt (wall - gdb start-up)", "connect_wall", None),
        ("connect: target remote timed inside gdb", "connect_inside", None),
    ]
    rows = []
    for label, key, field in rows_spec:
        unit = "s" if field == "total" else "ms"
        a, b = g("relive", key, field), g("gdbserver", key, field)
        rows.append([label, fmt_s(a, unit), fmt_s(b, unit), fmt_ratio(a, b)])
    rows.append(["gdb start-up (`gdb -batch -ex echo`), for reference",
                 fmt_s(statistics.median(base)), fmt_s(statistics.median(base)), ""])

    header = (f"relive replay vs gdbserver on the live program, bench_hits.c "
              f"({args.hits + args.stepi + 100:,} calls of target_fn); host: "
              f"{host_description()}; {load}; total {time.monotonic() - started:.0f} s.")
    print(header + ("\n" if args.markdown else ""))
    print_table(["measurement", "relive replay", "gdbserver (live)", "relive/gdbserver"],
                rows, args.markdown)
    print_errors(errors, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
