"""Background WAL checkpoints for the SQLite store, bounded under continuous load.

In WAL mode a commit only appends to the write-ahead log; a checkpoint copies the log into the
database file. SQLite would do that inside whichever COMMIT crosses its threshold, making that
request slow. Here a thread with its own connection does it every second instead: a PASSIVE
checkpoint, which never blocks the writer (sqlite3 releases the GIL meanwhile).

PASSIVE alone does not bound the log under steady writes: SQLite starts the log over only when
a writer finds every frame checkpointed, and with a commit every few milliseconds new frames
always arrive while a checkpoint runs, so the file grows for as long as the load lasts. So when
the log passes ``restart_bytes``, the thread runs a RESTART checkpoint: it holds off writers for
the few frames the last PASSIVE left (milliseconds; a writer waits within its busy timeout), and
the next commit starts the log over. ``journal_size_limit`` then truncates a file that grew past
it. Durability does not depend on any of this: a committed transaction is safe in the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("anstoss.store")

RESTART_BYTES = 16 * 1024 * 1024


class Checkpointer:
    def __init__(
        self, path: Path, every: float = 1.0, restart_bytes: int = RESTART_BYTES
    ) -> None:
        self._path = path
        self._wal = Path(str(path) + "-wal")
        self._every = every
        self._restart_bytes = restart_bytes
        self._stop = threading.Event()
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name="anstoss-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=2000")
        except sqlite3.Error as exc:
            log.error("WAL checkpoints disabled: cannot open %s: %s", self._path, exc)
            return
        try:
            while not self._stop.wait(self._every):
                self._checkpoint(conn, "PASSIVE")
                if self._wal_size() > self._restart_bytes and self._checkpoint(conn, "RESTART"):
                    self.restarts += 1
            self._checkpoint(conn, "TRUNCATE")  # leave a compact file behind
        finally:
            conn.close()

    def _wal_size(self) -> int:
        try:
            return self._wal.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> bool:
        """True when the checkpoint ran to the end (SQLite answers busy = 0)."""
        try:
            busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return busy == 0
        except sqlite3.Error as exc:  # busy, a full disk, or the file went away: try later
            log.warning("%s checkpoint failed: %s", mode.lower(), exc)
            return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
