#!/usr/bin/env python3
"""Benchmark reverse execution on a relive replay of a ~30 s trace, through stock gdb.

The workload is bench/bench_rev.c: --seconds "seconds" (default 30), each --chunks chunks
(default 3400); a chunk calls hot() once, spins integer arithmetic and makes one system call
(getppid or a write to /dev/null). The arithmetic per chunk is calibrated on this machine so
one "second" takes ~1 s natively; marker(s) is called at the start of second s and
marker(SECONDS) at the very end. So the trace holds ~30 s of native execution, ~100k system
calls and ~100k hot() calls, and consecutive marker() hits are ~1 s of execution apart.

At three positions of the replay -- start (marker(1)), middle (marker(SECONDS/2)) and end
(marker(SECONDS)), each reached by `continue` to a conditional breakpoint -- gdb measures
(time.perf_counter() around gdb.execute() in gdb's embedded Python):

  rc 1 s back   reverse-continue from marker(K) to a breakpoint on marker, i.e. marker(K-1)
  fwd 1 s       then continue from marker(K-1) to marker(K): replaying that second forwards;
                the ratio rc/fwd is printed (target: <= 2x)
  bs            reverse-stepi from marker(K), --bs times (target: median <= 50 ms). The
                sequence stops early when the current instruction is a `syscall`: one more
                step back would land at the end of the previous chunk's ~1 ms of arithmetic,
                millions of instructions after its last system call, which relive can only
                locate by single-stepping the whole stretch (minutes); that cost is measured
                on the small program below instead.
  rc hot        reverse-continue to a breakpoint on hot() (hit ~100k times in the whole
                trace), --hot-rc times in a row from marker(K)
  rnext         reverse-next over `acc = hot(...)` (a line with a call), from the line after
                it (reached by `finish` + `next`); `next` forwards over it for reference
  checkpoints   `monitor info checkpoints` (count and private memory) at each position

Then, on a small program (bench/bench_small.c: a syscall-free loop of --small-iters calls),
the same reverse-stepi sequence from done() back into the loop, under relive and under gdb's
own `record full` (on the live program, GLIBC_TUNABLES hiding AVX, recording from work() to
done(); its recording speed is printed too). relive's first reverse-stepi there has to count
the instructions since the last system call by single-stepping: its time divided by that
count (from record full's `info record`) is relive's cost per instruction of that search.

Every gdb command has a time limit (--cmd-limit, longer for the positioning runs); one that
exceeds it is interrupted (Ctrl-C through gdb) and reported. Cells that fail are n/a.

Usage: python3 bench/bench_reverse.py [--seconds 30] [--bs 30] [--hot-rc 5] [--markdown]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gdb import (
    BENCH_DIR,
    GDB,
    Failed,
    compile_c,
    fmt_ratio,
    fmt_s,
    gdb_env,
    host_description,
    load_note,
    print_errors,
    print_table,
    relive_event_count,
    relive_record,
    relive_server,
    run_gdb,
)

GLIBC_TUNABLES = "glibc.cpu.hwcaps=-AVX2,-AVX,-AVX512F,-ERMS,-AVX_Fast_Unaligned_Load"
BS_TARGET = 0.050
RC_RATIO_TARGET = 2.0

REVERSE_BODY = r'''
import re

def at_marker(k):
    return where().split(":")[0] == "marker" and value("sec") == k

def reposition(k):
    """Stop at the entry of marker(k), from wherever the replay is."""
    quiet("delete")
    if at_marker(k):
        return
    quiet(f"break marker if sec == {k}")
    run("continue", P["reach_limit"])
    if not at_marker(k):
        run("reverse-continue", P["reach_limit"])
    quiet("delete")
    if not at_marker(k):
        raise RuntimeError(f"could not get back to marker({k}): at {where()}")

def checkpoints(key):
    try:
        out = quiet("monitor info checkpoints")
    except gdb.error as e:
        emit(key + ".error", str(e))
        return
    m = re.search(r"(\d+) checkpoints?, (\d+) KiB", out)
    if m:
        emit(key, {"count": int(m.group(1)), "kib": int(m.group(2))})
    else:
        emit(key + ".error", "unexpected reply: " + out.strip()[:200])

def position(label, k):
    # Reach marker(k) going forwards (how fast the replay runs forwards, for reference).
    quiet("delete")
    quiet(f"break marker if sec == {k}")
    dt, _ = run("continue", P["reach_limit"])
    quiet("delete")
    if not at_marker(k):
        raise RuntimeError(f"continue to marker({k}) stopped at {where()}")
    emit(label + ".reach", dt)
    note(f"{label}: at marker({k}); {quiet('monitor when').strip()}")
    checkpoints(label + ".ckpt_before")

    def back_and_forth():
        quiet("break marker")
        back, _ = run("reverse-continue")
        if not at_marker(k - 1):
            raise RuntimeError(f"reverse-continue from marker({k}) stopped at {where()} "
                               f"(sec={value('sec')}), not marker({k - 1})")
        fwd, _ = run("continue")
        if not at_marker(k):
            raise RuntimeError(f"continue from marker({k - 1}) stopped at {where()} "
                               f"(sec={value('sec')}), not marker({k})")
        quiet("delete")
        emit(label + ".rc_1s", back)
        emit(label + ".fwd_1s", fwd)
    attempt(label + ".rc_1s", back_and_forth)

    def cross():
        """One reverse-stepi back over the syscall instruction: into the end of the
        previous chunk's arithmetic, millions of instructions after its last syscall."""
        frame = gdb.selected_frame()
        fn, pc = frame.name(), int(frame.pc())
        dt, _ = run("reverse-stepi", P["cross_limit"])
        now = gdb.selected_frame()
        landed = f"{now.name()} pc={int(now.pc()):#x}"
        ok = now.name() == fn and pc - 16 <= int(now.pc()) < pc
        emit(label + ".cross", {"time": dt, "landed": landed, "from": f"{fn} pc={pc:#x}",
                                "ok": ok})

    def bs():
        reposition(k)
        times, stopped, trail = [], "", []
        for _ in range(P["bs"]):
            pc = int(gdb.parse_and_eval("$pc"))
            asm = gdb.selected_frame().architecture().disassemble(pc)[0]["asm"]
            if asm.split()[0] == "syscall":
                stopped = f"at a syscall instruction in {where()}"
                break
            before = where()
            dt, _ = run("reverse-stepi")
            times.append(dt)
            trail.append(f"{where()} {dt * 1000:.1f}ms")
            if int(gdb.parse_and_eval("$pc")) == pc:
                raise RuntimeError(f"reverse-stepi did not move (pc {pc:#x}, {before})")
        s = stats(times)
        if s is None:
            raise RuntimeError("no reverse-stepi was timed")
        s["first"] = times[0]
        s["stopped"] = stopped
        emit(label + ".bs", s)
        note(f"{label}: {len(times)} reverse-stepi, {stopped or 'no syscall met'}; "
             f"ends {'; '.join(trail[-3:])}")
        if stopped and P["cross"] and label == P["positions"][0][0]:
            attempt(label + ".cross", cross)
    attempt(label + ".bs", bs)

    def hot():
        reposition(k)
        quiet("break hot")
        times = []
        for _ in range(P["hot_rc"]):
            dt, _ = run("reverse-continue")
            times.append(dt)
            if where().split(":")[0] != "hot":
                raise RuntimeError(f"reverse-continue to hot stopped at {where()}")
        quiet("delete")
        s = stats(times)
        s["first"] = times[0]
        emit(label + ".rc_hot", s)
    attempt(label + ".rc_hot", hot)

    def rnext():
        if where().split(":")[0] != "hot":
            reposition(k)
            quiet("break hot")
            run("reverse-continue")
            quiet("delete")
        quiet("delete")
        run("finish")
        run("next")
        line = where()
        if line != f"main:{P['line_for']}":
            raise RuntimeError(f"finish + next from hot() stopped at {line}, not "
                               f"main:{P['line_for']}")
        back, _ = run("reverse-next")
        if where() != f"main:{P['line_hot']}":
            raise RuntimeError(f"reverse-next from {line} stopped at {where()}, not "
                               f"main:{P['line_hot']}")
        fwd, _ = run("next")
        if where() != f"main:{P['line_for']}":
            raise RuntimeError(f"next from main:{P['line_hot']} stopped at {where()}")
        emit(label + ".rnext", back)
        emit(label + ".next", fwd)
    attempt(label + ".rnext", rnext)
    checkpoints(label + ".ckpt_after")

