"""The memory store: the store interface over numpy arrays, for the in-process simulator.

It keeps the exact semantics of `SQLiteStore` (same attribution, same close order, same float
arithmetic in the same order), vectorised over a batch: the simulator drives the very decision
core the server runs, at simulation speed. Nothing is durable; the decision log is kept in
compact columns and turned into the log schema only when asked (`decisions_frame`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from engine.activation import DecisionState, apply_decision_event
from engine.attribution import attribute_batch, latest_per_group, purchase_totals
from engine.catalog import Catalog
from engine.contact import Rule
from engine.decisions import (
    ACTIVATION_ACTIVE,
    ACTIVATION_NOT_EXECUTED,
    STATUS_CLOSED,
    STATUS_OPEN,
    ClosedDecisions,
    DecisionBatch,
    DecisionRecord,
    format_decision_id,
    occurrence_rounds,
)
from engine.errors import AnstossError, OutcomeRejected, UnknownDecision
from engine.eventkeys import deduplicate
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
from engine.store.columns import Columns, grow_cols, grow_rows
from engine.timeutil import DAY

_DECISION_EVENT_CODES = [int(t) for t in DECISION_EVENTS]
_ATTRIBUTABLE = [int(EventType.PURCHASE), int(EventType.UNSUBSCRIBED)]


class MemoryStore:
    """All state in arrays; `instance_id` makes decision ids reproducible (e.g. from a seed)."""

    def __init__(
        self, catalog: Catalog, instance_id: str = "mem", expected_decisions: int = 0
    ) -> None:
        self.catalog = catalog
        self.instance_id = instance_id
        n_channels = len(catalog.channels)
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._last_ids: list[str] | None = None
        self._last_index = np.zeros(0, dtype=np.int64)
        self._cust = Columns(
            {
                "known": (bool, (), False),
                "first_time": (np.int64, (), NO_TIME),
                "first_value": (np.float64, (), 0.0),
                "purchases": (np.int64, (), 0),
                "value": (np.float64, (), 0.0),
                "last_time": (np.int64, (), NO_TIME),
                "permission": (np.int8, (n_channels,), 0),
                "permission_time": (np.int64, (n_channels,), NO_TIME),
                "unsubscribed": (bool, (n_channels,), False),
                "unsubscribed_time": (np.int64, (n_channels,), NO_TIME),
            }
        )
        # Every contact (per customer: contact time, channel, touchpoint, decision; decision -1 =
        # a free slot, e.g. a contact taken back) and open decisions per customer; both widen
        # when a customer needs more slots. All contacts are kept, so a decision at any time,
        # however far behind event time, counts exactly what the SQLite store counts (a year of
        # contacts is a few dozen slots).
        self._ring_t = np.full((16, 4), NO_TIME, dtype=np.int64)
        self._ring_c = np.full((16, 4), -1, dtype=np.int64)
        self._ring_p = np.full((16, 4), -1, dtype=np.int64)
        self._ring_d = np.full((16, 4), -1, dtype=np.int64)
        self._open = np.full((16, 4), -1, dtype=np.int64)
        self._dec = Columns(
            {
                "customer": (np.int64, (), -1),
                "time": (np.int64, (), 0),
                "arm": (np.int64, (), 0),
                "version": (np.int64, (), 0),
                "action": (np.int64, (), 0),
                "probability": (np.float64, (), 0.0),
                "window_end": (np.int64, (), 0),
                "rule": (np.uint8, (catalog.n_actions,), 0),
                "numeric": (np.float64, (len(NUMERIC_FEATURES),), 0.0),
                "categorical": (object, (len(CATEGORICAL_FEATURES),), ""),
                "status": (np.int8, (), STATUS_OPEN),
                "attributed_value": (np.float64, (), 0.0),
                "attributed_purchases": (np.int64, (), 0),
                "unsubscribes": (np.int64, (), 0),
                "reward": (np.float64, (), np.nan),
                "reward_source": (object, (), ""),
                "close_seq": (np.int64, (), -1),
                "closed_time": (np.int64, (), NO_TIME),
                "deferred": (bool, (), False),
                "activation": (np.int8, (), ACTIVATION_ACTIVE),
                "contact_time": (np.int64, (), NO_TIME),
                "delivered_time": (np.int64, (), NO_TIME),
                "opened_time": (np.int64, (), NO_TIME),
                "clicked_time": (np.int64, (), NO_TIME),
                "not_executed_time": (np.int64, (), NO_TIME),
                "reported_values": (np.int64, (), 0),
                "reported_value": (np.float64, (), 0.0),
            }
        )
        self._dec.reserve(expected_decisions)  # growing copies every column: size it up front
        self._versions: list[str] = []  # distinct model versions
        self._version_of: dict[str, int] = {}
        self._eligible_probs: list[np.ndarray] = []  # per logged batch, eligible-ordered
        self._extras: dict[int, tuple[dict[str, float], dict[str, str]]] = {}
        self._context: LogContext | None = None
        self._events: list[tuple[EventBatch, np.ndarray]] = []  # applied rows per batch
        # (customer, event id) -> the batch and row of the event applied with it
        self._event_keys: dict[tuple[str, str], tuple[EventBatch, int]] = {}
        self._requests: dict[tuple[str, str], tuple[int, str]] = {}  # -> (seq, fingerprint)
        self._outcomes: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._unlearned: dict[tuple[str, int], str] = {}
        self._watermark = NO_TIME
        self._next_close = 1
        self._next_due: int | None = None  # earliest window end among open decisions
        self._latest_attributable = NO_TIME  # latest purchase or unsubscribe seen

    # -- customers --------------------------------------------------------------------------

    def _index(self, customer_ids: list[str], create: bool) -> np.ndarray:
        # The core loads states, then logs decisions for the same list: look it up once.
        if customer_ids is self._last_ids and (not create or (self._last_index >= 0).all()):
            return self._last_index
        ids = self._ids
        get = ids.get
        out = np.array([get(c, -1) for c in customer_ids], dtype=np.int64)
        if create and (out < 0).any():
            for pos in np.flatnonzero(out < 0).tolist():
                cid = customer_ids[pos]
                if cid not in ids:
                    ids[cid] = len(self._names)
                    self._names.append(cid)
                out[pos] = ids[cid]
            grow = len(self._names) - self._cust.n
            self._cust.append(known=np.zeros(grow, dtype=bool))
            if len(self._ring_t) < self._cust.n:
                size = max(self._cust.n, 2 * len(self._ring_t))
                self._ring_t = grow_rows(self._ring_t, size, NO_TIME)
                self._ring_c = grow_rows(self._ring_c, size, -1)
                self._ring_p = grow_rows(self._ring_p, size, -1)
                self._ring_d = grow_rows(self._ring_d, size, -1)
                self._open = grow_rows(self._open, size, -1)
        self._last_ids, self._last_index = customer_ids, out
        return out

    @property
    def watermark(self) -> int:
        return self._watermark

    def has_due(self, rule: RewardRule) -> bool:
        return (
            self._next_due is not None and self._next_due <= self._watermark - rule.lateness_seconds
        )

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Nothing is durable here; the block only mirrors SQLiteStore.atomic."""
        yield

    def observe(self, time: int) -> None:
        self._watermark = max(self._watermark, time)

    def mark_unlearned(self, arm: str, close_seqs: Sequence[int], reason: str) -> None:
        for close_seq in close_seqs:
            self._unlearned.setdefault((arm, int(close_seq)), reason)

    def load_states(self, customer_ids: list[str], times: np.ndarray) -> CustomerStates:
        cat = self.catalog
        st = CustomerStates.empty(customer_ids, times, len(cat.channels), len(cat.touchpoints))
        idx = self._index(customer_ids, create=False)
        rows = np.flatnonzero(idx >= 0)
        if len(rows) == 0:
            return st
        c = idx[rows]
        cust = self._cust
        st.known[rows] = cust["known"][c]
        st.first_purchase_time[rows] = cust["first_time"][c]
        st.first_order_value[rows] = cust["first_value"][c]
        st.purchases[rows] = cust["purchases"][c]
        st.purchase_value[rows] = cust["value"][c]
        st.last_purchase_time[rows] = cust["last_time"][c]
        st.permission[rows] = cust["permission"][c]
        st.unsubscribed[rows] = cust["unsubscribed"][c]
        ring_t, ring_c, ring_p = self._ring_t[c], self._ring_c[c], self._ring_p[c]
        t = st.times[rows][:, None]
        past = (self._ring_d[c] >= 0) & (ring_t <= t)
        in7 = past & (ring_t > t - 7 * DAY)
        in30 = past & (ring_t > t - 30 * DAY)
        # Per (row, channel) and (row, touchpoint) cells of the flattened rings.
        m, n_ch, n_tp = len(rows), len(cat.channels), len(cat.touchpoints)
        row = np.arange(m)[:, None]
        by_channel, by_touchpoint = row * n_ch + ring_c, row * n_tp + ring_p
        st.contacts_7d[rows] = np.bincount(by_channel[in7], minlength=m * n_ch).reshape(m, n_ch)
        st.contacts_30d[rows] = np.bincount(by_channel[in30], minlength=m * n_ch).reshape(m, n_ch)
        last = np.full(m * n_ch, NO_TIME, dtype=np.int64)
        np.maximum.at(last, by_channel[in30], ring_t[in30])
        st.last_contact_time[rows] = last.reshape(m, n_ch)
        st.touchpoint_sent[rows] = np.bincount(by_touchpoint[past], minlength=m * n_tp).reshape(
            m, n_tp
        )
        last = np.full(m * n_tp, NO_TIME, dtype=np.int64)
        np.maximum.at(last, by_touchpoint[past], ring_t[past])
        st.last_touchpoint_time[rows] = last.reshape(m, n_tp)
        return st

    # -- decisions --------------------------------------------------------------------------

    def log_decisions(self, batch: DecisionBatch, context: LogContext) -> None:
        self._context = context
        n = len(batch)
        cust = self._index(batch.customer_ids, create=True)
        vid = np.empty(n, dtype=np.int64)
        for version in set(batch.model_version):
            if version not in self._version_of:
                self._version_of[version] = len(self._versions)
                self._versions.append(version)
        for i, version in enumerate(batch.model_version):
            vid[i] = self._version_of[version]
        activation = batch.activation()
        active_contact = (batch.chosen != 0) & (activation == ACTIVATION_ACTIVE)
        index = self._dec.append(
            customer=cust,
            time=batch.times,
            arm=batch.arm,
            version=vid,
            action=batch.chosen,
            probability=batch.probability,
            window_end=batch.window_end,
            rule=batch.rule,
            numeric=batch.features.numeric,
            categorical=batch.features.categorical,
            deferred=batch.deferred_rows(),
            activation=activation,
            contact_time=np.where(active_contact, batch.times, NO_TIME),
        )
        if batch.request_ids is not None:
            fingerprints = batch.fingerprints or [""] * n
            for i, request_id in enumerate(batch.request_ids):
                if request_id:
                    key = (batch.customer_ids[i], request_id)
                    self._requests[key] = (int(index[i]) + 1, fingerprints[i])
        self._eligible_probs.append(batch.probabilities[batch.rule == 0])
        f = batch.features
        if f.extra_numeric is not None or f.extra_categorical is not None:
            for i, seq in enumerate(index.tolist()):
                numeric = f.extra_numeric[i] if f.extra_numeric is not None else {}
                categorical = f.extra_categorical[i] if f.extra_categorical is not None else {}
                if numeric or categorical:
                    self._extras[seq] = (numeric, categorical)
        batch.seq = index + 1
        batch.id_prefix = self.instance_id
        self._add_open(cust, index)
        if n and int(batch.times.min()) <= self._latest_attributable:
            self._attribute_earlier_events(index)
        if n:
            earliest = int(batch.window_end.min())
            self._next_due = earliest if self._next_due is None else min(self._next_due, earliest)
        contact = np.flatnonzero(active_contact)
        if len(contact):
            self._add_contacts(cust[contact], batch.times[contact], index[contact])

    def _attribute_earlier_events(self, decisions: np.ndarray) -> None:
        """Purchases and unsubscribes that arrived before their decision (see SQLiteStore)."""
        d = self._dec
        kept = [(b, rows) for b, rows in self._events]
        customer = [b.customer_ids[i] for b, rows in kept for i in rows.tolist()]
        time = np.concatenate([b.times[rows] for b, rows in kept])
        kind = np.concatenate([b.types[rows] for b, rows in kept])
        value = np.concatenate([b.values[rows] for b, rows in kept])
        channel = np.concatenate([b.channels[rows] for b, rows in kept])
        matches = []
        for i in decisions.tolist():
            who = self._names[int(d["customer"][i])]
            start, end = int(d["time"][i]), int(d["window_end"][i])
            action_channel = int(self.catalog.action_channel[d["action"][i]])
            for e in range(len(customer)):  # rare path: decisions logged after later events
                if customer[e] == who and start <= time[e] < end and kind[e] in _ATTRIBUTABLE:
                    same = action_channel >= 0 and int(channel[e]) == action_channel
                    matches.append((i + 1, int(kind[e]), float(value[e]), same))
        for seq, total, purchases, unsubscribes in earlier_attribution(matches):
            d["attributed_value"][seq - 1] = total
            d["attributed_purchases"][seq - 1] = purchases
            d["unsubscribes"][seq - 1] = unsubscribes

    def _add_open(self, cust: np.ndarray, decisions: np.ndarray) -> None:
        for rows in occurrence_rounds(cust):
            c = cust[rows]
            free = self._open[c] < 0
            if not free.any(axis=1).all():
                self._open = grow_cols(self._open, -1)
                free = self._open[c] < 0
            self._open[c, free.argmax(axis=1)] = decisions[rows]

    def find_requests(
        self, customer_ids: Sequence[str], request_ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        found = {}
        for key in zip(customer_ids, request_ids, strict=True):
            hit = self._requests.get(key)
            if hit is not None:
                found[key] = (format_decision_id(self.instance_id, hit[0]), hit[1])
        return found

    def _add_contacts(self, cust: np.ndarray, times: np.ndarray, decisions: np.ndarray) -> None:
        """Put contacts (decision indices, counting from `times`) into the customers' rings."""
        cat = self.catalog
        actions = self._dec["action"][decisions]
        channel = cat.action_channel[actions]
        touchpoint = cat.action_touchpoint[actions]
        for rows in occurrence_rounds(cust):
            c = cust[rows]
            free = self._ring_d[c] < 0  # widen when a customer has no free slot
            if not free.any(axis=1).all():
                self._ring_t = grow_cols(self._ring_t, NO_TIME)
                self._ring_c = grow_cols(self._ring_c, -1)
                self._ring_p = grow_cols(self._ring_p, -1)
                self._ring_d = grow_cols(self._ring_d, -1)
                free = self._ring_d[c] < 0
            slot = free.argmax(axis=1)
            self._ring_t[c, slot] = times[rows]
            self._ring_c[c, slot] = channel[rows]
            self._ring_p[c, slot] = touchpoint[rows]
            self._ring_d[c, slot] = decisions[rows]

    def _remove_contact(self, decision: int) -> None:
        c = int(self._dec["customer"][decision])
        slots = np.flatnonzero(self._ring_d[c] == decision)
        self._ring_d[c, slots] = -1
        self._ring_t[c, slots] = NO_TIME

    def _seq_of(self, decision_id: str) -> int | None:
        prefix, _, number = decision_id.rpartition("-")
        if prefix != self.instance_id or not number.isascii() or not number.isdigit():
            return None
        seq = int(number)
        if not 1 <= seq <= self._dec.n or format_decision_id(prefix, seq) != decision_id:
            return None  # only the exact id the store handed out
        return seq

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        seq = self._seq_of(decision_id)
        if seq is None:
            return None
        frame = self._frame(np.array([seq - 1]))
        row = frame.iloc[0]
        return DecisionRecord(
            decision_id=decision_id,
            seq=seq,
            customer_id=row["customer_id"],
            time=int(row["time"]),
            experiment=row["experiment"],
            arm=row["arm"],
            policy=row["policy"],
            model_version=row["model_version"],
            features=json.loads(row["features"]),
            eligible=tuple(json.loads(row["eligible"])),
            probabilities=tuple(json.loads(row["probabilities"])),
            removed=tuple((k, int(v)) for k, v in json.loads(row["removed"])),
            action=row["action"],
            probability=float(row["probability"]),
            cost=float(row["cost"]),
            window_end=int(row["window_end"]),
            status=int(row["status"]),
            attributed_value=float(row["attributed_value"]),
            attributed_purchases=int(row["attributed_purchases"]),
            unsubscribes=int(row["unsubscribes"]),
            reward=None if np.isnan(row["reward"]) else float(row["reward"]),
            close_seq=None if row["close_seq"] < 0 else int(row["close_seq"]),
            closed_time=None if row["close_seq"] < 0 else int(row["closed_time"]),
            unlearned=self._unlearned.get((row["arm"], int(row["close_seq"]))),
            request_id=row["request_id"],
            deferred=bool(row["deferred"]),
            activation=int(row["activation"]),
            delivered_time=_time(row["delivered_time"]),
            opened_time=_time(row["opened_time"]),
            clicked_time=_time(row["clicked_time"]),
            not_executed_time=_time(row["not_executed_time"]),
            reported_values=int(row["reported_values"]),
            reported_value=float(row["reported_value"]),
        )

    # -- events and outcomes ----------------------------------------------------------------

    def apply_events(
        self, events: EventBatch, rule: RewardRule
    ) -> list[EventResult | AnstossError]:
        n = len(events)
        closed_before = self._watermark - rule.lateness_seconds
        results: list[EventResult | AnstossError | None] = [None] * n
        keep = deduplicate(events, self._event_keys, results)
        about = np.flatnonzero(keep & np.isin(events.types, _DECISION_EVENT_CODES))
        if len(about):
            self._decision_events(events, about, results, keep, closed_before)
        rows = np.flatnonzero(keep)
        keys, ids = self._event_keys, events.event_ids
        for i in rows.tolist():
            if ids[i]:
                keys[events.customer_ids[i], ids[i]] = (events, i)
        attributed = np.zeros(n, dtype=np.int64)
        if len(rows):
            self._apply(events, rows, attributed, closed_before)
            self._events.append((events, rows))
        if n:
            self.observe(int(events.times.max()))  # as SQLite's transaction carries it
        fresh = EventResult(False, 0)
        return [
            r if r is not None else (EventResult(False, a) if a else fresh)
            for r, a in zip(results, attributed.tolist(), strict=True)
        ]

    def _decision_events(
        self,
        events: EventBatch,
        about: np.ndarray,
        results: list[EventResult | AnstossError | None],
        keep: np.ndarray,
        closed_before: int,
    ) -> None:
        """Events about one decision, checked and applied in order (engine/activation.py)."""
        d = self._dec
        states: dict[int, DecisionState] = {}
        times = events.times.tolist()
        for i in about.tolist():
            seq = self._seq_of(events.decision_ids[i])
            if seq is None:
                results[i] = UnknownDecision(events.decision_ids[i])
                keep[i] = False
                continue
            j = seq - 1
            state = states.get(j)
            if state is None:
                state = states[j] = DecisionState(
                    decision_id=events.decision_ids[i],
                    customer_id=self._names[int(d["customer"][j])],
                    time=int(d["time"][j]),
                    contacts=bool(d["action"][j] != 0),
                    deferred=bool(d["deferred"][j]),
                    activation=int(d["activation"][j]),
                    closed=bool(
                        d["status"][j] == STATUS_CLOSED or d["window_end"][j] <= closed_before
                    ),
                    contact_time=int(d["contact_time"][j]),
                    delivered_time=int(d["delivered_time"][j]),
                    opened_time=int(d["opened_time"][j]),
                    clicked_time=int(d["clicked_time"][j]),
                    not_executed_time=int(d["not_executed_time"][j]),
                )
            error = apply_decision_event(
                state, int(events.types[i]), events.customer_ids[i], times[i]
            )
            if error is not None:
                results[i] = error
                keep[i] = False
        for j, state in states.items():
            if not state.changed:
                continue
            before = int(d["contact_time"][j])
            d["activation"][j] = state.activation
            for name in ("contact_time", "delivered_time", "opened_time", "clicked_time",
                         "not_executed_time"):  # fmt: skip
                d[name][j] = getattr(state, name)
            if state.contact_time != before:
                if before != NO_TIME:
                    self._remove_contact(j)
                if state.contact_time != NO_TIME:
                    one = np.array([j])
                    self._add_contacts(d["customer"][one], np.array([state.contact_time]), one)

    def _apply(
        self, events: EventBatch, rows: np.ndarray, attributed: np.ndarray, closed_before: int
    ) -> None:
        """Customer totals, permissions and attribution, with SQLiteStore's arithmetic (the
        shared engine/attribution.py)."""
        cust = self._index([events.customer_ids[i] for i in rows.tolist()], create=True)
        kinds, times = events.types[rows], events.times[rows]
        values, channels = events.values[rows], events.channels[rows]
        n_channels = len(self.catalog.channels)
        purchase = kinds == EventType.PURCHASE
        unsubscribe = kinds == EventType.UNSUBSCRIBED
        if purchase.any():
            self._purchases(cust[purchase], times[purchase], values[purchase])
        for column, state_of in (
            ("permission", PERMISSION_OF_EVENT),
            ("unsubscribed", UNSUBSCRIBED_OF_EVENT),
        ):
            picked = np.flatnonzero(np.isin(kinds, list(state_of)))
            if not len(picked):
                continue
            latest = picked[
                latest_per_group(cust[picked] * n_channels + channels[picked], times[picked])
            ]
            c, ch, t = cust[latest], channels[latest], times[latest]
            newer = t >= self._cust[f"{column}_time"][c, ch]
            states = np.array([state_of[int(k)] for k in kinds[latest]])
            self._cust[column][c[newer], ch[newer]] = states[newer]
            self._cust[f"{column}_time"][c[newer], ch[newer]] = t[newer]
        attributable = purchase | unsubscribe
        if not attributable.any():
            return
        self._latest_attributable = max(self._latest_attributable, int(times[attributable].max()))
        who = np.unique(cust[attributable])
        slots = self._open[who]
        valid = slots >= 0
        d = self._dec
        valid[valid] = d["window_end"][slots[valid]] > closed_before  # due counts as closed
        dec = slots[valid]
        if len(dec) == 0:
            return
        dec_cust = np.repeat(who, valid.sum(axis=1))
        hits = attribute_batch(
            dec_cust, d["time"][dec], d["window_end"][dec],
            self.catalog.action_channel[d["action"][dec]],
            cust, times, values, purchase, unsubscribe, channels, n_channels,
        )  # fmt: skip
        attributed[rows] = hits.per_event
        hit = hits.purchases > 0
        d["attributed_value"][dec[hit]] += hits.value_sums[hit]
        d["attributed_purchases"][dec[hit]] += hits.purchases[hit]
        d["unsubscribes"][dec] += hits.unsubscribes

    def _purchases(self, cust: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        c = self._cust
        totals = purchase_totals(cust, times, values)
        fc = cust[totals.first]
        replace = ~c["known"][fc] | (totals.first_time < c["first_time"][fc])
        c["first_value"][fc[replace]] = totals.first_value[replace]
        c["first_time"][fc[replace]] = totals.first_time[replace]
        c["known"][fc] = True
        c["purchases"][fc] += totals.count
        c["value"][fc] += totals.total
        c["last_time"][fc] = np.maximum(c["last_time"][fc], totals.last_time)

    def apply_outcome(self, outcome: Outcome, rule: RewardRule) -> OutcomeApplied:
        applied = self._apply_outcome(outcome, rule)
        self.observe(outcome.time)  # only when it was applied, as in SQLiteStore
        return applied

    def _apply_outcome(self, outcome: Outcome, rule: RewardRule) -> OutcomeApplied:
        seq = self._seq_of(outcome.decision_id)
        if seq is None:
            raise UnknownDecision(outcome.decision_id)
        i = seq - 1
        d = self._dec
        status = int(d["status"][i])
        reward = None if d["close_seq"][i] < 0 else float(d["reward"][i])
        key = (outcome.decision_id, outcome.outcome_id)
        if key in self._outcomes:
            return OutcomeApplied(True, status, reward, None)
        if status == STATUS_CLOSED or d["window_end"][i] <= self._watermark - rule.lateness_seconds:
            raise OutcomeRejected.closed(outcome.decision_id, reward)
        if outcome.reward is not None and d["activation"][i] != ACTIVATION_ACTIVE:
            raise OutcomeRejected.inactive(outcome.decision_id, int(d["activation"][i]))
        self._outcomes[key] = (outcome.reward, outcome.value)
        if outcome.value is not None:
            d["attributed_value"][i] += outcome.value
            d["reported_values"][i] += 1
            d["reported_value"][i] += outcome.value
            return OutcomeApplied(False, STATUS_OPEN, None, None)
        assert outcome.reward is not None
        index = np.array([i])
        self._close(index, np.array([outcome.reward]), outcome.time, "reported")
        return OutcomeApplied(False, STATUS_CLOSED, outcome.reward, self._closed(index))

    # -- closing ----------------------------------------------------------------------------

    def close_due(
        self, watermark: int, rule: RewardRule, learners: frozenset[str], limit: int | None = None
    ) -> ClosedDecisions:
        self.observe(watermark)
        cutoff = self._watermark - rule.lateness_seconds
        if self._next_due is None or self._next_due > cutoff:
            return self._closed(np.zeros(0, dtype=np.int64))
        slots = self._open[: len(self._names)]
        candidates = slots[slots >= 0]
        d = self._dec
        ends = d["window_end"][candidates]
        due = candidates[ends <= cutoff]
        due = due[np.lexsort((due, d["window_end"][due]))]
        if limit is not None and len(due) > limit:
            due = due[:limit]
            self._next_due = int(d["window_end"][due[-1]])  # more are due
        else:
            remaining = ends[ends > cutoff]
            self._next_due = int(remaining.min()) if len(remaining) else None
        if len(due) == 0:
            return self._closed(due)
        cost = self.catalog.action_cost[d["action"][due]]
        rewards = rule.rewards(
            d["attributed_value"][due],
            d["attributed_purchases"][due] + d["reported_values"][due],
            cost,
            d["unsubscribes"][due],
        )
        executed = d["activation"][due] == ACTIVATION_ACTIVE
        self._close(due[executed], rewards[executed], self._watermark, "window")
        if not executed.all():  # taken back, or deferred and never delivered: no reward
            skipped = due[~executed]
            self._close(skipped, np.full(len(skipped), np.nan), self._watermark, "not_executed")
            d["activation"][skipped] = ACTIVATION_NOT_EXECUTED
            unset = skipped[d["not_executed_time"][skipped] == NO_TIME]
            d["not_executed_time"][unset] = self._watermark
            # close_seq follows (window end, seq) order in both stores
            order = np.lexsort((due, d["window_end"][due]))
            d["close_seq"][due[order]] = np.sort(d["close_seq"][due])
        names = self._context.arm_names if self._context else ()
        learning = [i for i, name in enumerate(names) if name in learners]
        due = due[executed]
        return self._closed(due[np.isin(d["arm"][due], learning)])

    def _close(self, index: np.ndarray, rewards: np.ndarray, when: int, source: str) -> None:
        d = self._dec
        d["status"][index] = STATUS_CLOSED
        d["reward"][index] = rewards
        d["reward_source"][index] = source
        d["close_seq"][index] = np.arange(self._next_close, self._next_close + len(index))
        d["closed_time"][index] = when
        self._next_close += len(index)
        cust = d["customer"][index]
        open_ = self._open
        hit = open_[cust] == index[:, None]
        rows, cols = np.nonzero(hit)
        open_[cust[rows], cols] = -1

    def _closed(self, index: np.ndarray) -> ClosedDecisions:
        d = self._dec
        names = self._context.arm_names if self._context else ()
        extra_num, extra_cat = None, None
        if self._extras:
            extra_num = [self._extras.get(int(i), ({}, {}))[0] for i in index]
            extra_cat = [self._extras.get(int(i), ({}, {}))[1] for i in index]
        return ClosedDecisions(
            seq=index + 1,
            close_seq=d["close_seq"][index],
            arm=[names[a] for a in d["arm"][index].tolist()],
            features=FeatureBatch(
                d["numeric"][index], d["categorical"][index], extra_num, extra_cat
            ),
            allowed=d["rule"][index] == Rule.NONE,
            chosen=d["action"][index],
            probability=d["probability"][index],
            reward=d["reward"][index],
        )

    def closed_since(
        self, arm: str, after_close_seq: int, limit: int | None = None
    ) -> ClosedDecisions:
        d = self._dec
        names = self._context.arm_names if self._context else ()
        if arm not in names:
            return self._closed(np.zeros(0, dtype=np.int64))
        n = self._dec.n
        seqs = d["close_seq"][:n]
        index = np.flatnonzero(
            (seqs > after_close_seq)
            & (d["arm"][:n] == names.index(arm))
            & (d["activation"][:n] == ACTIVATION_ACTIVE)
        )
        if self._unlearned:
            keep = [(arm, int(c)) not in self._unlearned for c in seqs[index].tolist()]
            index = index[np.array(keep, dtype=bool)]
        return self._closed(index[np.argsort(seqs[index], kind="stable")][:limit])

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._checkpoints[checkpoint.arm] = checkpoint

    def load_checkpoint(self, arm: str) -> Checkpoint | None:
        return self._checkpoints.get(arm)

    # -- export -----------------------------------------------------------------------------

    def _frame(self, index: np.ndarray) -> pd.DataFrame:
        """Raw decision rows (times in seconds) for the given row indices."""
        cat = self.catalog
        d = self._dec
        ctx = self._context or LogContext("", (), ())
        keys = np.array(cat.action_keys, dtype=object)
        probs = np.concatenate(self._eligible_probs) if self._eligible_probs else np.zeros(0)
        rule = d["rule"][: d.n]
        offsets = np.r_[0, np.cumsum((rule == 0).sum(axis=1))]
        dumps = to_json
        requests = {seq: request for (_, request), (seq, _) in self._requests.items()}
        rows = []
        for i in index.tolist():
            r = rule[i]
            eligible = np.flatnonzero(r == 0)
            removed = np.flatnonzero((r != 0) & (r != Rule.NOT_CANDIDATE))
            numeric, categorical = self._extras.get(i, ({}, {}))
            record = FeatureBatch(
                d["numeric"][i : i + 1], d["categorical"][i : i + 1], [numeric], [categorical]
            ).record(0)
            action = int(d["action"][i])
            arm = int(d["arm"][i])
            rows.append(
                {
                    "decision_id": format_decision_id(self.instance_id, i + 1),
                    "seq": i + 1,
                    "time": int(d["time"][i]),
                    "customer_id": self._names[int(d["customer"][i])],
                    "experiment": ctx.experiment,
                    "arm": ctx.arm_names[arm] if ctx.arm_names else "",
                    "policy": ctx.arm_policies[arm] if ctx.arm_policies else "",
                    "model_version": self._versions[int(d["version"][i])],
                    "action": keys[action],
                    "touchpoint": cat.actions[action].touchpoint,
                    "channel": cat.actions[action].channel,
                    "probability": float(d["probability"][i]),
                    "cost": float(cat.action_cost[action]),
                    "features": dumps(record),
                    "eligible": dumps(keys[eligible].tolist()),
                    "probabilities": dumps(probs[offsets[i] : offsets[i + 1]].tolist()),
                    "removed": dumps([[keys[j], int(r[j])] for j in removed]),
                    "window_end": int(d["window_end"][i]),
                    "status": int(d["status"][i]),
                    "attributed_value": float(d["attributed_value"][i]),
                    "attributed_purchases": int(d["attributed_purchases"][i]),
                    "unsubscribes": int(d["unsubscribes"][i]),
                    "reward": float(d["reward"][i]),
                    "reward_source": d["reward_source"][i] or None,
                    "close_seq": int(d["close_seq"][i]),
                    "closed_time": int(d["closed_time"][i]),
                    "request_id": requests.get(i + 1, ""),
                    "deferred": bool(d["deferred"][i]),
                    "activation": int(d["activation"][i]),
                    "delivered_time": int(d["delivered_time"][i]),
                    "opened_time": int(d["opened_time"][i]),
                    "clicked_time": int(d["clicked_time"][i]),
                    "not_executed_time": int(d["not_executed_time"][i]),
                    "reported_values": int(d["reported_values"][i]),
                    "reported_value": float(d["reported_value"][i]),
                }
            )
        return pd.DataFrame(rows)

    def decisions_frame(self) -> pd.DataFrame:
        frame = self._frame(np.arange(self._dec.n))
        if frame.empty:
            frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in DECISION_COLUMNS})
        frame.loc[frame["close_seq"] < 0, "close_seq"] = np.nan
        return finish_decisions(frame)

    def events_frame(self) -> pd.DataFrame:
        names = np.array([c.name for c in self.catalog.channels] + [""], dtype=object)
        parts = [
            pd.DataFrame(
                {
                    "event_id": [b.event_ids[i] for i in rows.tolist()],
                    "customer_id": [b.customer_ids[i] for i in rows.tolist()],
                    "time": b.times[rows],
                    "type": b.types[rows].astype(np.int64),
                    "value": b.values[rows],
                    "channel": names[b.channels[rows]],
                    "decision_id": [b.decision_ids[i] for i in rows.tolist()],
                }
            )
            for b, rows in self._events
        ]
        columns = [c for c in EVENT_COLUMNS if c != "seq"]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        frame.insert(0, "seq", np.arange(1, len(frame) + 1))
        return finish_events(frame)

    def close(self) -> None:
        pass


def _time(value: int) -> int | None:
    return None if value == NO_TIME else int(value)
