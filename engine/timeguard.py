"""Which request times the engine trusts: the guard that keeps event time from being walked or
wedged.

Event time (the latest time any request carried) closes attribution windows, so a time from the
future would close every open window at once with the no-purchase reward, and a time from before
any customer relationship (an unset Timestamp reads as 1970) is a client bug, not history. The
guard refuses both, naming the field:

- every mode: a valid Timestamp (nanos in 0..999,999,999), not before ``time.earliest``, and
  early enough that the attribution window (plus the allowed lateness) still ends inside the
  Timestamp range (9999-12-31);
- ``live`` (the default): at most ``time.max_ahead_seconds`` after the server's wall clock. Past
  times are fine (late deliveries, a backfill of yesterday); a pause in traffic of any length is
  fine too, because the bound is the clock, not the last request.
- ``replay``: no bound against the clock, for simulations through gRPC and imports of history.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

from engine.config import TimeConfig
from engine.errors import InvalidRequest
from engine.timeutil import MAX_SECONDS, iso

MAX_NANOS = 999_999_999


class TimeGuard:
    def __init__(
        self,
        config: TimeConfig,
        horizon_seconds: int,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        """`horizon_seconds`: how far after a decision its window closes (window + lateness)."""
        self.config = config
        self.clock = clock
        self.latest = MAX_SECONDS - horizon_seconds
        self.live = config.mode == "live"

    def check(self, seconds: int, nanos: int, field: str) -> int:
        """The time in whole seconds, or InvalidRequest naming `field`."""
        if not 0 <= nanos <= MAX_NANOS:
            raise InvalidRequest(field, f"nanos must be in 0..{MAX_NANOS}, got {nanos}")
        earliest = self.config.earliest
        if seconds < earliest:
            raise InvalidRequest(
                field,
                f"{_show(seconds)} is before {iso(earliest)} (time.earliest); was the Timestamp"
                " left unset?",
            )
        if seconds > self.latest:
            raise InvalidRequest(
                field,
                f"{_show(seconds)} is too late: its attribution window would end after 9999-12-31",
            )
        if self.live:
            now = self.clock()
            if seconds > now + self.config.max_ahead_seconds:
                raise InvalidRequest(
                    field,
                    f"{iso(seconds)} is more than {self.config.max_ahead_seconds:g} s after the"
                    f" server's clock ({iso(int(now))}; time.max_ahead_seconds). Times are event"
                    " times; simulations and backfills run a server in replay mode"
                    " (anstoss serve --replay)",
                )
        return seconds


def _show(seconds: int) -> str:
    """A time for a message; seconds outside the Timestamp range are shown as a number."""
    if 0 <= seconds <= MAX_SECONDS:
        return iso(seconds)
    return f"{seconds} seconds since 1970"
