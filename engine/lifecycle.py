"""Lifecycle days: which day after the first purchase a moment falls on, in the shop's time zone.

"Day N after the first purchase" (touchpoint windows, the first shipment, the chain, lifecycle
features) is counted one way everywhere: by default in calendar days of the shop's zone (day N =
local date of the moment minus local date of the first purchase, so a first purchase at 23:00
and a request at 08:00 the next morning is day 1), or in elapsed 24-hour periods
(``time.lifecycle_days = "elapsed"``).

Calendar days are vectorised: the zone's UTC offsets are built once per zone into a table of
(UTC second an offset starts, offset) from zoneinfo, and a batch of epoch seconds maps to local
day numbers with one ``np.searchsorted``, never a zoneinfo call per element.

>>> days = LifecycleDays("Europe/Berlin")
>>> first, morning = 1_772_488_800, 1_772_521_200  # 2026-03-02 23:00 and 03-03 08:00, Berlin
>>> days.days_after(np.array([first]), np.array([[morning]])).tolist()
[[1]]
>>> LifecycleDays("Europe/Berlin", "elapsed").days_after(
...     np.array([first]), np.array([[morning]])
... ).tolist()
[[0]]
"""

from __future__ import annotations

import functools
import itertools
import zoneinfo
from datetime import UTC, datetime

import numpy as np

from engine.timeutil import DAY, MAX_SECONDS

COUNTINGS = ("calendar", "elapsed")
_WEEK = 7 * DAY
# Until here zones have rules that change year by year (history, announced changes, Morocco's
# Ramadan transitions listed up to 2087): sampled daily. After it, zoneinfo applies each zone's
# fixed yearly rule (the TZif footer); such a rule repeats every 400 Gregorian years (146,097
# days, weekdays included), so one cycle is sampled (weekly: a yearly rule has two transitions
# months apart) and repeated up to the end of the Timestamp range.
_RULES_FROM = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
_CYCLE = 146_097 * DAY
_FIRST = np.iinfo(np.int64).min


class LifecycleDays:
    """Counts lifecycle days in a zone: "calendar" (local dates) or "elapsed" (24-hour periods)."""

    def __init__(self, zone: str = "Europe/Berlin", counting: str = "calendar") -> None:
        if counting not in COUNTINGS:
            raise ValueError(
                f"lifecycle days are counted {' or '.join(COUNTINGS)}, not {counting!r}"
            )
        self.zone = zone
        self.counting = counting
        starts, offsets = _offset_table(zone)
        self._starts = starts
        # searchsorted(starts, t, "right") is 1 + the index of the offset in force at t (>= 1:
        # starts[0] is the smallest int64), so a copy shifted by one is indexed without a -1.
        self._offset_after = np.concatenate([offsets[:1], offsets])

    def local_days(self, seconds: np.ndarray) -> np.ndarray:
        """Local calendar day numbers (days since 1970-01-01 in the zone) of epoch seconds."""
        # The array methods: np.searchsorted's dispatch costs more than the search itself
        # for a batch of one.
        return (
            seconds + self._offset_after.take(self._starts.searchsorted(seconds, "right"))
        ) // DAY

    def days_after(self, first: np.ndarray, moments: np.ndarray) -> np.ndarray:
        """(n, k) lifecycle days of `moments` (n, k) after the first purchases `first` (n,);
        negative when a moment lies on a day before the first purchase."""
        if self.counting == "elapsed":
            return (moments - first[:, None]) // DAY
        local = self.local_days(np.concatenate([first[:, None], moments], axis=1))
        return local[:, 1:] - local[:, :1]


@functools.cache
def _offset_table(zone: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, offsets): from UTC second starts[i] on, the zone is offsets[i] seconds ahead of
    UTC. starts[0] is the smallest int64; the table reaches 9999-12-31.

    Offsets are sampled from zoneinfo and every change is pinned to its second by bisection;
    a change undone within one sampling step (a day before 2100) would be missed, and no zone
    has one."""
    tz = zoneinfo.ZoneInfo(zone)

    def offset(second: int) -> int:
        delta = datetime.fromtimestamp(second, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    starts, offsets = [_FIRST], [offset(0)]
    before = 0  # a second known to have offsets[-1]
    samples = itertools.chain(
        range(DAY, _RULES_FROM, DAY), range(_RULES_FROM, _RULES_FROM + _CYCLE + 1, _WEEK)
    )
    for second in samples:
        now = offset(second)
        while now != offsets[-1]:  # one change or more in (before, second]
            low, high = before, second
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offsets[-1]:
                    low = middle
                else:
                    high = middle
            starts.append(high)
            offsets.append(offset(high))
            before = high
        before = second
    table_starts = np.array(starts, dtype=np.int64)
    table_offsets = np.array(offsets, dtype=np.int64)
    one_cycle = table_starts < _RULES_FROM + _CYCLE  # the repeats supply what comes after
    table_starts, table_offsets = table_starts[one_cycle], table_offsets[one_cycle]
    cycle = table_starts >= _RULES_FROM
    repeats = range(1, (MAX_SECONDS - _RULES_FROM) // _CYCLE + 1)
    return (
        np.concatenate([table_starts, *(table_starts[cycle] + k * _CYCLE for k in repeats)]),
        np.concatenate([table_offsets, *(table_offsets[cycle] for _ in repeats)]),
    )


__all__ = ["COUNTINGS", "LifecycleDays"]
