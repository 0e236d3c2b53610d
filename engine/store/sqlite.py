"""The SQLite store: one WAL-mode file per data dir, written before any reply goes out.

Every method that writes does so in one transaction. With ``synchronous=NORMAL`` a commit survives a killed
process (the WAL only has to reach the OS); ``FULL`` also survives a power loss. One process owns
a data dir; the engine serialises calls, so one connection is enough.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import pandas as pd

from engine.activation import DecisionState, apply_decision_event
from engine.attribution import attribute_batch, latest_per_group, purchase_totals
from engine.catalog import Catalog
from engine.decisions import (
    ACTIVATION_ACTIVE,
    ACTIVATION_NOT_EXECUTED,
    STATUS_CLOSED,
    STATUS_OPEN,
    ClosedDecisions,
    DecisionBatch,
    DecisionRecord,
    format_decision_id,
)
from engine.errors import (
    AnstossError,
    OutcomeRejected,
    StorageCorrupt,
    StorageUnavailable,
    UnknownDecision,
    shown,
)
from engine.eventkeys import EventContent, deduplicate
from engine.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureBatch
from engine.logschema import (
    DECISION_COLUMNS,
    EVENT_COLUMNS,
    finish_decisions,
    finish_events,
    to_json,
)
from engine.requests import DECISION_EVENTS, EventBatch, EventResult, EventType, Outcome
from engine.rewards import RewardRule, earlier_attribution
from engine.state import NO_TIME, PERMISSION_OF_EVENT, UNSUBSCRIBED_OF_EVENT, CustomerStates
from engine.store.base import Checkpoint, LogContext, OutcomeApplied
from engine.store.faults import storage_error
from engine.store.migrate import CURRENT, migrate
from engine.store.wal import Checkpointer, checkpoint
from engine.timeutil import DAY

SCHEMA_VERSION = CURRENT
_CHUNK = 500  # customer ids per IN (...) query
_PATTERN_CACHE = 4096  # distinct (rules, probabilities) rows whose JSON is kept
_BUSY_TIMEOUT_MS = 5000

_SCHEMA = (resources.files("engine") / "store" / "schema.sql").read_text()

_CLOSED_COLUMNS = "seq, close_seq, arm, features, eligible, action, probability, reward"
_DECISION_EVENT_CODES = [int(t) for t in DECISION_EVENTS]
_PERMISSION_CODES = list(PERMISSION_OF_EVENT)
_SUBSCRIPTION_CODES = list(UNSUBSCRIBED_OF_EVENT)
_DUPLICATE = EventResult(duplicate=True, decisions_attributed=0)

log = logging.getLogger("anstoss.store")
_Method = TypeVar("_Method", bound=Callable[..., Any])
_Item = TypeVar("_Item")


def _reads(method: _Method) -> _Method:
    """A read outside a transaction: SQLite errors become storage errors like in writes."""

    @functools.wraps(method)
    def wrapper(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        with self._faults():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class SQLiteStore:
    """The default store: ``<data dir>/anstoss.db``."""

    def __init__(self, path: str | Path, catalog: Catalog, synchronous: str = "normal") -> None:
        self.path = Path(path)
        self.catalog = catalog
        directory = self.path.parent
        if directory.exists() and not directory.is_dir():
            raise StorageUnavailable(f"{directory}: is not a directory (the data dir)")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"{directory}: cannot create the data dir ({exc.strerror})"
            ) from None
        if self.path.exists() and not self.path.is_file():
            raise StorageUnavailable(f"{self.path}: is not a file")
        for needed in (directory, self.path):
            if needed.exists() and not os.access(needed, os.W_OK):
                raise StorageUnavailable(
                    f"{needed}: read-only; the store writes its database and WAL there"
                )
        self._opening = True
        with self._faults():
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                self._open(synchronous)
            except BaseException:
                self._conn.close()
                raise
        self._opening = False
        self._checkpointer = Checkpointer(self.path)
        self._json_columns: dict[bytes, tuple[str, str, str]] = {}

    def _open(self, synchronous: str) -> None:
        # Small pages: a batch of decisions updates one page of the per-customer index for
        # each customer, and WAL commits write whole pages (about 2x faster than 4 KiB here).
        # Takes effect when the file is created.
        self._conn.execute("PRAGMA page_size=1024")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        # Checkpoints run in a background thread (engine/store/wal.py), not inside a request's
        # COMMIT; the WAL file is reused after each and truncated back to 64 MiB at most.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._conn.execute("PRAGMA journal_size_limit=67108864")
        self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        migrate(self._conn)  # an older file first becomes the current schema
        self._conn.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
        self._watermark = self._persisted_watermark = NO_TIME
        self._depth = 0
        self._carried = NO_TIME
        self._next_seq = self._next_close_seq = 1
        self._next_due: int | None = None
        with self._transaction():
            meta = dict(self._conn.execute("SELECT key, value FROM meta"))
            if "instance_id" not in meta:
                meta = {
                    "instance_id": secrets.token_hex(6),
                    "schema": SCHEMA_VERSION,
                    "watermark": str(NO_TIME),
                }
                self._conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        if meta.get("schema") != SCHEMA_VERSION:
            raise StorageCorrupt(
                f"{self.path}: schema version {meta.get('schema')!r}, expected {SCHEMA_VERSION}"
            )
        self.instance_id: str = meta["instance_id"]
        self._watermark = self._persisted_watermark = int(meta["watermark"])
        # Latest purchase or unsubscribe seen: a decision logged at an earlier time may have
        # some of them inside its window already (events that arrived first).
        self._latest_attributable = (
            self._conn.execute("SELECT max(time) FROM events WHERE type IN (1, 5)").fetchone()[0]
            or NO_TIME
        )
        self._next_seq = 1 + (
            self._conn.execute("SELECT max(seq) FROM decisions").fetchone()[0] or 0
        )
        self._next_close_seq = 1 + (
            self._conn.execute("SELECT max(close_seq) FROM decisions").fetchone()[0] or 0
        )
        self._refresh_next_due()
        self._nothing_closed = self._closed([])

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """SQLite errors of the medium or the file -> storage errors naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            error = storage_error(self.path, exc, opening=self._opening)
            if error is None:
                raise
            raise error from exc

    @contextmanager
    def _transaction(self, carries: int = NO_TIME) -> Iterator[sqlite3.Connection]:
        """One transaction; committed when the block ends, rolled back on any error (a failed
        COMMIT included), so the connection never stays stuck in a transaction. Inside
        `atomic()` it joins the outer transaction. Event time is written with it when it moved
        (it survives a restart); `carries` is the latest time of what the block writes: event
        time moves to it only if the block commits."""
        if self._depth:
            self._carried = max(self._carried, carries)
            yield self._conn
            return
        with self._faults():
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            self._carried = carries
            try:
                yield self._conn
                watermark = max(self._watermark, self._carried)
                if watermark != self._persisted_watermark:
                    self._conn.execute(
                        "UPDATE meta SET value = ? WHERE key = 'watermark'", (str(watermark),)
                    )
                self._conn.execute("COMMIT")
                self._watermark = self._persisted_watermark = watermark
                walker = getattr(self, "_checkpointer", None)
                if walker is not None and walker.restart_due:
                    self._depth = 0  # outside any transaction now
                    walker.restarted(self._restart_wal())
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the original error is the news
                        self._conn.execute("ROLLBACK")
                self._resync()
                raise
            finally:
                self._depth = 0

    def _restart_wal(self) -> bool:
        """A RESTART checkpoint that never waits: a reader still using the log (say a training
        job reading the live file) makes it answer busy at once, and it is tried again later,
        instead of holding every call for the busy timeout."""
        self._conn.execute("PRAGMA busy_timeout=0")
        try:
            return checkpoint(self._conn, "RESTART")
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write inside the block is one transaction (e.g. the rounds of a batch that
        asks about a customer twice): all of it is committed, or none."""
        with self._transaction():
            yield

    def _resync(self) -> None:
        """After a rollback: counters kept in memory follow the file again."""
        with contextlib.suppress(sqlite3.Error):
            self._next_seq = 1 + (
                self._conn.execute("SELECT max(seq) FROM decisions").fetchone()[0] or 0
            )
            self._next_close_seq = 1 + (
                self._conn.execute("SELECT max(close_seq) FROM decisions").fetchone()[0] or 0
            )
            self._refresh_next_due()

    def _refresh_next_due(self) -> None:
        row = self._conn.execute(
            "SELECT min(window_end) FROM decisions WHERE status = 1"
        ).fetchone()
        self._next_due = row[0] if row[0] is not None else None

    def close(self) -> None:
        self._checkpointer.stop()
        self._conn.close()

    @property
    def watermark(self) -> int:
        return self._watermark

    def has_due(self, rule: RewardRule) -> bool:
        return (
            self._next_due is not None and self._next_due <= self._watermark - rule.lateness_seconds
        )

    def observe(self, time: int) -> None:
        """Event time reached `time` (persisted with the next transaction)."""
        self._watermark = max(self._watermark, time)

    # -- customer state ---------------------------------------------------------------------

    @_reads
    def load_states(self, customer_ids: list[str], times: np.ndarray) -> CustomerStates:
        cat = self.catalog
        st = CustomerStates.empty(customer_ids, times, len(cat.channels), len(cat.touchpoints))
        # Rows of the same customer share her state: query each customer once, then copy the
        # results to every row with vectorised assignments.
        position = {cid: i for i, cid in reversed(list(enumerate(customer_ids)))}
        unique = list(position)
        found: list[tuple[Any, ...]] = []
        granted: list[tuple[Any, ...]] = []
        unsubscribed: list[tuple[Any, ...]] = []
        for chunk in _chunks(unique, _CHUNK):
            marks = ",".join("?" * len(chunk))
            found += self._conn.execute(
                "SELECT customer_id, first_purchase_time, first_order_value, purchases,"
                f" purchase_value, last_purchase_time FROM customers WHERE customer_id IN ({marks})",
                chunk,
            ).fetchall()
            granted += self._conn.execute(
                "SELECT customer_id, channel, state FROM permissions"
                f" WHERE customer_id IN ({marks})",
                chunk,
            ).fetchall()
            unsubscribed += self._conn.execute(
                "SELECT customer_id, channel FROM subscriptions"
                f" WHERE customer_id IN ({marks}) AND unsubscribed = 1",
                chunk,
            ).fetchall()
        if found:
            rows = np.array([position[r[0]] for r in found])
            values = np.array([r[1:] for r in found], dtype=np.float64)
            st.known[rows] = True
            st.first_purchase_time[rows] = values[:, 0]
            st.first_order_value[rows] = values[:, 1]
            st.purchases[rows] = values[:, 2]
            st.purchase_value[rows] = values[:, 3]
            st.last_purchase_time[rows] = values[:, 4]
        channel_index = cat.channel_index
        granted = [g for g in granted if g[1] in channel_index]
        if granted:
            st.permission[
                [position[g[0]] for g in granted], [channel_index[g[1]] for g in granted]
            ] = [g[2] for g in granted]
        unsubscribed = [u for u in unsubscribed if u[1] in channel_index]
        if unsubscribed:
            st.unsubscribed[
                [position[u[0]] for u in unsubscribed], [channel_index[u[1]] for u in unsubscribed]
            ] = True
        if len(unique) < len(customer_ids):  # repeated customers: copy from the first row
            first = np.array([position[c] for c in customer_ids])
            for name in ("known", "first_purchase_time", "first_order_value", "purchases",
                         "purchase_value", "last_purchase_time", "permission",
                         "unsubscribed"):  # fmt: skip
                column = getattr(st, name)
                column[:] = column[first]
        self._load_contacts(st, customer_ids)
        return st

    def _load_contacts(self, st: CustomerStates, customer_ids: list[str]) -> None:
        """Contact counts per request row, aggregated inside SQLite: the request rows join the
        covering (customer, contact time, channel, touchpoint) index and group by row. A
        decision counts from its contact time (engine/activation.py): not at all while pending
        or once taken back."""
        cat = self.catalog
        t = st.times.tolist()
        week, month = 7 * DAY, 30 * DAY
        for start in range(0, len(customer_ids), _CHUNK):
            stop = min(start + _CHUNK, len(customer_ids))
            values = ",".join(["(?,?,?)"] * (stop - start))
            params = [x for i in range(start, stop) for x in (i, customer_ids[i], t[i])]
            result = self._conn.execute(
                f"WITH request(i, customer_id, t) AS (VALUES {values})"
                " SELECT r.i, d.channel, d.touchpoint, count(*),"
                f" sum(d.contact_time > r.t - {week}), sum(d.contact_time > r.t - {month}),"
                f" coalesce(max(CASE WHEN d.contact_time > r.t - {month} THEN d.contact_time"
                f" END), {NO_TIME}), max(d.contact_time)"
                " FROM request r JOIN decisions d ON d.customer_id = r.customer_id"
                " AND d.contact_time <= r.t"
                " GROUP BY r.i, d.channel, d.touchpoint",
                params,
            ).fetchall()
            if not result:
                continue
            row = np.array([r[0] for r in result])
            c = np.array([cat.channel_index.get(r[1], -1) for r in result])
            p = np.array([cat.touchpoint_index.get(r[2], -1) for r in result])
            # n, in 7d, in 30d, last in 30d, last
            counts = np.array([r[3:] for r in result], dtype=np.int64)
            known = c >= 0
            rc = (row[known], c[known])
            np.add.at(st.contacts_7d, rc, counts[known, 1])
            np.add.at(st.contacts_30d, rc, counts[known, 2])
            np.maximum.at(st.last_contact_time, rc, counts[known, 3])
            known = p >= 0
            np.add.at(st.touchpoint_sent, (row[known], p[known]), counts[known, 0])
            np.maximum.at(st.last_touchpoint_time, (row[known], p[known]), counts[known, 4])

    # -- decisions --------------------------------------------------------------------------

    def log_decisions(self, batch: DecisionBatch, context: LogContext) -> None:
        n = len(batch)
        cat = self.catalog
        keys = cat.action_keys
        seq = np.arange(self._next_seq, self._next_seq + n, dtype=np.int64)
        ids = [format_decision_id(self.instance_id, s) for s in seq.tolist()]
        chosen = batch.chosen.tolist()
        times = batch.times.tolist()
        window_end = batch.window_end.tolist()
        arms = batch.arm.tolist()
        probabilities = batch.probabilities.tolist()
        rules = batch.rule.tolist()
        eligible = batch.eligible_actions()
        removed = batch.removed_actions()
        patterns = batch.patterns()
        features = batch.features
        request_ids = batch.request_ids or [""] * n
        fingerprints = batch.fingerprints or [""] * n
        deferred = batch.deferred_rows().tolist()
        activation = batch.activation().tolist()
        columns = self._json_columns
        rows = []
        for i in range(n):
            a = cat.actions[chosen[i]]
            probs = probabilities[i]
            json_columns = columns.get(patterns[i])
            if json_columns is None:  # rows repeat a few patterns: encode each once
                rule = rules[i]
                json_columns = (
                    to_json([keys[j] for j in eligible[i]]),
                    to_json([probs[j] for j in eligible[i]]),
                    to_json([[keys[j], rule[j]] for j in removed[i]]),
                )
                if len(columns) >= _PATTERN_CACHE:
                    columns.clear()
                columns[patterns[i]] = json_columns
            rows.append(
                (
                    int(seq[i]),
                    ids[i],
                    times[i],
                    batch.customer_ids[i],
                    context.experiment,
                    context.arm_names[arms[i]],
                    context.arm_policies[arms[i]],
                    batch.model_version[i],
                    a.key,
                    a.touchpoint,
                    a.channel,
                    probs[a.index],
                    a.cost,
                    to_json(features.record(i)),
                    *json_columns,
                    window_end[i],
                    request_ids[i],
                    fingerprints[i] if request_ids[i] else "",
                    int(deferred[i]),
                    activation[i],
                    times[i] if chosen[i] and activation[i] == ACTIVATION_ACTIVE else None,
                )
            )
        with self._transaction(int(batch.times.max()) if n else NO_TIME) as conn:
            conn.executemany(
                "INSERT INTO decisions (seq, decision_id, time, customer_id, experiment, arm, policy,"
                " model_version, action, touchpoint, channel, probability, cost, features, eligible,"
                " probabilities, removed, window_end, request_id, request_fingerprint, deferred,"
                " activation, contact_time)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            if n and int(batch.times.min()) <= self._latest_attributable:
                self._attribute_earlier_events(conn, int(seq[0]), int(seq[-1]))
        self._next_seq += n
        batch.seq = seq
        batch.id_prefix = self.instance_id
        if n:
            earliest = int(batch.window_end.min())
            self._next_due = earliest if self._next_due is None else min(self._next_due, earliest)

    @staticmethod
    def _attribute_earlier_events(conn: sqlite3.Connection, first: int, last: int) -> None:
        """Attribute stored purchases and unsubscribes inside the new decisions' windows (events
        that arrived before their decision), adding them in arrival order as live would."""
        found = conn.execute(
            "SELECT d.seq, e.type, e.value, e.channel = d.channel AND d.channel != ''"
            " FROM decisions d JOIN events e ON e.customer_id = d.customer_id"
            " AND e.time >= d.time AND e.time < d.window_end AND e.type IN (1, 5)"
            " WHERE d.seq BETWEEN ? AND ? ORDER BY d.seq, e.seq",
            (first, last),
        ).fetchall()
        updates = [
            (value, purchases, unsubscribes, seq)
            for seq, value, purchases, unsubscribes in earlier_attribution(found)
        ]
        conn.executemany(
            "UPDATE decisions SET attributed_value = ?, attributed_purchases = ?,"
            " unsubscribes = ? WHERE seq = ?",
            updates,
        )

    @_reads
    def find_requests(
        self, customer_ids: Sequence[str], request_ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """Decisions logged for (customer, request id) pairs: pair -> (decision id, fingerprint)."""
        wanted = set(zip(customer_ids, request_ids, strict=True))
        found: dict[tuple[str, str], tuple[str, str]] = {}
        for chunk in _chunks(sorted(wanted), _CHUNK // 2):
            customers = sorted({c for c, _ in chunk})
            requests = sorted({r for _, r in chunk})
            marks = ",".join("?" * len(customers))
            others = ",".join("?" * len(requests))
            for customer, request, decision, fingerprint in self._conn.execute(
                "SELECT customer_id, request_id, decision_id, request_fingerprint FROM decisions"
                f" WHERE customer_id IN ({marks}) AND request_id IN ({others})",
                (*customers, *requests),
            ):
                if (customer, request) in wanted:
                    found[customer, request] = (decision, fingerprint)
        return found

    @_reads
    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        row = self._conn.execute(
            "SELECT decision_id, seq, customer_id, time, experiment, d.arm, policy, model_version,"
            " features, eligible, probabilities, removed, action, probability, cost, window_end,"
            " status, attributed_value, attributed_purchases, unsubscribes, reward, d.close_seq,"
            " closed_time, u.reason, request_id, deferred, activation, delivered_time,"
            " opened_time, clicked_time, not_executed_time, reported_values, reported_value"
            " FROM decisions d LEFT JOIN unlearned u"
            " ON u.arm = d.arm AND u.close_seq = d.close_seq WHERE decision_id = ?",
            (decision_id,),
        ).fetchone()
        if row is None:
            return None
        try:
            return self._record(row)
        except (ValueError, TypeError, KeyError) as exc:  # json errors are ValueErrors
            raise StorageCorrupt(
                f"{self.path}: decision {shown(decision_id)} is damaged ({type(exc).__name__})"
            ) from exc

    @staticmethod
    def _record(row: Sequence[Any]) -> DecisionRecord:
        return DecisionRecord(
            decision_id=row[0],
            seq=row[1],
            customer_id=row[2],
            time=row[3],
            experiment=row[4],
            arm=row[5],
            policy=row[6],
            model_version=row[7],
            features=json.loads(row[8]),
            eligible=tuple(json.loads(row[9])),
            probabilities=tuple(json.loads(row[10])),
            removed=tuple((k, int(v)) for k, v in json.loads(row[11])),
            action=row[12],
            probability=row[13],
            cost=row[14],
            window_end=row[15],
            status=row[16],
            attributed_value=row[17],
            attributed_purchases=row[18],
            unsubscribes=row[19],
            reward=row[20],
            close_seq=row[21],
            closed_time=row[22],
            unlearned=row[23],
            request_id=row[24],
            deferred=bool(row[25]),
            activation=row[26],
            delivered_time=row[27],
            opened_time=row[28],
            clicked_time=row[29],
            not_executed_time=row[30],
            reported_values=row[31],
            reported_value=row[32],
        )

    # -- events and outcomes ----------------------------------------------------------------

    def apply_events(
        self, events: EventBatch, rule: RewardRule
    ) -> list[EventResult | AnstossError]:
        """Apply a batch of events in one transaction, vectorised (engine/attribution.py): the
        result of applying them one by one in order (sums up to the order of float additions),
        at a cost that does not grow with (events x open decisions) of a customer. Decisions
        already due at the event time before this call count as closed, also when they wait
        for the background to close them."""
        n = len(events)
        if n == 0:
            return []
        results: list[EventResult | AnstossError | None] = [None] * n
        closed_before = self._watermark - rule.lateness_seconds
        with self._transaction(int(events.times.max())) as conn:
            keep = self._new_events(conn, events, results)
            about = np.flatnonzero(keep & np.isin(events.types, _DECISION_EVENT_CODES))
            if len(about):
                self._decision_events(conn, events, about, results, keep, closed_before)
            rows = np.flatnonzero(keep)
            attributed = np.zeros(n, dtype=np.int64)
            if len(rows):
                self._insert_events(conn, events, rows)
                self._apply_rows(conn, events, rows, attributed, closed_before)
        return [
            r if r is not None else EventResult(duplicate=False, decisions_attributed=int(a))
            for r, a in zip(results, attributed.tolist(), strict=True)
        ]

    def _new_events(
        self,
        conn: sqlite3.Connection,
        events: EventBatch,
        results: list[EventResult | AnstossError | None],
    ) -> np.ndarray:
        """(n,) bool: the events to apply. An event whose (customer, event id) was applied
        before, or earlier in the batch, is a duplicate if its content is the same and a
        Conflict otherwise (engine/eventkeys.py)."""
        keyed = [i for i, e in enumerate(events.event_ids) if e]
        stored: dict[tuple[str, str], EventContent] = {}
        if keyed:
            wanted = {(events.customer_ids[i], events.event_ids[i]) for i in keyed}
            index = self.catalog.channel_index
            for chunk in _chunks(sorted(wanted), _CHUNK // 2):
                customers = sorted({c for c, _ in chunk})
                ids = sorted({e for _, e in chunk})
                found = conn.execute(
                    "SELECT customer_id, event_id, type, time, value, channel, decision_id"
                    f" FROM events WHERE customer_id IN ({','.join('?' * len(customers))})"
                    f" AND event_id IN ({','.join('?' * len(ids))})",
                    (*customers, *ids),
                ).fetchall()
                for customer, event_id, kind, time, value, channel, decision in found:
                    stored[customer, event_id] = EventContent(
                        kind, time, value, index.get(channel, -1) if channel else -1, decision
                    )
        return deduplicate(events, stored, results)

    def _decision_events(
        self,
        conn: sqlite3.Connection,
        events: EventBatch,
        about: np.ndarray,
        results: list[EventResult | AnstossError | None],
        keep: np.ndarray,
        closed_before: int,
    ) -> None:
        """Check and apply events about one decision (engine/activation.py), in order; a
        rejected event is not applied (and not stored)."""
        asked = sorted({events.decision_ids[i] for i in about.tolist()})
        states: dict[str, DecisionState] = {}
        for chunk in _chunks(asked, _CHUNK):
            for row in conn.execute(
                "SELECT decision_id, customer_id, time, channel, deferred, activation, status,"
                " window_end, contact_time, delivered_time, opened_time, clicked_time,"
                f" not_executed_time FROM decisions WHERE decision_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                states[row[0]] = DecisionState(
                    decision_id=row[0],
                    customer_id=row[1],
                    time=row[2],
                    contacts=row[3] != "",
                    deferred=bool(row[4]),
                    activation=row[5],
                    closed=row[6] == STATUS_CLOSED or row[7] <= closed_before,
                    contact_time=_time_or_none(row[8]),
                    delivered_time=_time_or_none(row[9]),
                    opened_time=_time_or_none(row[10]),
                    clicked_time=_time_or_none(row[11]),
                    not_executed_time=_time_or_none(row[12]),
                )
        times = events.times.tolist()
        for i in about.tolist():
            state = states.get(events.decision_ids[i])
            error = (
                UnknownDecision(events.decision_ids[i])
                if state is None
                else apply_decision_event(
                    state, int(events.types[i]), events.customer_ids[i], times[i]
                )
            )
            if error is not None:
                results[i] = error
                keep[i] = False
        changed = [st for st in states.values() if st.changed]
        conn.executemany(
            "UPDATE decisions SET activation = ?, contact_time = ?, delivered_time = ?,"
            " opened_time = ?, clicked_time = ?, not_executed_time = ? WHERE decision_id = ?",
            [
                (
                    st.activation,
                    _none_or_time(st.contact_time),
                    _none_or_time(st.delivered_time),
                    _none_or_time(st.opened_time),
                    _none_or_time(st.clicked_time),
                    _none_or_time(st.not_executed_time),
                    st.decision_id,
                )
                for st in changed
            ],
        )

    def _insert_events(
        self, conn: sqlite3.Connection, events: EventBatch, rows: np.ndarray
    ) -> None:
        names = [c.name for c in self.catalog.channels]
        times, types = events.times.tolist(), events.types.tolist()
        values, channels = events.values.tolist(), events.channels.tolist()
        conn.executemany(
            "INSERT INTO events (event_id, customer_id, time, type, value, channel, decision_id)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (
                    events.event_ids[i] or None,
                    events.customer_ids[i],
                    times[i],
                    types[i],
                    values[i],
                    names[channels[i]] if channels[i] >= 0 else "",
                    events.decision_ids[i],
                )
                for i in rows.tolist()
            ],
        )

    def _apply_rows(
        self,
        conn: sqlite3.Connection,
        events: EventBatch,
        rows: np.ndarray,
        attributed: np.ndarray,
        closed_before: int,
    ) -> None:
        """Customer totals, permissions and attribution of the new (deduplicated) events."""
        index: dict[str, int] = {}
        keys = np.array(
            [index.setdefault(events.customer_ids[i], len(index)) for i in rows.tolist()],
            dtype=np.int64,
        )
        names = list(index)
        channel_names = [c.name for c in self.catalog.channels]
        n_channels = len(channel_names)
        kinds, times = events.types[rows], events.times[rows]
        values, channels = events.values[rows], events.channels[rows]
        purchase = kinds == EventType.PURCHASE
        unsubscribe = kinds == EventType.UNSUBSCRIBED
        if purchase.any():
            totals = purchase_totals(keys[purchase], times[purchase], values[purchase])
            who = keys[purchase][totals.first].tolist()
            conn.executemany(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (customer_id) DO UPDATE SET"
                " purchases = purchases + excluded.purchases,"
                " purchase_value = purchase_value + excluded.purchase_value,"
                " first_order_value = CASE WHEN excluded.first_purchase_time"
                "   < first_purchase_time THEN excluded.first_order_value"
                "   ELSE first_order_value END,"
                " first_purchase_time = min(first_purchase_time, excluded.first_purchase_time),"
                " last_purchase_time = max(last_purchase_time, excluded.last_purchase_time)",
                zip(
                    [names[k] for k in who],
                    totals.first_time.tolist(),
                    totals.first_value.tolist(),
                    totals.count.tolist(),
                    totals.total.tolist(),
                    totals.last_time.tolist(),
                    strict=True,
                ),
            )
        for codes, table, column, state_of in (
            (_PERMISSION_CODES, "permissions", "state", PERMISSION_OF_EVENT),
            (_SUBSCRIPTION_CODES, "subscriptions", "unsubscribed", UNSUBSCRIBED_OF_EVENT),
        ):
            picked = np.flatnonzero(np.isin(kinds, codes))
            if not len(picked):
                continue
            latest = picked[
                latest_per_group(keys[picked] * n_channels + channels[picked], times[picked])
            ]
            conn.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?)"
                f" ON CONFLICT (customer_id, channel) DO UPDATE SET"
                f" {column} = excluded.{column}, time = excluded.time"
                f" WHERE excluded.time >= {table}.time",
                [
                    (
                        names[keys[j]],
                        channel_names[channels[j]],
                        int(state_of[int(kinds[j])]),
                        int(times[j]),
                    )
                    for j in latest.tolist()
                ],
            )
        attributable = purchase | unsubscribe
        if not attributable.any():
            return
        self._latest_attributable = max(self._latest_attributable, int(times[attributable].max()))
        customers = sorted({names[k] for k in keys[attributable].tolist()})
        seq, dec_key, start, end, dec_channel = self._open_decisions(
            conn,
            customers,
            index,
            max(int(times[attributable].min()), closed_before),
            int(times[attributable].max()),
        )
        if len(seq) == 0:
            return
        hits = attribute_batch(
            dec_key, start, end, dec_channel,
            keys, times, values, purchase, unsubscribe, channels, n_channels,
        )  # fmt: skip
        attributed[rows] = hits.per_event
        hit = np.flatnonzero((hits.purchases > 0) | (hits.unsubscribes > 0))
        conn.executemany(
            "UPDATE decisions SET attributed_value = attributed_value + ?,"
            " attributed_purchases = attributed_purchases + ?, unsubscribes = unsubscribes + ?"
            " WHERE seq = ?",
            zip(
                hits.value_sums[hit].tolist(),
                hits.purchases[hit].tolist(),
                hits.unsubscribes[hit].tolist(),
                seq[hit].tolist(),
                strict=True,
            ),
        )

    def _open_decisions(
        self,
        conn: sqlite3.Connection,
        customers: list[str],
        index: dict[str, int],
        earliest: int,
        latest: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Open decisions of the customers whose windows may hold a time in [earliest, latest]
        (their window ends after `earliest`): seq, customer key, start, end, channel index (-1
        for no contact)."""
        found: list[tuple[Any, ...]] = []
        for chunk in _chunks(customers, _CHUNK):
            marks = ",".join("?" * len(chunk))
            found += conn.execute(
                "SELECT seq, customer_id, time, window_end, channel FROM decisions"
                f" WHERE customer_id IN ({marks}) AND time <= ? AND status = 1"
                " AND window_end > ?",
                (*chunk, latest, earliest),
            ).fetchall()
        channel_index = self.catalog.channel_index
        return (
            np.array([r[0] for r in found], dtype=np.int64),
            np.array([index[r[1]] for r in found], dtype=np.int64),
            np.array([r[2] for r in found], dtype=np.int64),
            np.array([r[3] for r in found], dtype=np.int64),
            np.array([channel_index.get(r[4], -1) for r in found], dtype=np.int64),
        )

    def apply_outcome(self, outcome: Outcome, rule: RewardRule) -> OutcomeApplied:
        closed_before = self._watermark - rule.lateness_seconds
        with self._transaction(outcome.time) as conn:
            row = conn.execute(
                "SELECT status, reward, window_end, activation FROM decisions"
                " WHERE decision_id = ?",
                (outcome.decision_id,),
            ).fetchone()
            if row is None:
                raise UnknownDecision(outcome.decision_id)
            status, reward, window_end, activation = row
            seen = conn.execute(
                "SELECT 1 FROM outcomes WHERE decision_id = ? AND outcome_id = ?",
                (outcome.decision_id, outcome.outcome_id),
            ).fetchone()
            if seen is not None:
                return OutcomeApplied(True, status, reward, None)
            if status == STATUS_CLOSED or window_end <= closed_before:  # closed, or due
                raise OutcomeRejected.closed(outcome.decision_id, reward)
            if outcome.reward is not None and activation != ACTIVATION_ACTIVE:
                raise OutcomeRejected.inactive(outcome.decision_id, activation)
            conn.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)",
                (
                    outcome.decision_id,
                    outcome.outcome_id,
                    outcome.time,
                    outcome.reward,
                    outcome.value,
                ),
            )
            if outcome.value is not None:
                conn.execute(
                    "UPDATE decisions SET attributed_value = attributed_value + ?,"
                    " reported_values = reported_values + 1,"
                    " reported_value = reported_value + ? WHERE decision_id = ?",
                    (outcome.value, outcome.value, outcome.decision_id),
                )
                return OutcomeApplied(False, STATUS_OPEN, None, None)
            assert outcome.reward is not None
            close_seq = self._next_close_seq
            conn.execute(
                "UPDATE decisions SET status = 2, reward = ?, reward_source = 'reported',"
                " close_seq = ?, closed_time = ? WHERE decision_id = ?",
                (outcome.reward, close_seq, outcome.time, outcome.decision_id),
            )
            closed = self._closed(
                conn.execute(
                    f"SELECT {_CLOSED_COLUMNS} FROM decisions WHERE decision_id = ?",
                    (outcome.decision_id,),
                )
            )
        self._next_close_seq += 1
        return OutcomeApplied(False, STATUS_CLOSED, outcome.reward, closed)

    # -- closing and learning ---------------------------------------------------------------

    def close_due(
        self, watermark: int, rule: RewardRule, learners: frozenset[str], limit: int | None = None
    ) -> ClosedDecisions:
        self.observe(watermark)
        cutoff = self._watermark - rule.lateness_seconds
        if self._next_due is None or self._next_due > cutoff:
            return self._nothing_closed
        with self._transaction() as conn:
            due = conn.execute(
                # A value of the wrong type (a damaged row) reads as NULL, so the row closes
                # with no reward, is recorded unlearned, and closes no one else's windows less.
                f"SELECT seq, {_number('attributed_value')},"
                f" {_number('attributed_purchases')} + {_number('reported_values')},"
                f" {_number('cost')}, {_number('unsubscribes')}, activation"
                " FROM decisions WHERE status = 1 AND window_end <= ? ORDER BY window_end, seq"
                " LIMIT ?",
                (cutoff, -1 if limit is None else limit),
            ).fetchall()
            if not due:
                self._refresh_next_due()
                return self._nothing_closed
            arr = np.array(due, dtype=np.float64)
            rewards = rule.rewards(arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])
            # A decision not executed (taken back, or deferred and never delivered) closes
            # without a reward and is never learned from.
            executed = arr[:, 5] == ACTIVATION_ACTIVE
            close_seq = np.arange(self._next_close_seq, self._next_close_seq + len(due))
            rows = zip(
                rewards.tolist(),
                close_seq.tolist(),
                [int(r[0]) for r in due],
                executed.tolist(),
                strict=True,
            )
            window, skipped = [], []
            for reward, close, seq, ok in rows:
                if ok:
                    window.append((reward, close, self._watermark, seq))
                else:
                    skipped.append((close, self._watermark, self._watermark, seq))
            conn.executemany(
                "UPDATE decisions SET status = 2, reward = ?, reward_source = 'window',"
                " close_seq = ?, closed_time = ? WHERE seq = ?",
                window,
            )
            if skipped:
                conn.executemany(
                    "UPDATE decisions SET status = 2, reward = NULL,"
                    " reward_source = 'not_executed', close_seq = ?, closed_time = ?,"
                    f" activation = {ACTIVATION_NOT_EXECUTED},"
                    " not_executed_time = coalesce(not_executed_time, ?) WHERE seq = ?",
                    skipped,
                )
            arms = ",".join("?" * len(learners))
            closed = self._closed(
                conn.execute(
                    f"SELECT {_CLOSED_COLUMNS} FROM decisions WHERE close_seq >= ?"
                    f" AND close_seq < ? AND arm IN ({arms}) AND activation = 1"
                    " ORDER BY close_seq",
                    (int(close_seq[0]), int(close_seq[-1]) + 1, *sorted(learners)),
                )
                if learners
                else []
            )
            self._refresh_next_due()
        self._next_close_seq += len(due)
        return closed

    @_reads
    def closed_since(
        self, arm: str, after_close_seq: int, limit: int | None = None
    ) -> ClosedDecisions:
        return self._closed(
            self._conn.execute(
                f"SELECT {_CLOSED_COLUMNS} FROM decisions d"
                " WHERE close_seq > ? AND arm = ? AND activation = 1"
                " AND NOT EXISTS (SELECT 1 FROM unlearned u"
                " WHERE u.arm = d.arm AND u.close_seq = d.close_seq) ORDER BY close_seq LIMIT ?",
                (after_close_seq, arm, -1 if limit is None else limit),
            )
        )

    def mark_unlearned(self, arm: str, close_seqs: Sequence[int], reason: str) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO unlearned VALUES (?, ?, ?)",
                [(arm, int(c), reason) for c in close_seqs],
            )

    def _closed(self, rows: Iterable[Sequence[Any]]) -> ClosedDecisions:
        """Closed decisions as the policies learn them. A row that cannot be decoded (a catalog
        changed since, a damaged value) is kept with ``usable`` False: the engine records it as
        not learned instead of failing everything closed with it."""
        cat = self.catalog
        seqs, close_seqs, arms, choices, probs, rewards = [], [], [], [], [], []
        allowed_rows, usable = [], []
        feats: list[dict[str, Any]] = []
        for seq, close_seq, arm, features, eligible, action, probability, reward in rows:
            allowed = np.zeros(cat.n_actions, dtype=bool)
            record = _features_record(features)
            chosen = cat.index_of_key(action)
            try:
                for key in orjson.loads(eligible):
                    j = cat.index_of_key(key)
                    if j is not None:
                        allowed[j] = True
            except (orjson.JSONDecodeError, TypeError):
                record = None
            ok = record is not None and chosen is not None and bool(allowed[chosen])
            seqs.append(seq)
            close_seqs.append(close_seq)
            arms.append(arm)
            feats.append(record if ok and record is not None else {})
            allowed_rows.append(allowed)
            choices.append(chosen if ok else 0)
            probs.append(probability if isinstance(probability, float | int) else np.nan)
            rewards.append(reward if isinstance(reward, float | int) else np.nan)
            usable.append(ok)
        return ClosedDecisions(
            seq=np.array(seqs, dtype=np.int64),
            close_seq=np.array(close_seqs, dtype=np.int64),
            arm=arms,
            features=FeatureBatch.from_records(feats),
            allowed=np.array(allowed_rows, dtype=bool).reshape(len(seqs), cat.n_actions),
            chosen=np.array(choices, dtype=np.int64),
            probability=np.array(probs, dtype=np.float64),
            reward=np.array(rewards, dtype=np.float64),
            usable=np.array(usable, dtype=bool),
        )

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO checkpoints (arm, label, updates, close_seq, model) VALUES (?,?,?,?,?)",
                (
                    checkpoint.arm,
                    checkpoint.label,
                    checkpoint.updates,
                    checkpoint.close_seq,
                    checkpoint.model,
                ),
            )
            conn.execute(
                "DELETE FROM checkpoints WHERE arm = ? AND id NOT IN"
                " (SELECT id FROM checkpoints WHERE arm = ? ORDER BY id DESC LIMIT 3)",
                (checkpoint.arm, checkpoint.arm),
            )

    @_reads
    def load_checkpoint(self, arm: str) -> Checkpoint | None:
        row = self._conn.execute(
            "SELECT arm, label, updates, close_seq, model FROM checkpoints WHERE arm = ?"
            " ORDER BY id DESC LIMIT 1",
            (arm,),
        ).fetchone()
        return None if row is None else Checkpoint(row[0], row[1], row[2], row[3], bytes(row[4]))

    # -- export -----------------------------------------------------------------------------

    @_reads
    def decisions_frame(self) -> pd.DataFrame:
        columns = ", ".join(DECISION_COLUMNS)
        frame = pd.read_sql_query(f"SELECT {columns} FROM decisions ORDER BY seq", self._conn)
        return finish_decisions(frame)

    @_reads
    def events_frame(self) -> pd.DataFrame:
        frame = pd.read_sql_query(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY seq", self._conn
        )
        frame["event_id"] = frame["event_id"].fillna("")
        return finish_events(frame)


def _number(column: str) -> str:
    """SQL for a numeric column that reads as NULL unless it holds a number."""
    return f"CASE WHEN typeof({column}) IN ('integer', 'real') THEN {column} END"


def _features_record(text: str) -> dict[str, Any] | None:
    """A logged features object, or None unless every value has its kind (numbers for the
    numeric features, strings for the categorical ones; JSON writes a non-finite float as
    null)."""
    try:
        record = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not isinstance(record, dict):
        return None
    for name in NUMERIC_FEATURES:
        value = record.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, float | int):
            return None
    for name in CATEGORICAL_FEATURES:
        if not isinstance(record.get(name, ""), str):
            return None
    if any(value is None or isinstance(value, list | dict) for value in record.values()):
        return None
    return record


def _time_or_none(value: int | None) -> int:
    return NO_TIME if value is None else int(value)


def _none_or_time(value: int) -> int | None:
    return None if value == NO_TIME else value


def _chunks(items: list[_Item], size: int) -> Iterator[list[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["NO_TIME", "SQLiteStore"]
