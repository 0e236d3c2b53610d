"""Scenarios: every parameter of the simulated world, read from a TOML file.

A scenario is a frozen dataclass tree; `load_scenario` validates it against the engine catalog
it names (every catalog channel and touchpoint needs a response model), with errors that name
the file and the key. `write_scenario` writes one back (calibration produces scenario files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from engine.catalog import Catalog, load_catalog_from
from engine.errors import ConfigError
from engine.tomlconf import Table, load_toml


@dataclass(frozen=True)
class Spend:
    p: float = 6.25
    q: float = 3.74
    mean_order_value: float = 60.0

    @property
    def gamma(self) -> float:
        """Rate of the spend-rate distribution that gives `mean_order_value`."""
        return self.mean_order_value * (self.q - 1.0) / self.p


@dataclass(frozen=True)
class Bond:
    initial: float = 0.3
    purchase_gain: float = 0.35
    decay_days: float = 120.0
    rate_gain: float = 4.0
    dropout_gain: float = 2.0


@dataclass(frozen=True)
class Burst:
    tau: float = 3.0
    days: int = 14


@dataclass(frozen=True)
class Fatigue:
    decay_days: float = 10.0
    uplift_damping: float = 0.35
    optout_gain: float = 0.5
    annoyance_threshold: float = 3.0
    annoyance_dropout: float = 0.15
    bond_erosion: float = 0.03


@dataclass(frozen=True)
class Value:
    horizon_days: int = 30
    unsubscribe_cost: float = 2.0


@dataclass(frozen=True)
class Segment:
    name: str
    purchase_rate_per_year: float
    purchase_rate_shape: float
    dropout_per_year: float
    dropout_shape: float
    burst_probability: float
    logit_intercept: float = 0.0
    logit_first_basket: float = 0.0
    response: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """One value of a categorical first-order attribute."""

    name: str
    share: float
    loyalty_logit: float = 0.0


@dataclass(frozen=True)
class ChannelResponse:
    peak_uplift: float
    daily_decay: float
    delay_days: int
    fatigue_weight: float
    optout_per_touch: float
    consent_share: float
    affinity_sd: float = 0.0


@dataclass(frozen=True)
class TouchpointResponse:
    relevance: float = 1.0
    early_relevance: float | None = None
    early_days: int = 0
    lapsed_relevance: float | None = None
    lapsed_days: int = 0
    bond_boost: float = 0.0


# Days after a customer's first purchase on which the channel systems ask the engine.
DECISION_DAYS = (0, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 240, 300, 360)


@dataclass(frozen=True)
class Scenario:
    catalog: Catalog
    segments: tuple[Segment, ...]
    attributes: dict[str, tuple[Level, ...]]  # acquisition_channel, first_order_category, region
    channels: dict[str, ChannelResponse]
    touchpoints: dict[str, TouchpointResponse]
    name: str = "default"
    catalog_path: str = ""
    start_date: date = date(2026, 1, 5)
    arrival_days: int = 90
    decision_days: tuple[int, ...] = DECISION_DAYS
    margin_rate: float = 0.3
    extra_items_mean: float = 1.2
    name_known_share: float = 0.7
    spend: Spend = field(default_factory=Spend)
    bond: Bond = field(default_factory=Bond)
    burst: Burst = field(default_factory=Burst)
    fatigue: Fatigue = field(default_factory=Fatigue)
    value: Value = field(default_factory=Value)
    source: str = "<memory>"

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)


ATTRIBUTES = ("acquisition_channel", "first_order_category", "region")


def default_scenario_path() -> Path:
    return Path(str(resources.files("simulator") / "scenarios" / "default.toml"))


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load and validate a scenario file (the shipped default when `path` is None)."""
    path = default_scenario_path() if path is None else Path(path)
    root = load_toml(path)
    catalog_path = root.string("catalog", _default(Scenario, "catalog_path"))
    catalog = load_catalog_from(catalog_path, path)
    try:
        start = date.fromisoformat(
            root.string("start_date", _default(Scenario, "start_date").isoformat())
        )
    except ValueError:
        raise root.error("start_date", "expected a date like 2026-01-05") from None
    if start < date(2000, 1, 1):  # the engine refuses times before 2000 (time.earliest)
        raise root.error("start_date", f"expected a date from 2000-01-01 on, got {start}")
    decision_days = tuple(
        int(d) for d in root.numbers("decision_days", list(_default(Scenario, "decision_days")))
    )
    if (
        not decision_days
        or any(d < 0 for d in decision_days)
        or list(decision_days) != sorted(set(decision_days))
    ):
        raise root.error("decision_days", "expected increasing whole days >= 0")
    attributes = root.table("attributes")
    other = attributes.table("other")  # read before _attributes checks for unknown keys
    scenario = Scenario(
        catalog=catalog,
        segments=_segments(root, catalog),
        attributes=_attributes(attributes),
        channels=_channels(root.table("channels", required=True), catalog),
        touchpoints=_touchpoints(root.table("touchpoints", required=True), catalog),
        name=root.string("name", path.stem),
        catalog_path=catalog_path,
        start_date=start,
        arrival_days=root.integer("arrival_days", _default(Scenario, "arrival_days"), minimum=1),
        decision_days=decision_days,
        margin_rate=root.number(
            "margin_rate", _default(Scenario, "margin_rate"), minimum=0, maximum=1
        ),
        extra_items_mean=other.number(
            "extra_items_mean", _default(Scenario, "extra_items_mean"), minimum=0
        ),
        name_known_share=other.number(
            "name_known_share", _default(Scenario, "name_known_share"), minimum=0, maximum=1
        ),
        spend=_table(root.table("spend"), Spend),
        bond=_table(root.table("bond"), Bond),
        burst=_table(root.table("burst"), Burst),
        fatigue=_table(root.table("fatigue"), Fatigue),
        value=_table(root.table("value"), Value),
        source=str(path),
    )
    other.reject_unknown()
    root.reject_unknown()
    if scenario.spend.q <= 1:
        raise ConfigError(str(path), "spend.q", "must be > 1 for a finite mean order value")
    if not 0 <= scenario.bond.initial <= 1:
        raise ConfigError(str(path), "bond.initial", "must be between 0 and 1")
    return scenario


