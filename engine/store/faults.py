"""SQLite errors -> storage errors that name the file, the problem and what to do.

Faults of the medium (a full disk, an I/O error, a read-only or missing directory, a lock held
by another process) are `StorageUnavailable`: the call committed nothing and succeeds once the
operator fixes the cause, without a restart. A damaged file, or one that is no SQLite database,
is `StorageCorrupt`. Anything else is a bug of ours and stays what it is.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.errors import StorageCorrupt, StorageError, StorageUnavailable

# Primary SQLite result codes (https://www.sqlite.org/rescode.html).
_UNAVAILABLE = {
    3: "permission denied",  # SQLITE_PERM
    5: "the database is locked by another connection",  # SQLITE_BUSY
    6: "a table is locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "the file or its directory is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "the disk is full",  # SQLITE_FULL
    14: "cannot open the file (does the directory exist and is it writable?)",  # SQLITE_CANTOPEN
}
_CORRUPT = {
    11: "the file is damaged",  # SQLITE_CORRUPT
    26: "the file is not a SQLite database",  # SQLITE_NOTADB
}


def storage_error(path: Path, exc: sqlite3.Error, opening: bool = False) -> StorageError | None:
    """The storage error for a SQLite error, or None when it is not a storage fault.
    `opening`: the error happened while the store opened its file (not in a call)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in _UNAVAILABLE:
        advice = (
            "cannot open the store"
            if opening
            else "nothing of this call was stored, retry once the cause is fixed"
        )
        return StorageUnavailable(f"{path}: {_UNAVAILABLE[primary]} ({exc}); {advice}")
    if primary in _CORRUPT:
        return StorageCorrupt(
            f"{path}: {_CORRUPT[primary]} ({exc}); restore it from a backup or point"
            " --data-dir at another directory"
        )
    return None