def main():
    t = time.perf_counter()
    run("target remote " + P["address"])
    emit("connect", time.perf_counter() - t)
    for label, k in P["positions"]:
        try:
            position(label, k)
        except (gdb.error, Interrupted, RuntimeError) as e:
            emit(label + ".error", str(e))
    checkpoints("ckpt_final")

try:
    main()
except BaseException as e:
    emit("fatal.error", f"{type(e).__name__}: {e}")
'''

SMALL_BODY = r'''
def main():
    if P["mode"] == "relive":
        run("target remote " + P["address"])
        quiet("break work")
        run("continue")
    else:
        quiet("break work")
        run("run")
        run("record full")
    if where().split(":")[0] != "work":
        raise RuntimeError(f"did not stop in work(): at {where()}")
    quiet("break done")
    dt, _ = run("continue")
    if where().split(":")[0] != "done":
        raise RuntimeError(f"continue stopped at {where()}, not done()")
    emit("forward", dt)
    if P["mode"] == "record-full":
        m = re.search(r"Log contains (\d+) instructions", quiet("info record"))
        if m:
            emit("insns", int(m.group(1)))
    quiet("delete")
    times = []
    for _ in range(P["bs"]):
        times.append(run("reverse-stepi")[0])
    s = stats(times)
    s["first"] = times[0]
    s["rest_median"] = statistics.median(times[1:]) if len(times) > 1 else None
    emit("bs", s)
    note(f"{P['mode']}: after {len(times)} reverse-stepi: {where()}")