def _default(cls: type, name: str) -> Any:
    """The default of a dataclass field: the one place a scenario default is written."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _table(t: Table, cls: type) -> Any:
    """A flat table of numbers into a dataclass with numeric defaults."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, bool) or not isinstance(default, int | float):
            continue
        if isinstance(default, int):
            values[f.name] = t.integer(f.name, default, minimum=0)
        else:
            values[f.name] = t.number(f.name, default, minimum=0)
    t.reject_unknown()
    return cls(**values)


def _segments(root: Table, catalog: Catalog) -> tuple[Segment, ...]:
    tables = root.tables("segments", required=True)
    if not tables:
        raise root.error("segments", "at least one segment is required")
    segments = []
    for i, t in enumerate(tables):
        last = i == len(tables) - 1
        response_table = t.table("response")
        response = {}
        for name in response_table:
            if name not in catalog.touchpoint_index:
                raise response_table.error(name, f"unknown touchpoint {name!r}")
            response[name] = response_table.number(name, minimum=0)
        segments.append(
            Segment(
                name=t.string("name"),
                purchase_rate_per_year=t.number("purchase_rate_per_year", minimum=0),
                purchase_rate_shape=t.number(
                    "purchase_rate_shape", minimum=0, exclusive_minimum=True
                ),
                dropout_per_year=t.number("dropout_per_year", minimum=0),
                dropout_shape=t.number("dropout_shape", minimum=0, exclusive_minimum=True),
                burst_probability=t.number("burst_probability", 0.0, minimum=0, maximum=0.999),
                # The last segment takes the rest: its logits are never used.
                logit_intercept=0.0
                if last
                else t.number("logit_intercept", _default(Segment, "logit_intercept")),
                logit_first_basket=0.0
                if last
                else t.number("logit_first_basket", _default(Segment, "logit_first_basket")),
                response=response,
            )
        )
        t.reject_unknown()
    return tuple(segments)


def _attributes(t: Table) -> dict[str, tuple[Level, ...]]:
    out = {}
    for name in ATTRIBUTES:
        levels_table = t.table(name)
        levels = []
        for level in levels_table:
            lt = levels_table.table(level)
            levels.append(
                Level(level, lt.number("share", minimum=0), lt.number("loyalty_logit", 0.0))
            )
            lt.reject_unknown()
        if not levels:
            levels = [Level("", 1.0)]
        total = sum(level.share for level in levels)
        if abs(total - 1.0) > 1e-6:
            raise levels_table.error("", f"shares sum to {total:g}, not 1")
        out[name] = tuple(levels)
    t.reject_unknown()
    return out


