"""Event idempotency: an event id is scoped to its customer, and a repeated id must repeat its
event. Both stores call `deduplicate`; each keeps the content of the events it applied.

An event whose (customer_id, event_id) was applied before, or earlier in the same batch, is a
duplicate when its content (type, time, value, channel, decision id) is the same, and a
`Conflict` (gRPC ALREADY_EXISTS) when it differs: a retry is answered, a reused id is never
silently dropped. Another customer's event with the same id is a different event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from engine.errors import AnstossError, Conflict, shown
from engine.requests import EventBatch, EventResult, EventType

DUPLICATE = EventResult(duplicate=True, decisions_attributed=0)


class EventContent(NamedTuple):
    type: int
    time: int
    value: float
    channel: int  # catalog channel index, -1 for none
    decision_id: str


def content_of(events: EventBatch, i: int) -> EventContent:
    return EventContent(
        int(events.types[i]),
        int(events.times[i]),
        float(events.values[i]),
        int(events.channels[i]),
        events.decision_ids[i],
    )


Stored = EventContent | tuple[EventBatch, int]  # content, or where to read it (on a collision)


def deduplicate(
    events: EventBatch,
    stored: Mapping[tuple[str, str], Stored],
    results: list[EventResult | AnstossError | None],
) -> np.ndarray:
    """(n,) bool: the events to apply; duplicates and conflicts get their result in `results`.
    `stored` holds the events applied before by (customer, event id): their content, or the
    batch and row to read it from (read only when an id comes again)."""
    keep = np.array([r is None for r in results], dtype=bool)
    batch: dict[tuple[str, str], int] = {}
    customers = events.customer_ids
    for i, event_id in enumerate(events.event_ids):
        if not event_id or not keep[i]:
            continue
        key = (customers[i], event_id)
        first = batch.get(key)
        if first is not None:
            before = content_of(events, first)
        else:
            found = stored.get(key)
            if found is None:
                batch[key] = i
                continue
            before = found if isinstance(found, EventContent) else content_of(*found)
        keep[i] = False
        content = content_of(events, i)
        if before == content:
            results[i] = DUPLICATE
        else:
            results[i] = Conflict(
                "event_id",
                f"{shown(event_id)} was used for another event of this customer "
                f"({_differences(before, content)}); nothing was applied",
            )
    return keep


def _differences(before: EventContent, now: EventContent) -> str:
    names = {"type": lambda v: EventType(v).name}
    parts = []
    for field, old, new in zip(EventContent._fields, before, now, strict=True):
        if old != new:
            show = names.get(field, shown)
            parts.append(f"{field} {show(old)} then {show(new)}")
    return ", ".join(parts)
