#!/usr/bin/env python3
"""Benchmark `relive dap`: how fast an editor's Step Back answers on a ~30 s trace.

The workload is bench/bench_rev.c (see bench_reverse.py): --seconds "seconds" of ~1 s each
natively, each of --chunks chunks of hot(), arithmetic and one system call; marker(s) is
called at the start of second s. The trace is recorded once into bench/out/ (kept and
reused with --reuse when its argv matches).

The script is the editor: it starts `python3 -m relive dap` and speaks DAP to it on stdio
(tests/dapclient.py). At three positions -- marker(1), marker(SECONDS/2) and marker(SECONDS-1),
each reached by `continue` to a conditional function breakpoint -- it sends stepBack
requests (one source line back each, over calls) and times each from the request to the
`stopped` event (what the editor waits for before it asks for the stack), plus the
stackTrace request that follows: 4 from marker(K) (back out of marker() to its call, the two
loop headers, the previous chunk's getppid() line) and 3 from the second hot() after it (its
call, the loop header, the first chunk's write() line, stepping back over the call).

One more step back from there lands in the previous chunk's ~1 ms of syscall-free
arithmetic (the loop's last iteration, reached through a jump): --into-loop measures that
step separately.

--compare DIR runs the same walk with another relive checkout too (e.g. the code before a
change: `git archive COMMIT | tar -x -C DIR`), the two alternating, --repeat times each, so
both see the same machine load; the tables give medians over all runs.

Usage: python3 bench/bench_dap.py [--seconds 30] [--reuse] [--into-loop] [--repeat N]
       [--compare DIR] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))
from bench_gdb import compile_c, fmt_s, host_description, load_note, relive_record  # noqa: E402
from bench_reverse import calibrate  # noqa: E402
from dapclient import DapClient  # noqa: E402

TARGET = 0.100


def record(args: argparse.Namespace) -> tuple[Path, list[str]]:
    binary = compile_c(BENCH / "bench_rev.c", args.out / "bench_rev")
    trace = args.out / f"dap-{args.seconds}s"
    stamp = trace / "bench_dap.json"
    if args.reuse and stamp.exists():
        argv = json.loads(stamp.read_text())["argv"]
        print(f"... reusing {trace}: {' '.join(argv)}", file=sys.stderr)
        return trace, argv
    work = args.work
    if not work:
        print("... calibrating bench_rev", file=sys.stderr, flush=True)
        work, _ = calibrate(binary, args.chunks)
    argv = [str(binary), str(args.seconds), str(args.chunks), str(work)]
    print(f"... recording {' '.join(argv)}", file=sys.stderr, flush=True)
    took = relive_record(sys.executable, trace, argv, timeout=args.seconds * 20 + 120)
    stamp.write_text(json.dumps({"argv": argv, "recorded_s": took}))
    return trace, argv


def timed(c: DapClient, command: str, **arguments: object) -> tuple[float, float, dict]:
    """Seconds to the stopped event, then to the stack trace; and the top frame."""
    start = time.perf_counter()
    c.run(command, **arguments)
    stopped = time.perf_counter()
    frame = c.top()
    return stopped - start, time.perf_counter() - stopped, frame


def walk_back(c: DapClient, steps: int) -> tuple[list[float], list[float], list[str]]:
    backs, stacks, lines = [], [], []
    for _ in range(steps):
        back, stack, frame = timed(c, "stepBack", threadId=1)
        backs.append(back)
        stacks.append(stack)
        lines.append(f"{frame['name']}:{frame.get('line')}")
    return backs, stacks, lines


def measure(trace: Path, seconds: int, into_loop: bool, root: Path
            ) -> dict[str, dict[str, object]]:
    c = DapClient(timeout=900, root=root)
    results: dict[str, dict[str, object]] = {}
    try:
        c.request("initialize", adapterID="bench")
        c.request("launch", trace=str(trace))
        c.event("initialized")
        for i, (label, k) in enumerate((("start", 1), ("middle", seconds // 2),
                                        ("end", seconds - 1))):
            c.request("setFunctionBreakpoints",
                      breakpoints=[{"name": "marker", "condition": f"sec == {k}"}])
            if i == 0:
                c.request("configurationDone")  # runs to the first marker
                stop = c.event("stopped")
            else:
                stop = c.run("continue", threadId=1)
            if stop["reason"] != "function breakpoint":
                raise RuntimeError(f"could not reach marker({k}): {stop}")
            # from marker(K): its call, the two loop headers, the previous chunk's syscall line
            backs, stacks, lines = walk_back(c, 4)
            # from the second hot() after marker(K): its call, the chunk loop header, the
            # previous chunk's write() line
            c.request("setFunctionBreakpoints", breakpoints=[{"name": "hot"}])
            c.run("continue", threadId=1)
            c.run("continue", threadId=1)
            c.request("setFunctionBreakpoints", breakpoints=[])
            more = walk_back(c, 3)
            backs, stacks, lines = backs + more[0], stacks + more[1], lines + more[2]
            results[label] = {"k": k, "backs": backs, "stacks": stacks, "lines": lines}
            if into_loop:  # one more: back into the previous chunk's ~1 ms of arithmetic
                loop = walk_back(c, 1)
                results[label]["loop"] = (loop[0][0], loop[2][0])
            print(f"... {root.name}: {label} (marker {k}): " + ", ".join(
                f"{line} {b * 1000:.0f} ms" for line, b in zip(lines, backs)), file=sys.stderr)
        c.request("disconnect")
    finally:
        c.close()
    return results


def merge(runs: list[dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    """The runs of one checkout as one: every step of every run, the first of each."""
    merged: dict[str, dict[str, object]] = {}
    for run in runs:
        for label, r in run.items():
            m = merged.setdefault(label, {"k": r["k"], "backs": [], "stacks": [], "firsts": [],
                                          "loops": [], "lines": r["lines"]})
            backs, stacks = r["backs"], r["stacks"]
            assert isinstance(backs, list) and isinstance(stacks, list)
            m["backs"] += backs  # type: ignore[operator]
            m["stacks"] += stacks  # type: ignore[operator]
            m["firsts"].append(backs[0])  # type: ignore[attr-defined]
            if "loop" in r:
                m["loops"].append(r["loop"])  # type: ignore[attr-defined]
    return merged


def report(name: str, merged: dict[str, dict[str, object]], runs: int, bar: str,
           markdown: bool) -> None:
    print(f"\n{name} ({runs} run(s); medians over all steps of all runs)")
    print(f"{bar} position {bar} stepBack median {bar} first after the continue (median) "
          f"{bar} max {bar} <= 100 ms {bar} stackTrace median {bar}")
    if markdown:
        print("|---|---:|---:|---:|---:|---:|")
    for label, r in merged.items():
        backs, stacks, firsts = r["backs"], r["stacks"], r["firsts"]
        assert isinstance(backs, list) and isinstance(stacks, list)
        assert isinstance(firsts, list)
        within = sum(b <= TARGET for b in backs)
        print(f"{bar} {label} (marker {r['k']}) {bar} {fmt_s(statistics.median(backs))} {bar} "
              f"{fmt_s(statistics.median(firsts))} {bar} {fmt_s(max(backs))} {bar} "
              f"{within}/{len(backs)} {bar} {fmt_s(statistics.median(stacks))} {bar}")
    for label, r in merged.items():
        print(f"{label}: stepped back through {', '.join(map(str, r['lines']))}")
        loops = r["loops"]
        assert isinstance(loops, list)
        if loops:
            took = ", ".join(fmt_s(t, "s") for t, _ in loops)
            print(f"{label}: stepBack into the arithmetic loop ({loops[0][1]}): {took}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--chunks", type=int, default=3400)
    ap.add_argument("--work", type=int, default=0, help="default: calibrated to 1 s/second")
    ap.add_argument("--into-loop", action="store_true",
                    help="also step back into a chunk's syscall-free arithmetic")
    ap.add_argument("--reuse", action="store_true", help="reuse the recorded trace")
    ap.add_argument("--repeat", type=int, default=1, help="runs per checkout")
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR",
                    help="another relive checkout to measure alongside (e.g. the code before)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace, argv = record(args)
    load = load_note()
    roots = [BENCH.parent, *([args.compare.resolve()] if args.compare else [])]
    runs: dict[Path, list[dict[str, dict[str, object]]]] = {root: [] for root in roots}
    for _ in range(args.repeat):
        for root in roots:
            runs[root].append(measure(trace, args.seconds, args.into_loop, root))
    bar = "|" if args.markdown else ""
    print(f"\nrelive dap, stepBack on `{' '.join(Path(a).name for a in argv)}`; "
          f"{host_description()}; {load}; at the end: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for root in roots:
        name = "this checkout" if root == BENCH.parent else f"--compare {root}"
        report(f"{name} ({root})", merge(runs[root]), args.repeat, bar, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
