"""The invertible hash loop of cpu_loop.c and threads_long_loop.c, for the step-back tests:
record it once, and undo its steps from the printed result to know every earlier value."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import describe, record

PRIME = 0x100000001B3
MASK = (1 << 64) - 1
PRIME_INVERSE = pow(PRIME, -1, 1 << 64)


def ror(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & MASK


def record_long_loop(trace: Path, program: Path, iterations: int) -> tuple[Path, int]:
    """`program` recorded with `iterations` iterations, and the result it printed."""
    started = time.monotonic()
    rec = record(trace, program, str(iterations))
    assert rec.returncode == 0, describe(rec)
    if time.monotonic() - started > 60:
        pytest.skip("the machine is too loaded to record a second of computation")
    match = re.search(rb"result: ([0-9a-f]{16})", rec.stdout)
    assert match, describe(rec)
    return trace, int(match.group(1), 16)
