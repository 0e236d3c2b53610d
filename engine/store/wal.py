"""Background WAL checkpoints for the SQLite store, bounded under continuous load.

In WAL mode a commit only appends to the write-ahead log; a checkpoint copies the log into the
database file. SQLite would do that inside whichever COMMIT crosses its threshold, making that
request slow. Here a thread with its own connection does it every second instead: a PASSIVE
checkpoint, which never blocks the writer (sqlite3 releases the GIL meanwhile).

PASSIVE alone does not bound the log under steady writes: SQLite starts the log over only when
a writer finds every frame checkpointed, and with a commit every few milliseconds new frames
always arrive while a checkpoint runs, so the file grows for as long as the load lasts. A
RESTART checkpoint ends that, but from this thread it would wait for the writer lock, and a
writer that commits back to back starves it (measured: over a second, the log reaching 100 MB).
So when the log passes ``restart_bytes`` this thread raises `restart_due`, and the store's writer
runs the RESTART itself right after its next commit, when nobody else writes: it copies the few
frames the last PASSIVE left (milliseconds) and the next commit starts the log over. If no
commit comes for a while, this thread runs it. ``journal_size_limit`` then truncates a file that
grew past it. Durability does not depend on any of this: a committed transaction is safe in the
log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("anstoss.store")

RESTART_BYTES = 16 * 1024 * 1024
_SIZE_CHECK = 0.2  # seconds between looks at the log's size (a stat call)
_WRITER_GRACE = 2.0  # seconds the writer has to run a due RESTART before this thread does


class Checkpointer:
    def __init__(self, path: Path, every: float = 1.0, restart_bytes: int = RESTART_BYTES) -> None:
        self._path = path
        self._wal = Path(str(path) + "-wal")
        self._every = every
        self._restart_bytes = restart_bytes
        self._stop = threading.Event()
        self.restart_due = False  # the writer should run a RESTART checkpoint after its commit
        self._due_since = 0.0
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name="anstoss-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            # Never wait for a lock: a RESTART waiting for a reader would hold off writers.
            conn.execute("PRAGMA busy_timeout=0")
        except sqlite3.Error as exc:
            log.error("WAL checkpoints disabled: cannot open %s: %s", self._path, exc)
            return
        try:
            last = time.monotonic()
            while not self._stop.wait(min(self._every, _SIZE_CHECK)):
                now = time.monotonic()
                big = self._wal_size() > self._restart_bytes
                if big or now - last >= self._every:
                    checkpoint(conn, "PASSIVE")
                    last = now
                if big and not self.restart_due:
                    self.restart_due, self._due_since = True, now
                elif self.restart_due and now - self._due_since > _WRITER_GRACE:
                    self.restarted(checkpoint(conn, "RESTART"))  # the writer is idle: do it here
            checkpoint(conn, "TRUNCATE")  # leave a compact file behind
        finally:
            conn.close()

    def restarted(self, done: bool) -> None:
        """A RESTART checkpoint was tried (by the writer or here). A failed one is asked for
        again at the next look at the log's size, not at every commit."""
        self.restarts += done
        self.restart_due = False

    def _wal_size(self) -> int:
        try:
            return self._wal.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def checkpoint(conn: sqlite3.Connection, mode: str) -> bool:
    """Run a WAL checkpoint; True when it ran to the end (SQLite answers busy = 0)."""
    try:
        busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return bool(busy == 0)
    except sqlite3.Error as exc:  # a full disk, or the file went away: try later
        log.warning("%s checkpoint failed: %s", mode.lower(), exc)
        return False
