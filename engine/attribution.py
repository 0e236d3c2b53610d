"""Attribution of a batch of events to open decisions, and per-customer purchase totals.

Both stores call these, so their sums agree to the last bit, and both are vectorised: a batch of
P purchases for a customer with D open decisions costs O((P + D) log P) plus one addition per
(purchase, decision) pair in C, never a query or an update per pair. A purchase is attributed to
every open decision of its customer whose window ``[start, end)`` holds its time (see
engine/rewards.py); an unsubscribe to those on its channel.

Float sums are formed per decision over its events in (time, arrival) order and then added to
what the decision held (``old + sum``), whatever store keeps the number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SHIFT = 40  # composite key: group rank << 40 | time offset (offsets < 2**40 s, ~34,000 years)
_TIME_MAX = (1 << _SHIFT) - 1


@dataclass
class WindowHits:
    sums: np.ndarray  # (D,) float64: sum of the values attributed to each decision
    counts: np.ndarray  # (D,) int64: events attributed to each decision
    per_event: np.ndarray  # (E,) int64: decisions each event was attributed to


def window_hits(
    decision_group: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    event_group: np.ndarray,
    event_time: np.ndarray,
    event_value: np.ndarray | None = None,
) -> WindowHits:
    """Attribute events to decisions of the same group whose window holds the event's time.

    Groups are integers (e.g. a customer, or a customer and channel); each decision occurs once.

    >>> hits = window_hits(
    ...     np.array([7, 7, 8]), np.array([0, 5, 0]), np.array([10, 15, 10]),
    ...     np.array([7, 7, 8, 9]), np.array([6, 12, 3, 1]), np.array([1.0, 2.0, 4.0, 8.0]))
    >>> hits.sums.tolist(), hits.counts.tolist(), hits.per_event.tolist()
    ([1.0, 3.0, 4.0], [1, 2, 1], [2, 1, 1, 0])
    """
    n_dec, n_ev = len(decision_group), len(event_group)
    if n_dec == 0 or n_ev == 0:
        none = np.zeros(n_dec, dtype=np.int64)
        return WindowHits(np.zeros(n_dec), none, np.zeros(n_ev, dtype=np.int64))
    groups, rank = np.unique(np.concatenate([decision_group, event_group]), return_inverse=True)
    if len(groups) >= 1 << (63 - _SHIFT):
        raise ValueError("too many groups in one attribution batch")
    dec_rank, ev_rank = rank[:n_dec].astype(np.int64), rank[n_dec:].astype(np.int64)
    origin = int(min(event_time.min(), start.min()))

    def key(group_rank: np.ndarray, times: np.ndarray) -> np.ndarray:
        offset = np.clip(np.asarray(times, dtype=np.int64) - origin, 0, _TIME_MAX)
        return (group_rank << _SHIFT) | offset

    order = np.lexsort((np.arange(n_ev), event_time, ev_rank))  # group, time, arrival
    ev_key = key(ev_rank, event_time)[order]
    lo = np.searchsorted(ev_key, key(dec_rank, start), side="left")
    hi = np.searchsorted(ev_key, key(dec_rank, end), side="left")
    counts = np.maximum(hi - lo, 0).astype(np.int64)
    sums = np.zeros(n_dec)
    if event_value is not None:
        values = np.append(np.asarray(event_value, dtype=np.float64)[order], 0.0)
        bounds = np.empty(2 * n_dec, dtype=np.int64)
        bounds[0::2], bounds[1::2] = lo, np.maximum(hi, lo)
        segment = np.add.reduceat(values, bounds)[0::2]
        sums = np.where(counts > 0, segment, 0.0)
    starts = np.sort(key(dec_rank, start))
    ends = np.sort(key(dec_rank, end))
    inside = np.searchsorted(starts, ev_key, side="right") - np.searchsorted(
        ends, ev_key, side="right"
    )
    per_event = np.empty(n_ev, dtype=np.int64)
    per_event[order] = inside
    return WindowHits(sums, counts, per_event)


@dataclass
class BatchAttribution:
    """What a batch of events adds to open decisions, and to how many each event went."""

    value_sums: np.ndarray  # (D,) float64: purchase values attributed to each decision
    purchases: np.ndarray  # (D,) int64: purchases attributed to each decision
    unsubscribes: np.ndarray  # (D,) int64: unsubscribes from each decision's channel
    per_event: np.ndarray  # (E,) int64: decisions each event was attributed to


def attribute_batch(
    decision_customer: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    decision_channel: np.ndarray,
    event_customer: np.ndarray,
    event_time: np.ndarray,
    event_value: np.ndarray,
    purchase: np.ndarray,
    unsubscribe: np.ndarray,
    event_channel: np.ndarray,
    n_channels: int,
) -> BatchAttribution:
    """The attribution rule of both stores: a purchase goes to every open decision of its
    customer whose window holds its time, an unsubscribe to those on its channel (decisions
    with channel -1, "no contact", take none). Customers are integer keys."""
    values = window_hits(
        decision_customer,
        start,
        end,
        event_customer[purchase],
        event_time[purchase],
        event_value[purchase],
    )
    on_channel = decision_channel >= 0
    unsubs = window_hits(
        decision_customer[on_channel] * n_channels + decision_channel[on_channel],
        start[on_channel],
        end[on_channel],
        event_customer[unsubscribe] * n_channels + event_channel[unsubscribe],
        event_time[unsubscribe],
    )
    per_event = np.zeros(len(event_customer), dtype=np.int64)
    per_event[purchase] = values.per_event
    per_event[unsubscribe] = unsubs.per_event
    unsubscribes = np.zeros(len(decision_customer), dtype=np.int64)
    unsubscribes[on_channel] = unsubs.counts
    return BatchAttribution(values.sums, values.counts, unsubscribes, per_event)


@dataclass
class PurchaseTotals:
    """Per distinct customer of a batch of purchases, in order of first appearance."""

    first: np.ndarray  # (k,) position in the batch of each customer's first row
    first_time: np.ndarray  # (k,) earliest purchase time (the first to arrive on ties)
    first_value: np.ndarray  # (k,) its value
    count: np.ndarray  # (k,) purchases
    total: np.ndarray  # (k,) float64 sum of values in arrival order
    last_time: np.ndarray  # (k,) latest purchase time


def purchase_totals(customer: np.ndarray, times: np.ndarray, values: np.ndarray) -> PurchaseTotals:
    """Aggregate a batch of purchases per customer (`customer`: integer keys).

    >>> t = purchase_totals(np.array([3, 1, 3]), np.array([20, 5, 10]), np.array([1.0, 2.0, 4.0]))
    >>> t.first.tolist(), t.first_time.tolist(), t.first_value.tolist(), t.total.tolist()
    ([0, 1], [10, 5], [4.0, 2.0], [5.0, 2.0])
    """
    n = len(customer)
    arrival = np.arange(n)
    by_customer = np.lexsort((arrival, customer))  # stable: arrival order within a customer
    sorted_customer = customer[by_customer]
    starts = np.flatnonzero(np.r_[True, sorted_customer[1:] != sorted_customer[:-1]])
    total = np.add.reduceat(np.asarray(values, dtype=np.float64)[by_customer], starts)
    count = np.diff(np.r_[starts, n])
    last_time = np.maximum.reduceat(np.asarray(times, dtype=np.int64)[by_customer], starts)
    by_time = np.lexsort((arrival, times, customer))
    earliest = by_time[np.flatnonzero(np.r_[True, customer[by_time][1:] != customer[by_time][:-1]])]
    first = by_customer[starts]
    appearance = np.argsort(first, kind="stable")
    return PurchaseTotals(
        first=first[appearance],
        first_time=np.asarray(times, dtype=np.int64)[earliest][appearance],
        first_value=np.asarray(values, dtype=np.float64)[earliest][appearance],
        count=count[appearance].astype(np.int64),
        total=total[appearance],
        last_time=last_time[appearance],
    )


def latest_per_group(group: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Positions of the latest row per group (the last to arrive on ties), in group order:
    applying only these with "newer or equal time wins" equals applying every row in order.

    >>> latest_per_group(np.array([2, 1, 2, 2]), np.array([5, 1, 7, 7])).tolist()
    [1, 3]
    """
    order = np.lexsort((np.arange(len(group)), times, group))
    last = np.r_[group[order][1:] != group[order][:-1], True]
    return order[last]