def _channels(t: Table, catalog: Catalog) -> dict[str, ChannelResponse]:
    out = {}
    for channel in catalog.channels:
        if channel.name not in t:
            raise t.error(channel.name, "the catalog's channel needs a response model here")
    for name in t:
        if name not in catalog.channel_index:
            raise t.error(name, f"unknown channel {name!r} (not in the catalog)")
        c = t.table(name)
        out[name] = ChannelResponse(
            peak_uplift=c.number("peak_uplift", minimum=0),
            daily_decay=c.number("daily_decay", minimum=0, maximum=1),
            delay_days=c.integer("delay_days", 0, minimum=0, maximum=30),
            fatigue_weight=c.number("fatigue_weight", minimum=0),
            optout_per_touch=c.number("optout_per_touch", minimum=0, maximum=1),
            consent_share=c.number("consent_share", minimum=0, maximum=1),
            affinity_sd=c.number(
                "affinity_sd", _default(ChannelResponse, "affinity_sd"), minimum=0
            ),
        )
        c.reject_unknown()
    return out


def _touchpoints(t: Table, catalog: Catalog) -> dict[str, TouchpointResponse]:
    out = {}
    for name in t:
        if name not in catalog.touchpoint_index:
            raise t.error(name, f"unknown touchpoint {name!r} (not in the catalog)")
    defaults = TouchpointResponse()
    for touchpoint in catalog.touchpoints:
        tp = t.table(touchpoint.name)
        out[touchpoint.name] = TouchpointResponse(
            relevance=tp.number("relevance", defaults.relevance, minimum=0),
            early_relevance=tp.number("early_relevance", minimum=0)
            if "early_relevance" in tp
            else None,
            early_days=tp.integer("early_days", defaults.early_days, minimum=0),
            lapsed_relevance=tp.number("lapsed_relevance", minimum=0)
            if "lapsed_relevance" in tp
            else None,
            lapsed_days=tp.integer("lapsed_days", defaults.lapsed_days, minimum=0),
            bond_boost=tp.number("bond_boost", defaults.bond_boost, minimum=0, maximum=1),
        )
        tp.reject_unknown()
    return out


def write_scenario(scenario: Scenario, path: str | Path) -> None:
    """Write a scenario as TOML that `load_scenario` reads back to an equal scenario."""
    lines = [
        f"# anstoss scenario {scenario.name!r}",
        f'name = "{scenario.name}"',
        f'catalog = "{scenario.catalog_path}"',
        f'start_date = "{scenario.start_date.isoformat()}"',
        f"arrival_days = {scenario.arrival_days}",
        f"decision_days = [{', '.join(str(d) for d in scenario.decision_days)}]",
        f"margin_rate = {scenario.margin_rate!r}",
    ]
    for title, part in (
        ("spend", scenario.spend),
        ("bond", scenario.bond),
        ("burst", scenario.burst),
        ("fatigue", scenario.fatigue),
        ("value", scenario.value),
    ):
        lines += ["", f"[{title}]"] + [f"{k} = {v!r}" for k, v in dataclasses.asdict(part).items()]
    for i, s in enumerate(scenario.segments):
        lines += ["", "[[segments]]", f'name = "{s.name}"']
        if i < len(scenario.segments) - 1:
            lines += [
                f"logit_intercept = {s.logit_intercept!r}",
                f"logit_first_basket = {s.logit_first_basket!r}",
            ]
        lines += [
            f"purchase_rate_per_year = {s.purchase_rate_per_year!r}",
            f"purchase_rate_shape = {s.purchase_rate_shape!r}",
            f"dropout_per_year = {s.dropout_per_year!r}",
            f"dropout_shape = {s.dropout_shape!r}",
            f"burst_probability = {s.burst_probability!r}",
            "response = {" + ", ".join(f"{k} = {v!r}" for k, v in s.response.items()) + "}",
        ]
    for attribute, levels in scenario.attributes.items():
        lines += ["", f"[attributes.{attribute}]"]
        lines += [
            f"{lv.name} = {{ share = {lv.share!r}, loyalty_logit = {lv.loyalty_logit!r} }}"
            for lv in levels
            if lv.name
        ]
    lines += [
        "",
        "[attributes.other]",
        f"extra_items_mean = {scenario.extra_items_mean!r}",
        f"name_known_share = {scenario.name_known_share!r}",
    ]
    for name, c in scenario.channels.items():
        lines += ["", f"[channels.{name}]"] + [
            f"{k} = {v!r}" for k, v in dataclasses.asdict(c).items()
        ]
    for name, tp in scenario.touchpoints.items():
        lines += ["", f"[touchpoints.{name}]"] + [
            f"{k} = {v!r}" for k, v in dataclasses.asdict(tp).items() if v is not None
        ]
    Path(path).write_text("\n".join(lines) + "\n")
