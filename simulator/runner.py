"""Run a scenario under a policy: the simulator plays the channel systems against the engine.

Each calendar day: the day's new customers make their first purchase (reported as events, with
their consents); the channel systems ask the engine about every customer on one of her
decision days; the world applies the touches, then the day's purchases, unsubscribes and
dropouts happen and are reported. The engine runs in-process (its decision core on a memory
store) or behind `anstoss serve` (`via`); the results are the same.

    >>> from simulator import simulate
    >>> result = simulate(policy="chain", customers=200, days=30, seed=1)
    >>> result.summary["customers"], len(result.customers)
    (200, 200)
    >>> result.decisions.columns[:3].tolist()  # the engine's decision-log schema
    ['decision_id', 'seq', 'time']
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from engine.config import EngineConfig, load_config
from engine.decide import DecisionEngine
from engine.logschema import EVENT_COLUMNS, finish_events
from engine.requests import NO_OCCASION, DecideBatch, EventBatch, EventType
from engine.store.memory import MemoryStore
from engine.timeutil import DAY, to_seconds
from simulator.link import EngineLink, GrpcLink, InProcessLink, SimulationError
from simulator.oracle import OraclePolicy
from simulator.population import draw_population
from simulator.scenario import ATTRIBUTES, Scenario, load_scenario
from simulator.summary import summarize
from simulator.values import action_values
from simulator.world import World

POLICIES = ("chain", "bandit", "random", "none", "oracle", "experiment")
ARRIVE_HOUR, DECIDE_HOUR, UNSUBSCRIBE_HOUR, PURCHASE_HOUR = 7, 8, 9, 12


@dataclass
class SimulationResult:
    customers: pd.DataFrame
    events: pd.DataFrame
    summary: dict[str, Any]
    truth: pd.DataFrame | None
    _decisions: Callable[[], pd.DataFrame] = field(repr=False)
    _decisions_cache: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def decisions(self) -> pd.DataFrame:
        """The decision log (engine log schema); built on first use, as it can be large."""
        if self._decisions_cache is None:
            self._decisions_cache = self._decisions()
        return self._decisions_cache

    def write(self, out: str | Path) -> list[Path]:
        """summary.json and Parquet files of customers, decisions, events (and truth)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "summary.json"]
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        frames = {"customers": self.customers, "decisions": self.decisions, "events": self.events}
        if self.truth is not None:
            frames["truth"] = self.truth
        for name, frame in frames.items():
            path = out / f"{name}.parquet"
            frame.to_parquet(path, index=False)
            written.append(path)
        return written


