"""A data dir written by the schema of version 1 opens as version 2, nothing lost, the changed
counts moved where version 2 keeps them (engine/store/migrate.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.store.sqlite import SQLiteStore
from tests.conftest import DAY, T0

V1 = (Path(__file__).parent.parent / "fixtures" / "schema_v1.sql").read_text()
_COLUMNS = (
    "seq, decision_id, time, customer_id, experiment, arm, policy, model_version, action,"
    " touchpoint, channel, probability, cost, features, eligible, probabilities, removed,"
    " window_end, attributed_value, attributed_purchases"
)


def _v1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("instance_id", "abc123"), ("schema", "1"), ("watermark", str(T0 + DAY))],
    )
    conn.execute(
        f"INSERT INTO decisions ({_COLUMNS}) VALUES"
        " (1, 'abc123-0000000001', ?, 'c1', 'x', 'chain', 'chain', 'v', 'welcome@email',"
        " 'welcome', 'email', 1.0, 0.001, '{}', '[\"no_contact\",\"welcome@email\"]',"
        " '[0.0,1.0]', '[]', ?, 130.0, 2)",
        (T0, T0 + 10 * DAY),
    )
    # One of the two "purchases" was a value reported with ReportOutcome (30 of the 130).
    conn.execute(
        "INSERT INTO outcomes VALUES ('abc123-0000000001', 'order-9', ?, NULL, 30.0)", (T0,)
    )
    conn.execute("INSERT INTO customers VALUES ('c1', ?, 100.0, 1, 100.0, ?)", (T0 - DAY, T0 - DAY))
    conn.execute("INSERT INTO permissions VALUES ('c1', 'sms', 3, ?)", (T0 - 60,))  # unsubscribed
    conn.execute("INSERT INTO permissions VALUES ('c1', 'push', 1, ?)", (T0 - 60,))
    conn.execute(
        "INSERT INTO events (event_id, customer_id, time, type, value, channel, decision_id)"
        " VALUES ('e-1', 'c1', ?, 1, 100.0, '', '')",
        (T0 - DAY,),
    )
    conn.commit()
    conn.close()


def test_a_version_1_file_is_migrated_in_place(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "anstoss.db"
    _v1_file(path)
    store = SQLiteStore(path, catalog)
    record = store.get_decision("abc123-0000000001")
    assert record is not None
    assert (record.attributed_value, record.attributed_purchases) == (130.0, 1)
    assert (record.reported_values, record.reported_value) == (1, 30.0)
    assert record.activation == 1 and record.request_id == "" and not record.deferred
    state = store.load_states(["c1"], np.array([T0 + 3600]))
    ch = catalog.channel_index
    assert state.unsubscribed[0, ch["sms"]] and not state.unsubscribed[0, ch["push"]]
    assert state.permission[0, ch["push"]] == 1 and state.permission[0, ch["sms"]] == 0
    assert state.contacts_7d[0, ch["email"]] == 1  # the contact kept counting
    assert state.touchpoint_sent[0, catalog.touchpoint_index["welcome"]] == 1
    assert store.watermark == T0 + DAY
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "decisions_by_contact" in indexes and "decisions_by_customer" not in indexes
    conn.close()
    # Opening again is a no-op: still version 2, same data.
    again = SQLiteStore(path, catalog)
    assert again.get_decision("abc123-0000000001") == record
    again.close()


def test_a_new_file_is_version_2(tmp_path: Path, catalog: Catalog) -> None:
    SQLiteStore(tmp_path / "new.db", catalog).close()
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    conn.close()
