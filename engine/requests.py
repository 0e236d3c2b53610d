"""Inputs of the decision core as columnar batches: decide requests, events, outcomes.

The gRPC layer converts protobuf messages into these (after validation); the simulator builds
them directly from its arrays. Times are epoch seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NO_OCCASION = -1


@dataclass
class DecideBatch:
    """n decide requests. Optional per-row columns may be None when no row sets them."""

    customer_ids: list[str]
    times: np.ndarray  # (n,) int64
    acquisition_channel: list[str] | None = None
    first_order_category: list[str] | None = None
    region: list[str] | None = None
    first_order_items: np.ndarray | None = None  # (n,) float64, NaN = unknown
    days_to_occasion: np.ndarray | None = None  # (n,) int64, NO_OCCASION = unknown
    extra_numeric: list[dict[str, float]] | None = None
    extra_categorical: list[dict[str, str]] | None = None
    candidates: np.ndarray | None = None  # (n, A) bool; None = every action
    request_ids: list[str] | None = None  # idempotency keys per customer, "" = none
    defer: np.ndarray | None = None  # (n,) bool: deferred activation; None = none deferred

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.int64)
        if len(self.customer_ids) != len(self.times):
            raise ValueError("customer_ids and times differ in length")

    def __len__(self) -> int:
        return len(self.customer_ids)

    def strings(self, column: list[str] | None) -> list[str]:
        return column if column is not None else [""] * len(self)

    def slice(self, start: int, stop: int) -> DecideBatch:
        return self.take(np.arange(start, min(stop, len(self))))

    def take(self, rows: np.ndarray) -> DecideBatch:
        """The requests at the given positions, in that order."""
        picked = rows.tolist()

        def cut(column: Any) -> Any:
            if column is None:
                return None
            return column[rows] if isinstance(column, np.ndarray) else [column[i] for i in picked]

        return DecideBatch(
            customer_ids=cut(self.customer_ids),
            times=self.times[rows],
            acquisition_channel=cut(self.acquisition_channel),
            first_order_category=cut(self.first_order_category),
            region=cut(self.region),
            first_order_items=cut(self.first_order_items),
            days_to_occasion=cut(self.days_to_occasion),
            extra_numeric=cut(self.extra_numeric),
            extra_categorical=cut(self.extra_categorical),
            candidates=cut(self.candidates),
            request_ids=cut(self.request_ids),
            defer=cut(self.defer),
        )

    def fingerprints(self) -> list[str]:
        """Per row, what a retry of the request must repeat: time, deferral, candidates."""
        defer = self.defer.tolist() if self.defer is not None else [False] * len(self)
        times = self.times.tolist()
        if self.candidates is None:
            masks = [""] * len(self)
        else:
            masks = [np.packbits(row).tobytes().hex() for row in self.candidates]
        return [f"{t}|{int(d)}|{m}" for t, d, m in zip(times, defer, masks, strict=True)]


class EventType(enum.IntEnum):
    """Customer events; values equal the protobuf EventType numbers."""

    PURCHASE = 1
    DELIVERED = 2
    OPENED = 3
    CLICKED = 4
    UNSUBSCRIBED = 5
    CONSENT_GRANTED = 6
    CONSENT_WITHDRAWN = 7
    RESUBSCRIBED = 8
    NOT_EXECUTED = 9


RESPONSE_EVENTS = frozenset({EventType.DELIVERED, EventType.OPENED, EventType.CLICKED})
# Events about one decision (decision_id required, checked against the decision).
DECISION_EVENTS = RESPONSE_EVENTS | {EventType.NOT_EXECUTED}
CHANNEL_EVENTS = frozenset(
    {
        EventType.UNSUBSCRIBED,
        EventType.CONSENT_GRANTED,
        EventType.CONSENT_WITHDRAWN,
        EventType.RESUBSCRIBED,
    }
)


@dataclass
class EventBatch:
    """n customer events, applied in order. `channel` is a catalog channel index or -1."""

    event_ids: list[str]  # "" = no deduplication
    customer_ids: list[str]
    times: np.ndarray  # (n,) int64
    types: np.ndarray  # (n,) int8, EventType values
    values: np.ndarray  # (n,) float64
    channels: np.ndarray  # (n,) int64
    decision_ids: list[str] = field(default_factory=list)  # "" = none; empty list = all none

    def __post_init__(self) -> None:
        n = len(self.customer_ids)
        self.times = np.asarray(self.times, dtype=np.int64)
        self.types = np.asarray(self.types, dtype=np.int8)
        self.values = np.asarray(self.values, dtype=np.float64)
        self.channels = np.asarray(self.channels, dtype=np.int64)
        if not self.decision_ids:
            self.decision_ids = [""] * n
        if not self.event_ids:
            self.event_ids = [""] * n
        lengths = {
            len(self.event_ids), n, len(self.times), len(self.types),
            len(self.values), len(self.channels), len(self.decision_ids),
        }  # fmt: skip
        if len(lengths) != 1:
            raise ValueError("event columns differ in length")
        needs_channel = np.isin(self.types, [int(t) for t in CHANNEL_EVENTS])
        if (self.channels[needs_channel] < 0).any():
            raise ValueError("unsubscribe and consent events need a channel")

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True)
class EventResult:
    duplicate: bool
    decisions_attributed: int


@dataclass(frozen=True)
class Outcome:
    """An outcome for one decision: a final `reward`, or a `value` attributed to it."""

    decision_id: str
    outcome_id: str
    time: int
    reward: float | None = None
    value: float | None = None
