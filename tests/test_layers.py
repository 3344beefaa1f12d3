"""Imports point one way: every import of every package module (read with ast, so imports
inside functions and `if TYPE_CHECKING:` count too) is checked against the table of allowed
edges below, which is the layering as it is (docs/architecture.md draws it):

    tracefile, tracee <- recorder
    tracefile, tracee <- replayer <- debugtarget (protocol side | replay adapter)
    debugtarget's protocol side <- gdbstub
    relive (the application) on top of all; its scripting API and gdb extension see only gdb.

The table is also kept true the other way: an edge that no import uses any more is an error
too, so the table never claims a dependency the code does not have."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO_ROOT

# package -> the relive packages its modules may import
ALLOWED: dict[str, frozenset[str]] = {
    "tracefile": frozenset(),
    "tracee": frozenset(),  # (it needs nothing of the trace format)
    "recorder": frozenset({"tracefile", "tracee"}),
    "replayer": frozenset({"tracefile", "tracee"}),
    "debugtarget": frozenset({"tracefile", "tracee", "replayer"}),
    "gdbstub": frozenset({"tracefile", "debugtarget"}),
    "relive": frozenset({"tracefile", "tracee", "recorder", "replayer", "debugtarget",
                         "gdbstub"}),
}
# Finer rules: module (or subpackage) -> the only relive modules (prefixes) it may import,
# its own package included. debugtarget's protocol side knows no replay; gdb's stub sees only
# that side; the scripting API and the gdb extension drive gdb and know nothing of relive's
# internals (the DAP adapter, relive/dap, builds on the API and reads traces to list them).
PROTOCOL_SIDE = ("debugtarget.protocol", "debugtarget.errors", "debugtarget.engine")
ONLY: dict[str, tuple[str, ...]] = {
    "debugtarget.protocol": ("tracefile",),
    "debugtarget.errors": ("tracefile",),
    "debugtarget.engine": ("tracefile",),
    "gdbstub": ("gdbstub", *PROTOCOL_SIDE, "tracefile"),
    "relive.api": (),
    "relive.gdb_extension": (),
}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules() -> Iterator[tuple[str, Path]]:
    for package in ALLOWED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module.split(".")
                if not path.name == "__init__.py":
                    package = package[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from pkg import module` names a module too
                yield node.lineno, f"{base}.{alias.name}"


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    """Imports against the table, and the package edges the imports use."""
    bad: dict[tuple[Path, int], str] = {}  # one report per import statement
    used: set[tuple[str, str]] = set()
    for module, path in modules():
        package = module.split(".")[0]
        only = next((v for k, v in ONLY.items() if _within(module, k)), None)
        for line, name in imports(module, path):
            target = name.split(".")[0]
            if target not in ALLOWED:
                continue  # stdlib, third party, gdb's own module
            where = f"{path.relative_to(REPO_ROOT)}:{line}: {module} imports {name}"
            if target != package:
                if target not in ALLOWED[package]:
                    bad.setdefault((path, line), f"{where}: {package} may import only "
                                   f"{', '.join(sorted(ALLOWED[package])) or 'no relive package'}")
                    continue
                used.add((package, target))
            # (a package named alone, as in `from pkg import module`, is its __init__)
            if only is not None and not any(_within(name, p) or _within(p, name)
                                            for p in (*only, module)):
                bad.setdefault((path, line),
                               f"{where}: it may import only {', '.join(only) or 'itself'}")
    return list(bad.values()), used


def test_every_import_follows_the_table():
    bad, _ = violations()
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_table_has_no_edge_nobody_uses():
    _, used = violations()
    unused = {(p, t) for p, targets in ALLOWED.items() for t in targets} - used
    assert not unused, f"allowed edges no import uses (drop them from ALLOWED): {sorted(unused)}"


def test_every_package_is_in_the_table():
    packages = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert packages == set(ALLOWED), "a package missing from (or gone from) the table"


def test_replayer_modules_import_each_other_without_cycles():
    """A cycle inside the replay core (even one only type checkers follow) is a helper that
    knows its owner instead of a narrow interface (docs/architecture.md)."""
    graph: dict[str, set[str]] = {}
    names = {module for module, _ in modules() if _within(module, "replayer")}
    for module, path in modules():
        if module in names:
            graph[module] = {name for _, name in imports(module, path)
                             if name in names and name != module}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None
    cycles = [" -> ".join(c) for m in sorted(graph) if (c := cycle_from(m)) is not None]
    assert not cycles, cycles
