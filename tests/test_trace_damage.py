"""Damage to a trace is reported, never replayed as if faithful (issue 21, item 3).

A real recording (`cat` of a file, so read payloads reach the output) is damaged one cell at
a time with sqlite3: one bit flipped in a sample of every table's columns (numbers, the
compressed chunks of events, JSON, checksums), or a cell changed to another type.
Then `relive replay -a`, `dump`, `info` and `ps` each either give exactly the undamaged
trace's output with exit 0, or fail with one `relive: ...` line (no traceback); and the
commands that read the damaged table must fail, naming the event where there is one.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import describe, record, replay

from relive.cli import main as relive_main

# table -> (its key columns, the columns damaged, the commands that read every row of it)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "chunks": (("first",), ("first", "count", "size", "data", "crc"), ("replay", "dump")),
    "meta": (("key",), ("key", "value", "crc"), ("replay", "dump", "info", "ps")),
    "tasks": (("tid",), ("pid", "ppid", "argv", "exe", "exit_status", "crc"),
              ("info", "ps")),
    "files": (("id",), ("path", "size", "crc"), ()),
}
COLUMNS = [(t, c) for t, (_, cols, _) in TABLES.items() for c in cols]
# Which row of a table (by its place in key order), and which bit: several per blob column.
FLIPS = [(t, c, row, bit) for t, c in COLUMNS for row, bit in ((0, 0), (-1, 9))] + [
    ("chunks", "data", 0, 8 * 120 + 3), ("chunks", "data", 0, 8 * 300 + 1),
    ("chunks", "data", -1, 8 * 2 + 6), ("chunks", "data", 0, 8 * 999 + 2)]
TEXT = ("the quick brown fox jumps over the lazy dog %d\n" * 200) % tuple(range(200))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A trace of `cat` and what each command gives for it undamaged."""
    tmp = tmp_path_factory.mktemp("damage")
    data = tmp / "input.txt"
    data.write_text(TEXT)
    trace = tmp / "trace"
    rec = record(trace, "cat", data)
    assert rec.returncode == 0 and rec.stdout == TEXT.encode(), describe(rec)
    db = sqlite3.connect(trace / "trace.db")
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] >= 1
    db.close()
    return trace, {name: _run(name, trace) for name in ("replay", "dump", "info", "ps")}


