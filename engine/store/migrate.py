"""Bring an older SQLite store file to the current schema, in place and in one transaction.

Version 1 -> 2 (contract v1.1): decisions gain request ids, deferred activation, reported values
counted apart from purchases, delivery times and a contact time (the contact index moves to it);
unsubscribes move from the consent table to their own register; event ids become scoped to the
customer. A value reported with ReportOutcome was counted as a purchase in version 1; those
counts are moved to reported_values.
"""

from __future__ import annotations

import sqlite3

CURRENT = "2"

_DECISION_COLUMNS = (
    "request_id TEXT NOT NULL DEFAULT ''",
    "request_fingerprint TEXT NOT NULL DEFAULT ''",
    "deferred INTEGER NOT NULL DEFAULT 0",
    "activation INTEGER NOT NULL DEFAULT 1",
    "contact_time INTEGER",
    "delivered_time INTEGER",
    "opened_time INTEGER",
    "clicked_time INTEGER",
    "not_executed_time INTEGER",
    "reported_values INTEGER NOT NULL DEFAULT 0",
    "reported_value REAL NOT NULL DEFAULT 0",
)

_V1_TO_V2 = (
    *(f"ALTER TABLE decisions ADD COLUMN {column}" for column in _DECISION_COLUMNS),
    "UPDATE decisions SET contact_time = time WHERE channel != ''",
    "UPDATE decisions SET"
    " reported_values = (SELECT count(*) FROM outcomes o WHERE o.decision_id = decisions.decision_id"
    " AND o.value IS NOT NULL),"
    " reported_value = coalesce((SELECT sum(o.value) FROM outcomes o"
    " WHERE o.decision_id = decisions.decision_id), 0)"
    " WHERE decision_id IN (SELECT decision_id FROM outcomes WHERE value IS NOT NULL)",
    "UPDATE decisions SET attributed_purchases = attributed_purchases - reported_values"
    " WHERE reported_values > 0",
    "DROP INDEX IF EXISTS decisions_by_customer",
    "DROP INDEX IF EXISTS events_by_id",
    "CREATE TABLE IF NOT EXISTS subscriptions (customer_id TEXT NOT NULL, channel TEXT NOT NULL,"
    " unsubscribed INTEGER NOT NULL, time INTEGER NOT NULL, PRIMARY KEY (customer_id, channel))"
    " WITHOUT ROWID",
    "INSERT INTO subscriptions SELECT customer_id, channel, 1, time FROM permissions"
    " WHERE state = 3",
    "DELETE FROM permissions WHERE state = 3",
    "UPDATE meta SET value = '2' WHERE key = 'schema'",
)


def migrate(conn: sqlite3.Connection) -> str | None:
    """Migrate the open file if it holds an older schema; returns the version found (None for
    a new file). Runs before the schema script, which creates what is still missing."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    version = None if row is None else str(row[0])
    if version == "1":
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _V1_TO_V2:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version
