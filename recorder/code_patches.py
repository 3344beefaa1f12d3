"""The recorder's side of rdrand/rdseed (tracee.rdrand says why and how): patch the
instructions out of code as it is mapped, and emulate the SIGILL each patched site raises with a
fresh random number, recorded as an RDRAND event.

What was patched goes into the event that mapped the code (info "rdrand": [address, original
bytes] pairs), so replay patches exactly the same places without scanning anything. Scans are
kept in the file cache: capstone's import alone costs ~70 ms, paid once per library version.
"""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from tracee import rdrand
from tracee.address_space import AddressSpace, Mapping

if TYPE_CHECKING:
    from tracee.task import Task
    from tracefile.writer import TraceWriter

log = logging.getLogger(__name__)
NOTE = "rdrand1"  # the file cache's name for our scans (a new scan format: a new name)


class CodePatcher:
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self._scans: dict[str, rdrand.FileSites] = {}

    def patch(self, task: Task, space: AddressSpace, lo: int = 0,
              hi: int = 1 << 64) -> list[list[object]]:
        """Patch the sites of the file-mapped code within [lo, hi) (call after the code was
        mapped or made executable); returns [address, original bytes (hex)] of each."""
        done: list[list[object]] = []
        for m in space.overlapping(lo, hi):
            if rdrand.patchable(m):
                for addr, site in rdrand.in_mapping(m, self._sites(m), lo, hi):
                    if site.insn not in cpu_has():
                        continue
                    patch = rdrand.patched_code(len(site.code))
                    if task.mem.write(addr, patch) == len(patch):
                        done.append([addr, site.code.hex()])
        return done

    def site_at(self, space: AddressSpace, rip: int) -> rdrand.Site | None:
        m = space.find(rip)
        if m is None or not rdrand.patchable(m):
            return None
        return next((site for addr, site in rdrand.in_mapping(m, self._sites(m), rip, rip + 16)
                     if addr == rip), None)

    def _sites(self, m: Mapping) -> rdrand.FileSites:
        assert m.file_id is not None
        found = self._scans.get(m.file_id)
        if found is None:
            found = self._scans[m.file_id] = self._scan(m.file_id)
            if found.doubtful:
                log.warning("%s holds %d byte sequence(s) that may be rdrand/rdseed "
                            "instructions relive could not confirm, so did not patch: if the "
                            "program executes one, its replay computes with another random "
                            "number", m.path, found.doubtful)
        return found

    def _scan(self, file_id: str) -> rdrand.FileSites:
        kept = self.writer.cached_note(NOTE, file_id)
        if kept is not None:
            try:
                return rdrand.from_json(kept)
            except (ValueError, KeyError, TypeError):
                pass  # a damaged note: scan again
        found = rdrand.scan(self.writer.copy_of(file_id))
        self.writer.keep_note(NOTE, file_id, rdrand.to_json(found))
        return found


@functools.cache
def cpu_has() -> frozenset[str]:
    """Which of rdrand/rdseed this CPU executes. One it lacks raises SIGILL, in the recording
    and in replay alike: left as it is."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return frozenset(line.split()) & {"rdrand", "rdseed"}
    return frozenset()