def _run(command: str, trace: Path) -> tuple[int, bytes, bytes]:
    if command == "replay":
        proc = replay(trace, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = relive_main([command, str(trace)])  # an exception here is a traceback
    # (info names the trace and its size, which has bytes shared with other traces or not)
    shown = re.sub(r"(?m)^size: .*$", "", out.getvalue().replace(str(trace), "TRACE"))
    return code, shown.encode(), err.getvalue().encode()


def _damaged_copy(recorded: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    copy = tmp_path / "trace"
    shutil.copytree(recorded[0], copy)
    return copy


def _row_key(db: sqlite3.Connection, table: str, column: str, row: int) -> tuple[Any, ...]:
    """The key of the row-th of the rows whose `column` has something to damage."""
    keys = ", ".join(TABLES[table][0])
    rows = db.execute(f"SELECT {keys} FROM {table} WHERE {column} IS NOT NULL AND "
                      f"(typeof({column}) = 'integer' OR length({column}) > 0) "
                      f"ORDER BY {keys}").fetchall()
    return tuple(rows[row % len(rows)])


def _set(trace: Path, table: str, column: str, row: int, change: Any) -> None:
    """Change one cell: `change(old value)` gives the new one."""
    db = sqlite3.connect(trace / "trace.db")
    key = _row_key(db, table, column, row)
    where = " AND ".join(f"{k} = ?" for k in TABLES[table][0])
    old = db.execute(f"SELECT {column} FROM {table} WHERE {where}", key).fetchone()[0]
    new = change(old)
    assert new != old or type(new) is not type(old)
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (new, *key))
    db.commit()
    db.close()


def _flip(value: Any, bit: int) -> Any:
    if isinstance(value, int):
        return value ^ (1 << (bit % 63))
    if isinstance(value, bytes):
        data = bytearray(value)
        data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
        return bytes(data)
    # text: flip the low bit of a character, keeping the text valid
    chars = list(value)
    i = (bit // 8) % len(chars)
    chars[i] = chr(ord(chars[i]) ^ 1)
    return "".join(chars)


def _retypes(value: Any) -> list[Any]:
    """The value as each other type SQLite stores (NULL where the column allows it)."""
    others: list[Any] = [7, 0.5, "x7", b"\x07", None]
    if isinstance(value, int):
        others[1:3] = [value + 0.5, str(value) + "x"]
    elif isinstance(value, str):
        others[2:4] = [value.encode()]
    elif isinstance(value, bytes):
        others[3:4] = [value.decode("latin-1")]
    return [v for v in others if type(v) is not type(value)]


def _check_commands(recorded: tuple[Path, dict[str, Any]], trace: Path, table: str,
                    commands: tuple[str, ...] = ("replay", "dump", "info", "ps")) -> None:
    """(`replay -a`, the one slow command, only where it reads the damaged table.)"""
    expected = recorded[1]
    readers = TABLES[table][2]
    for command in commands:
        if command == "replay" and table not in ("chunks", "meta"):
            continue
        code, out, err = _run(command, trace)
        what = f"{command}: exit {code}\n{out[-2000:]!r}\n{err[-2000:]!r}"
        assert b"Traceback" not in err, what
        if code == 0:
            assert command not in readers, what
            assert (code, out) == expected[command][:2], what
            continue
        lines = err.decode().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("relive: "), what
        assert re.search(r"is corrupt|is damaged", lines[0]), what
        if table == "chunks":
            assert re.search(r"damaged at event \d+|corrupt at event \d+", lines[0]), what


@pytest.mark.parametrize("table,column,row,bit", FLIPS,
                         ids=[f"{t}.{c}-{r}-{b}" for t, c, r, b in FLIPS])
def test_one_bit_flip_is_reported(recorded, tmp_path, table, column, row, bit):
    trace = _damaged_copy(recorded, tmp_path)
    _set(trace, table, column, row, lambda v: _flip(v, bit))
    _check_commands(recorded, trace, table)


# (chunks.first is the table's INTEGER PRIMARY KEY: SQLite stores no other type there)
RETYPED = [(t, c) for t, c in COLUMNS if (t, c) != ("chunks", "first")]


@pytest.mark.parametrize("table,column", RETYPED, ids=[f"{t}.{c}" for t, c in RETYPED])
def test_cell_of_another_type_is_reported(recorded, tmp_path, table, column):
    """Each other type in turn (replay -a, the slow command, for the first only)."""
    db = sqlite3.connect(recorded[0] / "trace.db")
    key = _row_key(db, table, column, 1)
    where = " AND ".join(f"{k} = ?" for k in TABLES[table][0])
    old = db.execute(f"SELECT {column} FROM {table} WHERE {where}", key).fetchone()[0]
    db.close()
    tried = 0
    for i, new in enumerate(_retypes(old)):
        trace = _damaged_copy(recorded, tmp_path / str(i))
        try:
            _set(trace, table, column, 1, lambda _: new)
        except sqlite3.IntegrityError:  # NULL in a NOT NULL column: SQLite refuses it
            continue
        _check_commands(recorded, trace, table,
                        ("dump", "info", "ps") if tried else ("replay", "dump", "info", "ps"))
        tried += 1
    assert tried >= 3


def test_damaged_copy_of_a_mapped_file_is_reported(recorded, tmp_path):
    """libc's copy in files/ with one bit flipped: replay says so, naming the file."""
    trace = _damaged_copy(recorded, tmp_path)
    db = sqlite3.connect(trace / "trace.db")
    file_id, path = db.execute("SELECT id, path FROM files WHERE path LIKE '%libc.so%'"
                               ).fetchone()
    db.close()
    copy = trace / "files" / file_id
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x10
    copy.write_bytes(data)
    code, out, err = _run("replay", trace)
    assert code == 1 and b"Traceback" not in err, (code, out, err)
    assert f"mapped file ({path}) is damaged".encode() in err, err