def simulate(
    scenario: Scenario | str | Path | None = None,
    policy: str = "chain",
    customers: int = 10_000,
    days: int = 365,
    seed: int = 0,
    *,
    via: str | None = None,
    config: EngineConfig | None = None,
    truth: bool = False,
    progress: bool = False,
) -> SimulationResult:
    """Simulate `customers` new customers for `days` days each under `policy`.

    `policy` is one of chain, bandit, random, none, oracle (a single arm that gets everyone), or
    experiment (the arms of `config`, or of the server with `via`). `truth` adds every decision's
    true action values and regret (always on for the oracle).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    population = draw_population(scenario, customers, seed)
    world = World(scenario, population, seed, days)
    ids = [f"c{i:07d}" for i in range(customers)]
    index_of = {cid: i for i, cid in enumerate(ids)}
    oracle = OraclePolicy(world, index_of) if policy == "oracle" else None
    expected = customers * sum(1 for d in scenario.decision_days if d < days)
    link = _link(scenario, policy, seed, via, config, oracle, expected)
    run = _Run(scenario, world, link, ids, oracle, truth or oracle is not None)
    try:
        run.play(progress)
    finally:
        if via is not None:
            link.close()
    arms = np.array(link.arm_names, dtype=object)[run.arm] if len(link.arm_names) else None
    frame = world.customers_frame(ids, arms)
    truth_frame = run.truth_frame()
    summary = summarize(frame, days, scenario.catalog, scenario.margin_rate, truth_frame)
    summary.update(scenario=scenario.name, policy=policy, seed=seed, via=via or "")
    return SimulationResult(frame, run.events_frame(), summary, truth_frame, link.decisions_frame)


def _link(
    scenario: Scenario,
    policy: str,
    seed: int,
    via: str | None,
    config: EngineConfig | None,
    oracle: OraclePolicy | None,
    expected_decisions: int,
) -> EngineLink:
    if via is not None:
        if policy == "oracle":
            raise SimulationError("the oracle knows the world: it runs in-process only, not --via")
        link = GrpcLink(via, scenario.catalog)
        if policy != "experiment" and link.arm_policies != (policy,):
            link.close()
            arms = ", ".join(
                f"{n} ({p})" for n, p in zip(link.arm_names, link.arm_policies, strict=True)
            )
            raise SimulationError(
                f"the server at {via} runs arms {arms}, not one {policy!r} arm;"
                " use --policy experiment to simulate whatever the server runs"
            )
        return link
    base = config or load_config()
    base = base.replace(catalog=scenario.catalog)
    if policy != "experiment":
        base = base.with_single_arm(policy)
    policies = {"oracle": oracle} if oracle is not None else None
    store = MemoryStore(scenario.catalog, f"sim{seed}", expected_decisions)
    return InProcessLink(DecisionEngine(base, store, policies))


class _Run:
    """The day loop and what it collects."""

    def __init__(
        self,
        scenario: Scenario,
        world: World,
        link: EngineLink,
        ids: list[str],
        oracle: OraclePolicy | None,
        truth: bool,
    ) -> None:
        self.scenario = scenario
        self.world = world
        self.link = link
        self.ids = np.array(ids, dtype=object)
        self.oracle = oracle
        self.want_truth = truth
        self.arm = np.zeros(len(ids), dtype=np.int64)
        self.origin = to_seconds(
            datetime.combine(scenario.start_date, datetime.min.time(), tzinfo=UTC)
        )
        self.offsets = np.array(
            [d for d in scenario.decision_days if d < world.horizon], dtype=np.int64
        )
        pop = world.population
        self.levels = {
            name: np.array([lv.name for lv in scenario.attributes[name]], dtype=object)[
                pop.attributes[name]
            ]
            for name in ATTRIBUTES
        }
        catalog = scenario.catalog
        channels = catalog.channels
        default = np.array([c.default_consent for c in channels])
        self.consent_events = (pop.consent & ~default) | (~pop.consent & default)  # what to report
        self.consent_kind = np.where(
            pop.consent, EventType.CONSENT_GRANTED, EventType.CONSENT_WITHDRAWN
        )
        self._events: list[EventBatch] = []
        self._truth: list[pd.DataFrame] = []

    def time(self, day: int, hour: int) -> int:
        return self.origin + day * DAY + hour * 3600

    def play(self, progress: bool) -> None:
        for day in tqdm(
            range(self.world.calendar_days), disable=not progress, unit="day", desc="simulating"
        ):
            arrivals = self.world.arrive(day)
            if len(arrivals):
                self.report(self.arrival_events(arrivals, day))
            due = self.due(day)
            if len(due):
                self.decide(day, due)
            purchases = self.world.step(day)
            if len(purchases.customers):
                n = len(purchases.customers)
                self.report(
                    EventBatch(
                        event_ids=[f"{c}-d{day}" for c in self.ids[purchases.customers]],
                        customer_ids=self.ids[purchases.customers].tolist(),
                        times=np.full(n, self.time(day, PURCHASE_HOUR)),
                        types=np.full(n, EventType.PURCHASE),
                        values=purchases.values,
                        channels=np.full(n, -1),
                    )
                )

    def report(self, events: EventBatch) -> None:
        self.link.report(events)
        self._events.append(events)

    def due(self, day: int) -> np.ndarray:
        """Customers on one of their decision days today."""
        arrival = self.world.population.arrival
        first = day - self.offsets
        lo = np.searchsorted(arrival, first, "left")
        hi = np.searchsorted(arrival, first, "right")
        return (
            np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
            if len(lo)
            else np.zeros(0, np.int64)
        )

    def arrival_events(self, idx: np.ndarray, day: int) -> EventBatch:
        pop = self.world.population
        rows, channels = np.nonzero(self.consent_events[idx])
        n, m = len(idx), len(rows)
        customers = self.ids[idx].tolist()
        return EventBatch(
            event_ids=[f"{c}-first" for c in customers] + [""] * m,
            customer_ids=customers + self.ids[idx[rows]].tolist(),
            times=np.full(n + m, self.time(day, ARRIVE_HOUR)),
            types=np.r_[np.full(n, EventType.PURCHASE), self.consent_kind[idx[rows], channels]],
            values=np.r_[pop.first_value[idx], np.zeros(m)],
            channels=np.r_[np.full(n, -1), channels],
        )

    def decide(self, day: int, due: np.ndarray) -> None:
        pop = self.world.population
        calendar = self.scenario.start_date + timedelta(days=day)
        day_of_year = calendar.timetuple().tm_yday - 1
        occasion = pop.occasion_day[due]
        batch = DecideBatch(
            customer_ids=self.ids[due].tolist(),
            times=np.full(len(due), self.time(day, DECIDE_HOUR)),
            acquisition_channel=self.levels["acquisition_channel"][due].tolist(),
            first_order_category=self.levels["first_order_category"][due].tolist(),
            region=self.levels["region"][due].tolist(),
            first_order_items=pop.items[due].astype(np.float64),
            days_to_occasion=np.where(occasion >= 0, (occasion - day_of_year) % 365, NO_OCCASION),
        )
        values = action_values(self.world, due, day) if self.want_truth else None
        if self.oracle is not None:
            self.oracle.day = day
        decided = self.link.decide(batch)
        self.arm[due] = decided.arm
        if values is not None:
            self._truth.append(self._truth_rows(day, due, decided, values))
        unsubscribed, channels = self.world.touch(day, due, decided.actions)
        if len(unsubscribed):
            n = len(unsubscribed)
            self.report(
                EventBatch(
                    event_ids=[],
                    customer_ids=self.ids[unsubscribed].tolist(),
                    times=np.full(n, self.time(day, UNSUBSCRIBE_HOUR)),
                    types=np.full(n, EventType.UNSUBSCRIBED),
                    values=np.zeros(n),
                    channels=channels,
                )
            )

    def _truth_rows(
        self, day: int, due: np.ndarray, decided: Any, values: np.ndarray
    ) -> pd.DataFrame:
        chosen = values[np.arange(len(due)), decided.actions]
        best = np.where(decided.allowed, values, -np.inf).max(axis=1)
        frame = pd.DataFrame(
            {
                "decision_id": decided.decision_ids,
                "customer_id": self.ids[due],
                "day": day,
                "arm": np.array(self.link.arm_names, dtype=object)[decided.arm],
                "value_chosen": chosen,
                "value_best": best,
                "regret": best - chosen,
            }
        )
        keys = self.scenario.catalog.action_keys
        wide = pd.DataFrame(values.astype(np.float32), columns=[f"value.{k}" for k in keys])
        return pd.concat([frame, wide], axis=1)

    def truth_frame(self) -> pd.DataFrame | None:
        if not self.want_truth:
            return None
        return pd.concat(self._truth, ignore_index=True) if self._truth else pd.DataFrame()

    def events_frame(self) -> pd.DataFrame:
        """Every event sent to the engine, in the engine's event-log schema."""
        catalog = self.scenario.catalog
        names = np.array([c.name for c in catalog.channels] + [""], dtype=object)
        if not self._events:
            return finish_events(pd.DataFrame({c: [] for c in EVENT_COLUMNS}))
        frame = pd.DataFrame(
            {
                "event_id": [e for b in self._events for e in b.event_ids],
                "customer_id": [c for b in self._events for c in b.customer_ids],
                "time": np.concatenate([b.times for b in self._events]),
                "type": np.concatenate([b.types for b in self._events]).astype(np.int64),
                "value": np.concatenate([b.values for b in self._events]),
                "channel": names[np.concatenate([b.channels for b in self._events])],
                "decision_id": [d for b in self._events for d in b.decision_ids],
            }
        )
        frame.insert(0, "seq", np.arange(1, len(frame) + 1))
        return finish_events(frame)