import re
try:
    main()
except BaseException as e:
    emit("fatal.error", f"{type(e).__name__}: {e}")
'''


def line_of(src: Path, needle: str) -> int:
    for n, text in enumerate(src.read_text().splitlines(), 1):
        if needle in text:
            return n
    raise SystemExit(f"{src}: no line containing {needle!r}")


def native_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def calibrate(binary: Path, chunks: int) -> tuple[int, float]:
    """WORK so that one "second" of bench_rev (CHUNKS chunks) takes ~1 s natively."""
    work = 20_000
    for _ in range(3):
        t = min(native_time([str(binary), "1", str(chunks), str(work)]) for _ in range(2))
        work = max(1, int(work * 1.0 / t))
        if 0.9 < t < 1.1:
            break
    t = native_time([str(binary), "1", str(chunks), str(work)])
    return work, t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=30, help="length of the trace, s (30)")
    ap.add_argument("--chunks", type=int, default=3400,
                    help="chunks (= system calls = hot() calls) per second (3400)")
    ap.add_argument("--work", type=int, default=0,
                    help="arithmetic iterations per chunk (default: calibrated to 1 s/second)")
    ap.add_argument("--bs", type=int, default=30, help="reverse-stepi per position (30)")
    ap.add_argument("--hot-rc", type=int, default=5,
                    help="reverse-continue to hot() per position (5)")
    ap.add_argument("--small-iters", type=int, default=2000,
                    help="loop iterations of the small program (2000)")
    ap.add_argument("--small-bs", type=int, default=100,
                    help="reverse-stepi on the small program (100)")
    ap.add_argument("--cmd-limit", type=float, default=60,
                    help="time limit of one gdb command, s (60; positioning runs get 3x)")
    ap.add_argument("--cross-syscall", action="store_true",
                    help="at the start position, also time one reverse-stepi back over "
                    "the syscall into the preceding arithmetic (minutes)")
    ap.add_argument("--cross-limit", type=float, default=600,
                    help="time limit of that reverse-stepi, s (600)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for `python3 -m relive` (default: this one)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                    help="build and trace directory (default bench/out)")
    ap.add_argument("--timeout", type=float, default=450,
                    help="time limit of the long-trace gdb session, s (450)")
    args = ap.parse_args()
    if GDB is None:
        sys.exit("gdb is not installed")
    if args.seconds < 2:
        ap.error("--seconds must be >= 2")
    args.out = args.out.resolve()
    work_dir = args.out / "gdb-work"
    errors: list[str] = []
    started = time.monotonic()
    load = load_note()

    src = BENCH_DIR / "bench_rev.c"
    rev_bin = compile_c(src, args.out / "bench_rev")
    small_bin = compile_c(BENCH_DIR / "bench_small.c", args.out / "bench_small")
    if args.work:
        work, one_s = args.work, native_time([str(rev_bin), "1", str(args.chunks),
                                              str(args.work)])
    else:
        print("... calibrating bench_rev", file=sys.stderr, flush=True)
        work, one_s = calibrate(rev_bin, args.chunks)
    argv = [str(rev_bin), str(args.seconds), str(args.chunks), str(work)]

    # -- the long trace ------------------------------------------------------------------
    trace = args.out / "traces" / "bench_rev"
    trace.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, object] = {}
    print(f"... recording {' '.join(argv)} (~{args.seconds * one_s:.0f} s natively)",
          file=sys.stderr, flush=True)
    try:
        info["record"] = relive_record(args.python, trace, argv, timeout=600)
        info["events"] = relive_event_count(args.python, trace)
    except Failed as e:
        errors.append(f"record bench_rev: {e}")
        trace = None

    mid = args.seconds // 2
    positions = [("start", 1), ("middle", mid), ("end", args.seconds)]
    rev: dict[str, object] = {}
    if trace is not None:
        print("... gdb on the replay: start, middle, end", file=sys.stderr, flush=True)
        params = {"positions": positions, "bs": args.bs, "hot_rc": args.hot_rc,
                  "cross": args.cross_syscall, "cross_limit": args.cross_limit,
                  "reach_limit": 3 * args.cmd_limit * max(1, args.seconds / 30) * 1.5,
                  "line_hot": line_of(src, "acc = hot("),
                  "line_for": line_of(src, "for (long i = 0")}
        try:
            with relive_server(args.python, trace, work_dir) as srv:
                params["address"] = srv.address
                res = run_gdb(REVERSE_BODY, params, work_dir,
                              timeout=args.timeout + (args.cross_limit + 20
                                                      if args.cross_syscall else 0),
                              cmd_limit=args.cmd_limit, label="reverse")
            rev = res.values
            if res.error:
                errors.append(res.error)
            for k, v in res.errors().items():
                errors.append(f"replay / {k}: {v}")
            for n in res.notes:
                print(f"    {n}", file=sys.stderr)
        except Failed as e:
            errors.append(f"replay server: {e}")

    # -- the small program: relive vs record full --------------------------------------------
    small_argv = [str(small_bin), str(args.small_iters)]
    small: dict[str, dict[str, object]] = {"relive": {}, "record-full": {}}
    sparams = {"bs": args.small_bs}
    print(f"... small program: {args.small_bs} reverse-stepi, relive and record full",
          file=sys.stderr, flush=True)
    try:
        strace = args.out / "traces" / "bench_small"
        relive_record(args.python, strace, small_argv, timeout=120)
        with relive_server(args.python, strace, work_dir) as srv:
            res = run_gdb(SMALL_BODY, dict(sparams, mode="relive", address=srv.address),
                          work_dir, timeout=240, cmd_limit=args.cmd_limit, label="small-relive")
        small["relive"] = res.values
        if res.error:
            errors.append(res.error)
        for k, v in res.errors().items():
            errors.append(f"small / relive / {k}: {v}")
    except Failed as e:
        errors.append(f"small / relive: {e}")
    res = run_gdb(SMALL_BODY, dict(sparams, mode="record-full"), work_dir, timeout=240,
                  cmd_limit=args.cmd_limit, program=small_argv,
                  env=gdb_env({"GLIBC_TUNABLES": GLIBC_TUNABLES}), label="small-recordfull")
    small["record-full"] = res.values
    if res.error:
        errors.append(res.error)
    for k, v in res.errors().items():
        errors.append(f"small / record full / {k}: {v}")

    # -- report -----------------------------------------------------------------------------
    def sub(d: object, field: str) -> object:
        return d.get(field) if isinstance(d, dict) else None

    md = args.markdown
    events = info.get("events")
    print(f"Reverse execution on a relive replay; host: {host_description()}; {load}; "
          f"total {time.monotonic() - started:.0f} s." + ("\n" if md else ""))
    print(f"Trace: `{' '.join(['bench_rev', *argv[1:]])}` = {args.seconds} x ~{one_s:.2f} s "
          f"natively, {args.seconds * args.chunks:,} system calls and hot() calls, "
          f"{events if events is not None else 'n/a'} events; recorded in "
          f"{fmt_s(info.get('record'), 's')}." + ("\n" if md else ""))
    cols = ["measurement", *(f"{label} (marker {k})" for label, k in positions), "target"]
    rows = []

    def row(name: str, fn, target: str = "") -> None:
        rows.append([name, *(fn(label) for label, _ in positions), target])

    row("reach marker(K) by continue from the previous column",
        lambda p: fmt_s(rev.get(f"{p}.reach"), "s"))
    row("reverse-continue to marker(K-1), 1 s back", lambda p: fmt_s(rev.get(f"{p}.rc_1s"), "s"))
    row("continue marker(K-1) -> marker(K), 1 s forwards",
        lambda p: fmt_s(rev.get(f"{p}.fwd_1s"), "s"))
    row("ratio reverse / forward", lambda p: fmt_ratio(rev.get(f"{p}.rc_1s"),
                                                       rev.get(f"{p}.fwd_1s")),
        f"<= {RC_RATIO_TARGET:g}x")
    row("reverse-stepi (bs), median", lambda p: fmt_s(sub(rev.get(f"{p}.bs"), "median")),
        f"<= {BS_TARGET * 1000:.0f} ms")
    row("reverse-stepi, first / max", lambda p: (
        f"{fmt_s(sub(rev.get(f'{p}.bs'), 'first'))} / {fmt_s(sub(rev.get(f'{p}.bs'), 'max'))}"
        if isinstance(rev.get(f"{p}.bs"), dict) else "n/a"))
    row("reverse-stepi count (stops at a syscall)",
        lambda p: str(sub(rev.get(f"{p}.bs"), "n") or "n/a"))
    row("reverse-continue to hot(), median", lambda p: fmt_s(sub(rev.get(f"{p}.rc_hot"),
                                                                 "median")))
    row("reverse-continue to hot(), first / max", lambda p: (
        f"{fmt_s(sub(rev.get(f'{p}.rc_hot'), 'first'))} / "
        f"{fmt_s(sub(rev.get(f'{p}.rc_hot'), 'max'))}"
        if isinstance(rev.get(f"{p}.rc_hot"), dict) else "n/a"))
    row("reverse-next over `acc = hot(...)`", lambda p: fmt_s(rev.get(f"{p}.rnext")))
    row("next over the same line (forwards)", lambda p: fmt_s(rev.get(f"{p}.next")))

    def ckpt(p: str, when: str) -> str:
        c = rev.get(f"{p}.ckpt_{when}")
        return f"{c['count']} / {c['kib']:,} KiB" if isinstance(c, dict) else "n/a"
    row("checkpoints on arrival (count / private memory)", lambda p: ckpt(p, "before"))
    row("checkpoints after the measurements", lambda p: ckpt(p, "after"))
    print_table(cols, rows, md)
    c = rev.get(f"{positions[0][0]}.cross")
    if isinstance(c, dict):
        print(f"\nreverse-stepi back over the syscall at {c['from']} into the preceding "
              f"~{work:,}-iteration loop: {fmt_s(c['time'], 's')}, landed at {c['landed']} "
              f"({'the instruction before the syscall' if c['ok'] else 'WRONG PLACE'}).")
    final = rev.get("ckpt_final")
    if isinstance(final, dict):
        print(f"\nCheckpoints at the end of the session: {final['count']}, "
              f"{final['kib']:,} KiB private memory.")

    # Small program table.
    r, f = small["relive"], small["record-full"]
    insns = f.get("insns")
    rb, fb = r.get("bs"), f.get("bs")
    print("\n" + f"Small program: `bench_small {args.small_iters}`, "
          f"{args.small_bs} reverse-stepi back from done() into the loop"
          + (f" ({insns:,} instructions from work() to done())" if insns else "")
          + "." + ("\n" if md else ""))
    rows2 = [
        ["forward to done() (record full: recording)", fmt_s(r.get("forward")),
         fmt_s(f.get("forward"))],
        ["recording speed", "",
         f"{insns / f['forward']:,.0f} insn/s" if insns and f.get("forward") else "n/a"],
        ["reverse-stepi, first", fmt_s(sub(rb, "first")), fmt_s(sub(fb, "first"))],
        ["reverse-stepi, median of the rest", fmt_s(sub(rb, "rest_median")),
         fmt_s(sub(fb, "rest_median"))],
        ["reverse-stepi, max", fmt_s(sub(rb, "max")), fmt_s(sub(fb, "max"))],
        ["relive's first reverse-stepi per instruction since the last syscall",
         fmt_s(sub(rb, "first") / insns, "us") if insns and sub(rb, "first") else "n/a", ""],
    ]
    print_table(["measurement", "relive replay", "gdb record full (live)"], rows2, md)

    # Targets.
    print("\n" + "Targets:" + ("\n" if md else ""))
    for label, _ in positions:
        med = sub(rev.get(f"{label}.bs"), "median")
        ratio = (rev[f"{label}.rc_1s"] / rev[f"{label}.fwd_1s"]
                 if isinstance(rev.get(f"{label}.rc_1s"), float)
                 and isinstance(rev.get(f"{label}.fwd_1s"), float) and rev[f"{label}.fwd_1s"]
                 else None)
        def verdict(ok):
            return "n/a" if ok is None else ("met" if ok else "NOT met")
        print(f"- {label}: bs median {fmt_s(med)} (<= {BS_TARGET * 1000:.0f} ms: "
              f"{verdict(None if med is None else med <= BS_TARGET)}); reverse-continue 1 s "
              f"back / forward {'n/a' if ratio is None else f'{ratio:.2f}x'} "
              f"(<= {RC_RATIO_TARGET:g}x: "
              f"{verdict(None if ratio is None else ratio <= RC_RATIO_TARGET)})")
    print_errors(errors, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
