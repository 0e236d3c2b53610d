"""Background WAL checkpoints for the SQLite store.

In WAL mode a commit only appends to the write-ahead log; a checkpoint copies the log into the
database file. SQLite would do that inside whichever COMMIT crosses its threshold, making that
request slow. Here a thread with its own connection does it every few seconds instead (PASSIVE:
it never blocks the writer; sqlite3 releases the GIL meanwhile). Durability does not depend on
it: a committed transaction is safe in the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("anstoss.store")


class Checkpointer:
    def __init__(self, path: Path, every: float = 2.0) -> None:
        self._path = path
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="anstoss-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._every):
                self._checkpoint(conn, "PASSIVE")
            self._checkpoint(conn, "TRUNCATE")  # leave a compact file behind
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error as exc:  # busy, or the file went away: try again later
            log.warning("%s checkpoint failed: %s", mode.lower(), exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
