"""The address-space model's rules for flagged mappings (DESIGN.md section 4): they never
coalesce, and guessed-size writes are clipped at every flagged boundary.

The scenario is the one that broke rr on a Ruby test suite: two threads' scratch areas are
adjacent (the kernel merges them into one VMA), and a signal frame recorded with an
over-estimated size starting near the end of one area must not run into the neighbour.
"""
from __future__ import annotations

from hypothesis import given, strategies as st

from tracee.address_space import (PROT_READ, PROT_WRITE, AddressSpace, Flag, Mapping,
                                  mapping_from_info, mapping_info, parse_proc_maps)

RW = PROT_READ | PROT_WRITE
PAGE = 4096


def scratch(start: int, pages: int, owner: int) -> Mapping:
    return Mapping(start=start, end=start + pages * PAGE, prot=RW, flags=Flag.SCRATCH,
                   owner=owner)


def test_adjacent_scratch_areas_stay_two_mappings() -> None:
    space = AddressSpace()
    space.map(scratch(0x10000, 4, owner=101))
    space.map(scratch(0x14000, 4, owner=102))  # directly adjacent: the kernel would merge
    areas = space.flagged(Flag.SCRATCH)
    assert [(m.start, m.end, m.owner) for m in areas] == [
        (0x10000, 0x14000, 101), (0x14000, 0x18000, 102)]


def test_frame_near_end_of_scratch_is_clipped_at_its_end() -> None:
    space = AddressSpace()
    space.map(scratch(0x10000, 4, owner=101))
    space.map(scratch(0x14000, 4, owner=102))
    # The recorded frame: 3976 bytes guessed, starting 3848 bytes before the boundary.
    start = 0x14000 - 3848
    assert space.writable_extent(start, 3976) == 3848


def test_range_starting_outside_scratch_never_enters_one() -> None:
    space = AddressSpace()
    space.map(Mapping(start=0x20000, end=0x22000, prot=RW, path="[heap]"))
    space.map(scratch(0x22000, 2, owner=7))
    assert space.writable_extent(0x21800, 0x1000) == 0x800


def test_unflagged_neighbours_are_walked_and_holes_stop() -> None:
    space = AddressSpace()
    space.map(Mapping(start=0x30000, end=0x31000, prot=RW))
    space.map(Mapping(start=0x31000, end=0x32000, prot=RW, path="/lib/x.so", offset=0x1000))
    space.map(Mapping(start=0x33000, end=0x34000, prot=RW))  # after a hole
    assert space.writable_extent(0x30800, 0x4000) == 0x1800
    space.map(Mapping(start=0x32000, end=0x33000, prot=PROT_READ))  # read-only fills the hole
    assert space.writable_extent(0x30800, 0x4000) == 0x1800


def test_unmapped_or_read_only_start_records_nothing() -> None:
    space = AddressSpace()
    space.map(Mapping(start=0x40000, end=0x41000, prot=PROT_READ))
    assert space.writable_extent(0x40010, 64) == 0
    assert space.writable_extent(0x50000, 64) == 0


def test_unmap_and_protect_split_mappings_with_offsets() -> None:
    space = AddressSpace()
    space.map(Mapping(start=0x60000, end=0x64000, prot=RW, path="/f", file_id="x", offset=0))
    space.protect(0x61000, 0x62000, PROT_READ)
    space.unmap(0x63000, 0x64000)
    got = [(m.start, m.end, m.prot, m.offset) for m in space]
    assert got == [(0x60000, 0x61000, RW, 0), (0x61000, 0x62000, PROT_READ, 0x1000),
                   (0x62000, 0x63000, RW, 0x2000)]


def test_mapping_info_round_trip() -> None:
    m = scratch(0x70000, 1, owner=3)
    back = mapping_from_info(mapping_info(m))
    assert (back.start, back.end, back.prot, back.flags) == (m.start, m.end, m.prot, m.flags)


def test_parse_proc_maps_line() -> None:
    text = ("7f00aa000000-7f00aa021000 rw-p 00000000 00:00 0 \n"
            "5555c0000000-5555c0001000 r--p 00002000 08:01 1234  /usr/bin/x (deleted)\n")
    anon, exe = parse_proc_maps(text)
    assert anon.prot == RW and anon.path is None and anon.offset == 0
    assert exe.offset == 0x2000 and exe.path == "/usr/bin/x (deleted)"


@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 8), st.booleans()), max_size=12),
       st.integers(0, 70), st.integers(1, 40))
def test_clipped_write_never_crosses_a_flagged_boundary(layout, first_page, pages) -> None:
    """Whatever the layout, a guessed write stays inside writable memory and never crosses
    from one flagged mapping into another (or into/out of one)."""
    space = AddressSpace()
    for i, (page, size, flagged) in enumerate(layout):
        space.map(Mapping(start=page * PAGE, end=(page + size) * PAGE, prot=RW,
                          flags=Flag.SCRATCH if flagged else Flag.NONE, owner=i))
    addr = first_page * PAGE + 100
    n = space.writable_extent(addr, pages * PAGE)
    assert 0 <= n <= pages * PAGE
    if n:
        first = space.find(addr)
        last = space.find(addr + n - 1)
        assert first is not None and last is not None
        if first.flags or last.flags:
            assert first is last or (first.start, first.owner) == (last.start, last.owner)


def test_near_register_ranges_stay_in_the_programs_writable_memory() -> None:
    """What replay digests first at a signal's or preemption's point: memory near the
    registers, read the same in record and replay only where the full memory digest looks
    too. A range never enters a scratch area (contents differ in replay), a read-only or a
    kernel mapping, and stops at its own mapping's end; rsp's range ends with its page."""
    from recorder.preempt import NEAR, near_ranges
    from tracee import ptrace_api as api
    heap = Mapping(start=0x10000, end=0x10000 + 2 * PAGE, prot=RW, path="[heap]")
    space = AddressSpace([
        heap,
        scratch(heap.end, 1, owner=7),  # right after the heap
        Mapping(start=0x40000, end=0x40000 + PAGE, prot=PROT_READ, path="/lib/x.so"),
        Mapping(start=0x50000, end=0x50000 + PAGE, prot=RW, path="[vvar]"),
        Mapping(start=0x60000, end=0x60000 + 4 * PAGE, prot=RW, path="[stack]"),
    ])
    regs = api.UserRegs()
    regs.rsp = 0x60000 + PAGE + 0xF00
    regs.rax = heap.end - 8               # near the end of the heap, next to scratch
    regs.rbx = heap.end + 16              # inside the scratch area
    regs.rcx = 0x40010                    # read-only code
    regs.rdx = 0x50010                    # a kernel mapping
    regs.rsi = 0x10000 + 0x800            # the heap's middle
    regs.rdi = regs.rsi                   # the same value twice: one range
    ranges = near_ranges(regs, space)
    assert ranges == [[regs.rsp, 0x100], [regs.rax - NEAR, NEAR + 8],
                      [regs.rsi - NEAR, 2 * NEAR]], [[hex(a), n] for a, n in ranges]
