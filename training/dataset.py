"""Decision logs from anywhere, in one schema: a server's SQLite store or a simulation's output.

A server's data dir (`anstoss serve --data-dir data`) reads the same way as a simulation's
output directory:

>>> import tempfile
>>> from simulator import simulate
>>> out = tempfile.mkdtemp()
>>> _ = simulate(policy="chain", customers=50, days=10, seed=1).write(out)
>>> log = read_decision_log(out)
>>> log.decisions.columns.tolist()[:4]
['decision_id', 'seq', 'time', 'customer_id']
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.logschema import DECISION_COLUMNS, EVENT_COLUMNS, finish_decisions, finish_events

DB_FILE = "anstoss.db"


class LogNotFound(FileNotFoundError):
    """The source holds no decision log."""


@dataclass(frozen=True)
class DecisionLog:
    decisions: pd.DataFrame  # engine.logschema.DECISION_COLUMNS
    events: pd.DataFrame  # engine.logschema.EVENT_COLUMNS
    source: str


def read_decision_log(source: str | Path) -> DecisionLog:
    """Read `source`: an SQLite file, a server data dir, or a simulation output dir."""
    path = Path(source)
    if path.is_dir() and (path / DB_FILE).exists():
        path = path / DB_FILE
    if path.is_file():
        return _from_sqlite(path)
    if path.is_dir() and (path / "decisions.parquet").exists():
        return DecisionLog(
            decisions=pd.read_parquet(path / "decisions.parquet")[list(DECISION_COLUMNS)],
            events=pd.read_parquet(path / "events.parquet")[list(EVENT_COLUMNS)],
            source=str(path),
        )
    raise LogNotFound(
        f"{source}: no decision log here (expected {DB_FILE} or decisions.parquet + events.parquet)"
    )


def _from_sqlite(path: Path) -> DecisionLog:
    # Read-only: reading a live server's log must never write to it.
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            decisions = pd.read_sql_query(
                f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions ORDER BY seq", conn
            )
            events = pd.read_sql_query(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY seq", conn
            )
        except pd.errors.DatabaseError as exc:
            raise LogNotFound(f"{path}: not an anstoss decision log ({exc})") from None
    events["event_id"] = events["event_id"].fillna("")
    return DecisionLog(finish_decisions(decisions), finish_events(events), str(path))
