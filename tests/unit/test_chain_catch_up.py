"""Chain catch-up: a step that could not fire on its day fires at the next decision within
`chain_catch_up_days`, never twice, never after its span; the earliest unfired step goes first.

Every test runs the real engine on both stores over the shipped catalog (or a two-step variant
of it): first purchase at 08:00 Berlin, decisions at 09:00 on the given lifecycle days.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.catalog import Catalog, ChainStep
from engine.config import EngineConfig
from engine.decide import DecisionEngine
from engine.requests import EventType
from engine.store import MemoryStore, SQLiteStore
from tests.conftest import DAY, T0, channel_events, decide_batch, purchases

Ask = Callable[[str, int], str]
Build = Callable[..., tuple[DecisionEngine, Ask]]


@pytest.fixture(params=["sqlite", "memory"])
def chain(request: pytest.FixtureRequest, tmp_path: Path, config: EngineConfig) -> Iterator[Build]:
    """A chain-only engine on the store of the parameter; `ask(customer, day)` decides for a
    customer on a lifecycle day and returns the chosen action's key."""
    engines: list[DecisionEngine] = []

    def build(catalog: Catalog | None = None) -> tuple[DecisionEngine, Ask]:
        cfg = config.with_single_arm("chain")
        if catalog is not None:
            cfg = cfg.replace(catalog=catalog)
        store = (
            SQLiteStore(tmp_path / f"chain{len(engines)}.db", cfg.catalog)
            if request.param == "sqlite"
            else MemoryStore(cfg.catalog)
        )
        engine = DecisionEngine(cfg, store)
        engines.append(engine)

        def ask(customer: str, day: int) -> str:
            decided = engine.decide(decide_batch([customer], T0 + day * DAY))
            assert decided.probability[0] == 1.0  # the chain stays deterministic
            return cfg.catalog.action_keys[int(decided.chosen[0])]

        return engine, ask

    yield build
    for engine in engines:
        engine.close()


def arrive(engine: DecisionEngine, customer: str) -> None:
    engine.report_events(purchases([customer], [T0 - 3600], [40.0]))


def consent(engine: DecisionEngine, customer: str, day: float, kind: EventType) -> None:
    at = T0 + round(day * DAY) - 1800
    engine.report_events(channel_events(engine.catalog, [customer], [at], kind, ["email"]))


def test_a_customer_first_asked_on_day_2_gets_the_day_1_welcome(chain: Build) -> None:
    engine, ask = chain()
    arrive(engine, "late")
    assert ask("late", 2) == "welcome@email"
    assert ask("late", 3) == "cross_sell@email"


def test_a_step_blocked_on_its_day_fires_at_the_next_decision_in_its_span(chain: Build) -> None:
    engine, ask = chain()
    arrive(engine, "blocked")
    consent(engine, "blocked", 0, EventType.CONSENT_WITHDRAWN)
    assert [ask("blocked", day) for day in (1, 2)] == ["no_contact", "no_contact"]
    consent(engine, "blocked", 2.5, EventType.CONSENT_GRANTED)
    assert ask("blocked", 3) == "welcome@email"


def test_of_several_due_steps_the_earliest_unfired_goes_first(chain: Build) -> None:
    engine, ask = chain()
    arrive(engine, "busy")
    consent(engine, "busy", 0, EventType.CONSENT_WITHDRAWN)
    consent(engine, "busy", 7.5, EventType.CONSENT_GRANTED)
    # On day 8 the welcome (days 1..8), the cross-sell (3..10) and the voucher (7..14) are due.
    assert [ask("busy", day) for day in (8, 9, 10)] == [
        "welcome@email", "cross_sell@email", "no_contact",  # e-mail cap: 2 in 7 days
    ]  # fmt: skip
    assert ask("busy", 14) == "no_contact"  # still capped on the voucher's last day
    assert ask("busy", 15) == "reminder@email"  # the voucher's span is over: the next step


def test_steps_fire_once_each_when_asked_every_day(chain: Build) -> None:
    engine, ask = chain()
    arrive(engine, "daily")
    contacts = {day: ask("daily", day) for day in range(22)}
    assert {day: key for day, key in contacts.items() if key != "no_contact"} == {
        0: "welcome@parcel_insert",
        1: "welcome@email",
        3: "cross_sell@email",
        # Day 7: the e-mail cap (2 in 7 days: the day-1 and day-3 mails) blocks the voucher;
        # on day 8 the day-1 mail has left the week and the voucher catches up.
        8: "voucher@email",
        14: "reminder@email",  # no push consent: the step's second channel
        21: "nps_survey@email",
    }


def test_a_step_does_not_fire_after_its_span(chain: Build) -> None:
    engine, ask = chain()
    arrive(engine, "away")
    # First asked on day 15: the welcome (1..8), cross-sell (3..10) and voucher (7..14) are over.
    assert ask("away", 15) == "reminder@email"
    assert {ask("away", day) for day in range(16, 21)} == {"no_contact"}


def test_a_later_step_with_the_same_touchpoint_takes_over(chain: Build, catalog: Catalog) -> None:
    """The chain reuses touchpoints. With a long catch-up the day-7 voucher could still be due
    on day 30, where the day-30 voucher takes over (its channel is used, one voucher, not two);
    a day-7 voucher caught up before day 30 does not count for the day-30 step."""
    steps = (ChainStep(7, "voucher", ("email",)), ChainStep(30, "voucher", ("postcard",)))
    engine, ask = chain(dataclasses.replace(catalog, chain=steps, chain_catch_up_days=60))
    arrive(engine, "late")
    assert ask("late", 25) == "voucher@email"  # the day-7 step, 18 days late
    assert ask("late", 30) == "voucher@postcard"
    arrive(engine, "blocked")
    consent(engine, "blocked", 0, EventType.CONSENT_WITHDRAWN)
    assert ask("blocked", 20) == "no_contact"  # the day-7 voucher is due, its channel blocked
    consent(engine, "blocked", 29, EventType.CONSENT_GRANTED)
    assert ask("blocked", 30) == "voucher@postcard"  # not the day-7 step's e-mail
    for customer in ("late", "blocked"):
        assert {ask(customer, day) for day in (31, 45, 89)} == {"no_contact"}
