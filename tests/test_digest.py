"""Memory digests (tracee.digest) on a live process: what a recorded point's digest covers
decides whether replay finds the point again, so a byte outside it must not change it, a
byte inside must, and pages the kernel has not brought in must not matter."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tracee import digest

PAGE = 4096
# A child with three anonymous pages at a known address: it writes `addr byte` pairs it is
# sent, touches a page to bring it in (`touch addr`), and answers each line with "ok".
CHILD = r"""
import mmap, ctypes, sys
m = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # (the page map decides)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(hex(base), flush=True)
for line in sys.stdin:
    what, *rest = line.split()
    if what == "set":
        m[int(rest[0], 16) - base] = int(rest[1])
    elif what == "touch":
        m[int(rest[0], 16) - base]  # a read: the zero page comes in
    print("ok", flush=True)
"""


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    base = int(proc.stdout.readline(), 16)
    fd = os.open(f"/proc/{proc.pid}/mem", os.O_RDONLY)

    def send(line: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"

    def digest_of(skip=()) -> str:
        """The digest of the three pages alone (the interpreter writes its own memory
        between two commands: everything else is skipped)."""
        others = [(0, base), (base + 3 * PAGE, 1 << 64)]
        return digest.memory_digest(proc.pid, lambda a, n: os.pread(fd, n, a),
                                    [*others, *skip])

    try:
        yield base, send, digest_of
    finally:
        os.close(fd)
        proc.kill()
        proc.wait()


def test_bytes_below_a_cut_inside_a_page_do_not_count(child):
    """A dead stack ends inside a page (rsp - 128): the page map's runs are whole pages,
    and a byte below the cut in that page once made a SIGALRM's point unfindable in replay."""
    base, send, digest_of = child
    send(f"set {base + 0x900:#x} 7")  # the page is there, with a byte above the cut
    cut = [(base, base + 0x7A0)]
    before = digest_of(cut)
    send(f"set {base + 0x80:#x} 1")   # below the cut: not part of the state
    assert digest_of(cut) == before
    send(f"set {base + 0x7A0:#x} 1")  # the first byte above it is
    assert digest_of(cut) != before


def test_a_page_brought_in_by_a_read_does_not_change_the_digest(child):
    """Replay (or gdb) may read memory the recording never touched: the kernel then maps
    the zero page, and the digest must be the same as with the page absent."""
    base, send, digest_of = child
    send(f"set {base:#x} 5")
    before = digest_of()
    send(f"touch {base + 2 * PAGE:#x}")
    assert digest_of() == before
    send(f"set {base + 2 * PAGE + 8:#x} 9")
    assert digest_of() != before
