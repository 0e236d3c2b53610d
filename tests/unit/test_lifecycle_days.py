"""Lifecycle days in the shop's time zone: calendar days by default, elapsed 24-hour periods on
request, right across DST changes and in zones far from UTC, and the same day for every rule."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig, TimeConfig
from engine.decide import DecisionEngine
from engine.features import CATEGORICAL_FEATURES
from engine.lifecycle import LifecycleDays
from engine.store import MemoryStore
from engine.timeutil import MAX_SECONDS, to_seconds
from tests.conftest import decide_batch, purchases

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
EPOCH_DATE = date(1970, 1, 1)


def local(zone: zoneinfo.ZoneInfo | str, *parts: int) -> int:
    """Epoch seconds of a wall-clock time in a zone."""
    tz = zone if isinstance(zone, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(zone)
    return to_seconds(datetime(*parts, tzinfo=tz))  # type: ignore[misc]


def days(counting: str, first: int, *moments: int, zone: str = "Europe/Berlin") -> list[int]:
    counted = LifecycleDays(zone, counting).days_after(np.array([first]), np.array([moments]))
    return counted[0].tolist()


def test_late_purchase_and_next_morning_is_day_1_in_calendar_days() -> None:
    first = local(BERLIN, 2026, 3, 2, 23, 0)
    morning = local(BERLIN, 2026, 3, 3, 8, 0)
    assert days("calendar", first, morning) == [1]
    assert days("elapsed", first, morning) == [0]  # nine hours
    same_evening = local(BERLIN, 2026, 3, 2, 23, 59, 59)
    assert days("calendar", first, same_evening, local(BERLIN, 2026, 3, 3, 0, 0)) == [0, 1]


def test_spring_forward_in_berlin() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); the local day has 23 hours.
    first = local(BERLIN, 2026, 3, 28, 23, 30)
    a_day_later_by_the_clock = local(BERLIN, 2026, 3, 29, 23, 30)  # 23 hours later
    assert days("calendar", first, a_day_later_by_the_clock) == [1]
    assert days("elapsed", first, a_day_later_by_the_clock) == [0]
    switch = to_seconds(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    # Local midnight after the switch is 22:00 UTC; a fixed winter offset would put it at 23:00.
    midnight = to_seconds(datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
    assert days("calendar", first, switch - 1, switch, midnight - 1, midnight) == [1, 1, 1, 2]


def test_fall_back_in_berlin() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); the local day has 25 hours.
    start = local(BERLIN, 2026, 10, 25, 0, 0)
    end = to_seconds(datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC))  # 23:59:59 CET
    assert days("calendar", start, end, end + 1) == [0, 1]
    assert days("elapsed", start, end, end + 1) == [1, 1]  # 24 h 59 min 59 s
    switch = to_seconds(datetime(2026, 10, 25, 1, 0, tzinfo=UTC))
    assert days("calendar", start, switch - 1, switch) == [0, 0]


def test_a_zone_far_from_utc() -> None:
    # Auckland in January is UTC+13: 23:00 on the 10th there is 10:00 UTC on the 10th, and 08:00
    # on the 11th there is 19:00 UTC on the 10th -- the same UTC date, the next local one.
    first = local("Pacific/Auckland", 2026, 1, 10, 23, 0)
    morning = local("Pacific/Auckland", 2026, 1, 11, 8, 0)
    assert datetime.fromtimestamp(first, UTC).date() == datetime.fromtimestamp(morning, UTC).date()
    assert days("calendar", first, morning, zone="Pacific/Auckland") == [1]
    assert days("calendar", first, morning, zone="UTC") == [0]
    # Across the end of New Zealand summer time (2026-04-05 03:00 NZDT -> 02:00 NZST).
    before = local("Pacific/Auckland", 2026, 4, 4, 12, 0)
    after = local("Pacific/Auckland", 2026, 4, 6, 0, 30)
    assert days("calendar", before, after, zone="Pacific/Auckland") == [2]


ZONES = [
    "Europe/Berlin",
    "Pacific/Auckland",
    "Pacific/Chatham",  # +12:45 / +13:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/New_York",
    "America/Sao_Paulo",  # DST abolished in 2019
    "Africa/Casablanca",  # Ramadan transitions listed until 2087
    "Asia/Kolkata",
    "UTC",
]
START = to_seconds(datetime(2000, 1, 1, tzinfo=UTC))
NOW = to_seconds(datetime(2026, 1, 1, tzinfo=UTC))
instants = st.one_of(
    st.integers(START, MAX_SECONDS - 86_400),  # anywhere the service accepts a time
    st.integers(NOW - 30 * 86_400 * 365, NOW + 80 * 86_400 * 365),  # where real customers are
)


def _reference_day(seconds: int, zone: str) -> int:
    return (datetime.fromtimestamp(seconds, zoneinfo.ZoneInfo(zone)).date() - EPOCH_DATE).days


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    zone=st.sampled_from(ZONES),
    first=st.lists(instants, min_size=1, max_size=40),
    offsets=st.lists(st.integers(-3 * 86_400, 400 * 86_400), min_size=1, max_size=40),
)
def test_vectorised_days_equal_zoneinfo_per_element(
    zone: str, first: list[int], offsets: list[int]
) -> None:
    n = min(len(first), len(offsets))
    first_a = np.array(first[:n], dtype=np.int64)
    moments = np.clip(first_a + np.array(offsets[:n]), START, MAX_SECONDS)[:, None]
    counter = LifecycleDays(zone)
    got_local = counter.local_days(np.concatenate([first_a, moments[:, 0]]))
    want_local = [_reference_day(int(s), zone) for s in [*first_a, *moments[:, 0]]]
    assert got_local.tolist() == want_local
    got = counter.days_after(first_a, moments)[:, 0].tolist()
    want = [
        (
            datetime.fromtimestamp(int(m), zoneinfo.ZoneInfo(zone)).date()
            - datetime.fromtimestamp(int(f), zoneinfo.ZoneInfo(zone)).date()
        ).days
        for f, m in zip(first_a, moments[:, 0], strict=True)
    ]
    assert got == want
    elapsed = LifecycleDays(zone, "elapsed").days_after(first_a, moments)[:, 0].tolist()
    assert elapsed == [
        (int(m) - int(f)) // 86_400 for f, m in zip(first_a, moments[:, 0], strict=True)
    ]


@pytest.mark.parametrize(("counting", "action", "stage"), [
    ("calendar", "welcome@email", "d1_3"),  # day 1: the chain's e-mail welcome
    ("elapsed", "welcome@parcel_insert", "d0"),  # nine hours: still the first shipment's day
])  # fmt: skip
def test_every_rule_sees_the_same_lifecycle_day(
    config: EngineConfig, counting: str, action: str, stage: str
) -> None:
    """The engine counts days as configured, and the first-shipment rule, the chain and the
    features all see that one day."""
    cfg = config.with_single_arm("chain").replace(time=TimeConfig(lifecycle_days=counting))
    engine = DecisionEngine(cfg, MemoryStore(cfg.catalog))
    engine.report_events(purchases(["late"], [local(BERLIN, 2026, 3, 2, 23, 0)], [40.0]))
    decided = engine.decide(decide_batch(["late"], local(BERLIN, 2026, 3, 3, 8, 0)))
    assert cfg.catalog.action_keys[int(decided.chosen[0])] == action
    parcel = cfg.catalog.action_index("welcome", "parcel_insert")
    assert decided.allowed[0, parcel] == (counting == "elapsed")
    assert decided.features.categorical[0, CATEGORICAL_FEATURES.index("stage")] == stage


def test_unknown_zones_and_countings_are_refused() -> None:
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        LifecycleDays("Europe/Atlantis")
    with pytest.raises(ValueError, match="calendar or elapsed"):
        LifecycleDays("Europe/Berlin", "hours")
