"""The SQLite schema of trace.db. Any change to it bumps records.FORMAT_VERSION.

Every row ends with `crc`, its checksum (tracefile.integrity). Format 5 stores events in
`chunks` (tracefile.chunks); `events` and `writes` are the tables of formats 2-4, which
tracefile.reader still reads (an event row's `writes` is the number of its rows in the
writes table); new traces leave them out."""
from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    first INTEGER PRIMARY KEY, count INTEGER NOT NULL, size INTEGER NOT NULL,
    data BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    tid INTEGER PRIMARY KEY, pid INTEGER NOT NULL, ppid INTEGER NOT NULL, argv TEXT NOT NULL,
    exe TEXT NOT NULL, exit_status INTEGER, first_event INTEGER NOT NULL,
    crc INTEGER NOT NULL);
"""

# Formats 2-4 (the test helpers write them to check that old traces still read).
ROW_TABLES = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, tid INTEGER NOT NULL, kind INTEGER NOT NULL,
    nr INTEGER NOT NULL, result INTEGER NOT NULL, regs BLOB NOT NULL, info BLOB NOT NULL,
    writes INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS writes (
    seq INTEGER NOT NULL, ord INTEGER NOT NULL, addr INTEGER NOT NULL, size INTEGER NOT NULL,
    conservative INTEGER NOT NULL, zstd INTEGER NOT NULL, data BLOB NOT NULL,
    crc INTEGER NOT NULL, PRIMARY KEY (seq, ord)) WITHOUT ROWID;
"""
