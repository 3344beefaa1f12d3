#!/usr/bin/env python3
"""Recording through the seccomp filter against recording without it, side by side.

For each workload: native, then record + replay with the filter (the default) and with
RELIVE_SYSCALLBUF=0 (every syscall stops twice, as before the filter), in turn within each
of --repeat rounds (so load from other work spreads over all of them); median wall times,
ratios to native, and the program's own ptrace stops where it reports them.
Workloads: a loop of 300k clock_gettime (tests/programs/clock_reads.c), Python reading
time.perf_counter_ns 200k times, `find /usr -type f -size +100k`, `tar -cf OUT -C
/usr/lib/python3.11 .`.

Usage: python3 bench/bench_seccomp.py [--repeat 3] [--reads 300000]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import REPO_ROOT, relive_cmd, relive_env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reads", type=int, default=300000)
    a = ap.parse_args()
    python = os.environ.get("PYTHON", "python3")
    out = Path(tempfile.mkdtemp(prefix="bench-seccomp-"))
    clock = out / "clock_reads"
    subprocess.run(["gcc", "-O2", "-o", str(clock),
                    str(REPO_ROOT / "tests" / "programs" / "clock_reads.c")], check=True)
    workloads = {
        f"clock_gettime x{a.reads // 1000}k": [str(clock), str(a.reads)],
        "python3 perf_counter x200k": [
            "python3", "-c", "import time\nfor _ in range(200000): time.perf_counter_ns()"],
        "find /usr -size +100k": ["find", "/usr", "-type", "f", "-size", "+100k"],
        "tar python3.11": ["tar", "-cf", str(out / "o.tar"), "-C", "/usr/lib/python3.11", "."],
    }
    base = relive_env()
    configs = {"filter": dict(base, RELIVE_SYSCALLBUF="1"),
               "no filter": dict(base, RELIVE_SYSCALLBUF="0")}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.repeat):
        for name, argv in workloads.items():
            times.setdefault((name, "native"), []).append(timed(argv, base))
            for cfg, env in configs.items():
                trace = str(out / "trace")
                times.setdefault((name, f"record {cfg}"), []).append(
                    timed(relive_cmd(python, "record", "-o", trace, "--force", *argv), env))
                times.setdefault((name, f"replay {cfg}"), []).append(
                    timed(relive_cmd(python, "replay", "--autopilot", trace), env))
    cols = ["native", "record filter", "replay filter", "record no filter",
            "replay no filter"]
    print("| workload | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name in workloads:
        nat = statistics.median(times[(name, "native")])
        cells = [f"{nat:.2f} s"] + [
            f"{(m := statistics.median(times[(name, c)])):.2f} s ({m / nat:.1f}x)"
            for c in cols[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n(medians of {a.repeat}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
