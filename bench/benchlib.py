"""What the bench/ scripts share: running relive from this checkout, formatting, the host line.

The scripts are run as `python3 bench/NAME.py`, so this directory is on sys.path.
"""
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def relive_cmd(python, *args):
    return [python, "-m", "relive", *map(str, args)]


PACKAGES = ("tracefile", "tracee", "recorder", "replayer", "debugtarget", "gdbstub",
            "relive")


def relive_env():
    """The environment to time relive in: this checkout first on the path, bytecode caching
    on, as after a normal install, and $RELIVE_CPU set to the first allowed CPU (unless set).
    Some machines set PYTHONDONTWRITEBYTECODE (this project's do), which makes every run
    compile relive's sources again: ~50-100 ms of start-up a user never pays."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # On the CPU the floor and the native one-CPU runs are pinned to (relive would pick the
    # one it starts on).
    env.setdefault("RELIVE_CPU", str(min(os.sched_getaffinity(0))))
    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    *(str(REPO_ROOT / p) for p in PACKAGES)],
                   check=True, stdout=subprocess.DEVNULL)
    return env


def describe_failure(cmd, proc):
    lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "(no stderr)"
    return f"`{' '.join(map(str, cmd))}` exited {proc.returncode}: {last}"


def fmt_time(v):
    return "n/a" if v is None else f"{v * 1000:.1f} ms"


def fmt_ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def print_cells(columns, cells, markdown):
    """A table of strings: Markdown, or aligned text (first column left, others right)."""
    if markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|")
        for c in cells:
            print("| " + " | ".join(c) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(columns, *cells)]

    def line(c):
        return "  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                         for i, (x, w) in enumerate(zip(c, widths)))
    print(line(columns))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print(line(c))


def host_description():
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def trace_sizes(trace: Path) -> tuple[int, int, int]:
    """A trace's event count, the bytes of its database and of its copied files."""
    db = sum(p.stat().st_size for p in trace.glob("trace.db*"))
    files = sum(p.stat().st_size for p in (trace / "files").glob("*") if p.is_file())
    con = sqlite3.connect(trace / "trace.db")
    try:
        events = int(con.execute("SELECT value FROM meta WHERE key = 'events'").fetchone()[0])
    finally:
        con.close()
    return events, db, files
