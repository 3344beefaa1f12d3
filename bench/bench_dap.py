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
arithmetic, which relive can only locate by single-stepping it (bench_reverse.py,
--cross-syscall): --into-loop measures that step separately.

Usage: python3 bench/bench_dap.py [--seconds 30] [--reuse] [--into-loop] [--markdown]
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


def measure(trace: Path, seconds: int, into_loop: bool) -> dict[str, dict[str, object]]:
    c = DapClient(timeout=900)
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
            print(f"... {label} (marker {k}): " + ", ".join(
                f"{line} {b * 1000:.0f} ms" for line, b in zip(lines, backs)), file=sys.stderr)
        c.request("disconnect")
    finally:
        c.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--chunks", type=int, default=3400)
    ap.add_argument("--work", type=int, default=0, help="default: calibrated to 1 s/second")
    ap.add_argument("--into-loop", action="store_true",
                    help="also step back into a chunk's syscall-free arithmetic (minutes)")
    ap.add_argument("--reuse", action="store_true", help="reuse the recorded trace")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace, argv = record(args)
    results = measure(trace, args.seconds, args.into_loop)
    bar = "|" if args.markdown else ""
    print(f"\nrelive dap, stepBack on `{' '.join(Path(a).name for a in argv)}`; "
          f"{host_description()}; {load_note()}")
    print(f"{bar} position {bar} stepBack median {bar} first {bar} max {bar} "
          f"<= 100 ms {bar} stackTrace median {bar}")
    if args.markdown:
        print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        backs, stacks = r["backs"], r["stacks"]
        assert isinstance(backs, list) and isinstance(stacks, list)
        within = sum(b <= TARGET for b in backs)
        print(f"{bar} {label} (marker {r['k']}) {bar} {fmt_s(statistics.median(backs))} {bar} "
              f"{fmt_s(backs[0])} {bar} {fmt_s(max(backs))} {bar} {within}/{len(backs)} {bar} "
              f"{fmt_s(statistics.median(stacks))} {bar}")
    for label, r in results.items():
        print(f"{label}: stepped back through {', '.join(map(str, r['lines']))}")
        if "loop" in r:
            took, line = r["loop"]  # type: ignore[misc]
            print(f"{label}: stepBack into the arithmetic loop ({line}): {fmt_s(took, 's')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
