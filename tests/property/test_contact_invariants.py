"""Acceptance 2: for random consents, histories and caps, no decision uses a channel without
consent or breaks a cap, and the returned probabilities sum to 1.

The test keeps its own record of what happened (events and contacts, in order) and checks every
decision against it, independently of the engine's store and rules.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.catalog import Catalog, load_catalog
from engine.config import load_config
from engine.decide import DecisionEngine
from engine.experiment import Arm, Experiment
from engine.requests import DecideBatch, EventBatch, EventType
from engine.store import MemoryStore, SQLiteStore
from tests.conftest import DAY, T0

BASE = load_catalog()
CHANNELS = [c.name for c in BASE.channels]
CUSTOMERS = ["a", "b", "c"]
PERMISSION_EVENTS = [
    EventType.CONSENT_GRANTED,
    EventType.CONSENT_WITHDRAWN,
    EventType.UNSUBSCRIBED,
    EventType.RESUBSCRIBED,
]


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    channels = tuple(
        dataclasses.replace(
            c,
            default_consent=draw(st.booleans()),
            min_gap_days=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
            max_per_7d=draw(st.integers(0, 3)),
            max_per_30d=draw(st.integers(0, 5)),
        )
        for c in BASE.channels
    )
    return Catalog(
        channels=channels,
        touchpoints=BASE.touchpoints,
        actions=BASE.actions,
        chain=BASE.chain,
        max_per_7d=draw(st.integers(0, 4)),
        max_per_30d=draw(st.integers(0, 8)),
        occasion_lead_days=BASE.occasion_lead_days,
    )


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            st.sampled_from(CUSTOMERS),
            st.sampled_from(CHANNELS),
            st.sampled_from(PERMISSION_EVENTS),
        ),
        st.tuples(st.just("purchase"), st.sampled_from(CUSTOMERS)),
        st.tuples(st.just("decide"), st.lists(st.sampled_from(CUSTOMERS), min_size=1, max_size=3)),
    ),
    min_size=5,
    max_size=40,
)


class Oracle:
    """The test's own memory of consents and contacts."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.permission: dict[tuple[str, str], EventType] = {}  # latest consent event
        self.unsubscribed: set[tuple[str, str]] = set()
        self.contacts: dict[str, list[tuple[int, str]]] = {c: [] for c in CUSTOMERS}

    def record(self, customer: str, channel: str, kind: EventType) -> None:
        """An unsubscribe holds until an explicit re-subscription; consent events never lift
        it (a CRM's consent sync must not re-mail people who unsubscribed)."""
        key = (customer, channel)
        if kind == EventType.UNSUBSCRIBED:
            self.unsubscribed.add(key)
            return
        if kind == EventType.RESUBSCRIBED:
            self.unsubscribed.discard(key)
            kind = EventType.CONSENT_GRANTED
        self.permission[key] = kind

    def consented(self, customer: str, channel: str) -> bool:
        if (customer, channel) in self.unsubscribed:
            return False
        state = self.permission.get((customer, channel))
        if state is None:
            return self.catalog.channels[self.catalog.channel_index[channel]].default_consent
        return state == EventType.CONSENT_GRANTED

    def violations(self, customer: str, channel: str, t: int) -> list[str]:
        cat = self.catalog
        ch = cat.channels[cat.channel_index[channel]]
        past = self.contacts[customer]
        out = []
        if not self.consented(customer, channel):
            out.append("no consent")

        def count(window: int, only: str | None = None) -> int:
            return sum(1 for when, c in past if when > t - window and (only is None or c == only))

        if ch.max_per_7d and count(7 * DAY, channel) >= ch.max_per_7d:
            out.append("channel cap 7d")
        if ch.max_per_30d and count(30 * DAY, channel) >= ch.max_per_30d:
            out.append("channel cap 30d")
        if cat.max_per_7d and count(7 * DAY) >= cat.max_per_7d:
            out.append("cap 7d")
        if cat.max_per_30d and count(30 * DAY) >= cat.max_per_30d:
            out.append("cap 30d")
        gaps = [t - when for when, c in past if c == channel]
        if gaps and min(gaps) < ch.min_gap_days * DAY:
            out.append("min gap")
        return out


def run(
    catalog: Catalog, script: list[tuple], hours: list[int], store_kind: str, policy: str
) -> tuple[int, int]:
    """Play the script; returns (decisions checked, contacts made)."""
    config = load_config().replace(
        catalog=catalog, experiment=Experiment("p", "p", (Arm(policy, policy, 1.0),))
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = (
            SQLiteStore(Path(tmp) / "p.db", catalog)
            if store_kind == "sqlite"
            else MemoryStore(catalog)
        )
        engine = DecisionEngine(config, store)
        oracle = Oracle(catalog)
        t = T0
        checked = 0
        for step, gap in zip(script, hours, strict=False):
            t += gap * 3600
            if step[0] == "event":
                _, customer, channel, kind = step
                engine.report_events(
                    EventBatch([], [customer], [t], [kind], [0.0], [catalog.channel_index[channel]])
                )
                oracle.record(customer, channel, kind)
            elif step[0] == "purchase":
                engine.report_events(
                    EventBatch([], [step[1]], [t], [EventType.PURCHASE], [30.0], [-1])
                )
            else:
                customers = step[1]  # may repeat a customer: both decisions must respect caps
                decisions = engine.decide(DecideBatch(customers, np.full(len(customers), t)))
                for i, customer in enumerate(customers):
                    probs = decisions.probabilities[i]
                    allowed = decisions.allowed[i]
                    assert abs(probs.sum() - 1.0) < 1e-9
                    assert allowed[0], "no contact must always be eligible"
                    assert np.all(probs[~allowed] == 0)
                    for a in np.flatnonzero(allowed)[1:]:
                        channel = catalog.actions[a].channel
                        assert oracle.violations(customer, channel, t) == [], (
                            f"{catalog.action_keys[a]} eligible for {customer}: "
                            f"{oracle.violations(customer, channel, t)}"
                        )
                    chosen = catalog.actions[int(decisions.chosen[i])]
                    assert probs[chosen.index] > 0
                    if chosen.is_contact:
                        # A repeated customer's later row is decided after this one.
                        oracle.contacts[customer].append((t, chosen.channel))
                    checked += 1
        engine.close()
    return checked, sum(len(c) for c in oracle.contacts.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalog=catalogs(),
    script=steps,
    hours=st.lists(st.integers(0, 72), min_size=40, max_size=40),
    policy=st.sampled_from(["random", "bandit"]),
)
def test_no_decision_breaks_consent_or_caps_sqlite(
    catalog: Catalog, script: list[tuple], hours: list[int], policy: str
) -> None:
    run(catalog, script, hours, "sqlite", policy)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalog=catalogs(),
    script=steps,
    hours=st.lists(st.integers(0, 72), min_size=40, max_size=40),
)
def test_no_decision_breaks_consent_or_caps_memory(
    catalog: Catalog, script: list[tuple], hours: list[int]
) -> None:
    run(catalog, script, hours, "memory", "random")


def test_the_property_test_sees_contacts() -> None:
    """Guard against a vacuous property: a plain history does produce checked contacts."""
    # Only customers with a known first purchase can be contacted.
    script = [("purchase", c) for c in CUSTOMERS] + [("decide", ["a", "b", "c"])] * 12
    checked, contacts = run(BASE, script, [1] * 3 + [24] * 12, "sqlite", "random")
    assert checked == 36
    assert contacts >= 12
