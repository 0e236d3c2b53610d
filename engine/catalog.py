"""The catalog: touchpoints, channels, the valid actions and their costs, contact rules, the chain.

Action 0 is always "no contact". Every other action is a (touchpoint, channel) pair declared in the
catalog file. The arrays on `Catalog` (indexed by action, channel or touchpoint) are what the
vectorised contact policy and the policies work on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from engine.errors import ConfigError
from engine.tomlconf import Table, load_toml

NO_CONTACT_KEY = "no_contact"
MAX_GAP_DAYS = 30  # contact history is kept for 30 days; a longer gap could not be checked


@dataclass(frozen=True)
class Channel:
    name: str
    cost: float
    default_consent: bool
    min_gap_days: float = 0.0
    max_per_7d: int = 0  # 0 = no cap
    max_per_30d: int = 0
    first_shipment_only: bool = False


@dataclass(frozen=True)
class Touchpoint:
    name: str
    description: str = ""
    max_per_customer: int = 0  # 0 = no limit
    min_day: int = 0
    max_day: int = -1  # -1 = no end
    requires_occasion: bool = False


@dataclass(frozen=True)
class Action:
    index: int
    touchpoint: str  # "" for no contact
    channel: str  # "" for no contact
    cost: float

    @property
    def key(self) -> str:
        return action_key(self.touchpoint, self.channel)

    @property
    def is_contact(self) -> bool:
        return self.index != 0


@dataclass(frozen=True)
class ChainStep:
    day: int
    touchpoint: str
    channels: tuple[str, ...]


def action_key(touchpoint: str, channel: str) -> str:
    """The action's stable name in logs and models: ``touchpoint@channel`` or ``no_contact``."""
    return f"{touchpoint}@{channel}" if touchpoint or channel else NO_CONTACT_KEY


@dataclass(frozen=True)
class Catalog:
    channels: tuple[Channel, ...]
    touchpoints: tuple[Touchpoint, ...]
    actions: tuple[Action, ...]
    chain: tuple[ChainStep, ...]
    max_per_7d: int = 0
    max_per_30d: int = 0
    occasion_lead_days: int = 3
    # A chain step that could not fire on its day fires at the next decision up to this many
    # lifecycle days later, never twice (engine/policy/static.py).
    chain_catch_up_days: int = 7
    source: str = "<memory>"
    _by_key: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_key.update({a.key: a.index for a in self.actions})
        ch = {c.name: i for i, c in enumerate(self.channels)}
        tp = {t.name: i for i, t in enumerate(self.touchpoints)}
        set_ = object.__setattr__
        set_(self, "channel_index", ch)
        set_(self, "touchpoint_index", tp)
        set_(self, "action_channel", np.array([ch.get(a.channel, -1) for a in self.actions]))
        set_(self, "action_touchpoint", np.array([tp.get(a.touchpoint, -1) for a in self.actions]))
        set_(self, "action_cost", np.array([a.cost for a in self.actions], dtype=np.float64))
        set_(self, "action_keys", tuple(a.key for a in self.actions))

    # Attributes set in __post_init__, declared for type checkers.
    channel_index: dict[str, int] = field(init=False, repr=False, compare=False)
    touchpoint_index: dict[str, int] = field(init=False, repr=False, compare=False)
    action_channel: np.ndarray = field(init=False, repr=False, compare=False)
    action_touchpoint: np.ndarray = field(init=False, repr=False, compare=False)
    action_cost: np.ndarray = field(init=False, repr=False, compare=False)
    action_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    def action_index(self, touchpoint: str, channel: str) -> int | None:
        """Index of a (touchpoint, channel) action, 0 for no contact, None if not in the catalog."""
        return self._by_key.get(action_key(touchpoint, channel))

    def index_of_key(self, key: str) -> int | None:
        return self._by_key.get(key)

    def chain_actions(self) -> dict[int, list[int]]:
        """Day offset -> action indices in order of channel preference."""
        out: dict[int, list[int]] = {}
        for step in self.chain:
            indices = [self._by_key[action_key(step.touchpoint, c)] for c in step.channels]
            out.setdefault(step.day, []).extend(indices)
        return out


def default_catalog_path() -> Path:
    return Path(str(resources.files("engine") / "defaults" / "catalog.toml"))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file (the shipped default when `path` is None)."""
    path = default_catalog_path() if path is None else Path(path)
    root = load_toml(path)
    return parse_catalog(root)


def load_catalog_from(reference: str, config_file: Path) -> Catalog:
    """The catalog a config file names: relative to that file, or the shipped one if empty."""
    if not reference:
        return load_catalog()
    path = Path(reference)
    return load_catalog(path if path.is_absolute() else config_file.parent / path)


def parse_catalog(root: Table) -> Catalog:
    contact = root.table("contact")
    max7 = contact.integer("max_per_7d", 0, minimum=0)
    max30 = contact.integer("max_per_30d", 0, minimum=0)
    lead = contact.integer("occasion_lead_days", 3, minimum=0, maximum=366)
    catch_up = contact.integer("chain_catch_up_days", Catalog.chain_catch_up_days, minimum=0)
    contact.reject_unknown()

    channels = []
    channel_tables = root.table("channels", required=True)
    for name in channel_tables:
        _check_name(channel_tables, name)
        t = channel_tables.table(name)
        channels.append(
            Channel(
                name=name,
                cost=t.number("cost", minimum=0),
                default_consent=t.boolean("default_consent", False),
                min_gap_days=t.number("min_gap_days", 0.0, minimum=0, maximum=MAX_GAP_DAYS),
                max_per_7d=t.integer("max_per_7d", 0, minimum=0),
                max_per_30d=t.integer("max_per_30d", 0, minimum=0),
                first_shipment_only=t.boolean("first_shipment_only", False),
            )
        )
        t.reject_unknown()
    if not channels:
        raise channel_tables.error("", "at least one channel is required")

    touchpoints = []
    tp_tables = root.table("touchpoints", required=True)
    for name in tp_tables:
        _check_name(tp_tables, name)
        t = tp_tables.table(name)
        tp = Touchpoint(
            name=name,
            description=t.string("description", ""),
            max_per_customer=t.integer("max_per_customer", 0, minimum=0),
            min_day=t.integer("min_day", 0, minimum=0),
            max_day=t.integer("max_day", -1, minimum=-1),
            requires_occasion=t.boolean("requires_occasion", False),
        )
        if tp.max_day != -1 and tp.max_day < tp.min_day:
            raise t.error("max_day", f"must be >= min_day ({tp.min_day}) or -1, got {tp.max_day}")
        touchpoints.append(tp)
        t.reject_unknown()

    channel_by_name = {c.name: c for c in channels}
    tp_names = {t.name for t in touchpoints}
    actions = [Action(0, "", "", 0.0)]
    seen: set[tuple[str, str]] = set()
    for t in root.tables("actions", required=True):
        tp_name = t.string("touchpoint")
        ch_name = t.string("channel")
        if tp_name not in tp_names:
            raise t.error("touchpoint", f"unknown touchpoint {tp_name!r}" + _known(tp_names))
        if ch_name not in channel_by_name:
            raise t.error("channel", f"unknown channel {ch_name!r}" + _known(channel_by_name))
        if (tp_name, ch_name) in seen:
            raise t.error("channel", f"action {tp_name}@{ch_name} is declared twice")
        seen.add((tp_name, ch_name))
        cost = t.number("cost", channel_by_name[ch_name].cost, minimum=0)
        actions.append(Action(len(actions), tp_name, ch_name, cost))
        t.reject_unknown()

    chain = []
    for t in root.tables("chain"):
        step = ChainStep(
            day=t.integer("day", minimum=0, maximum=3660),
            touchpoint=t.string("touchpoint"),
            channels=tuple(t.strings("channels")),
        )
        if not step.channels:
            raise t.error("channels", "at least one channel is required")
        for ch_name in step.channels:
            if (step.touchpoint, ch_name) not in seen:
                raise t.error(
                    "channels",
                    f"{step.touchpoint}@{ch_name} is not an action of the catalog",
                )
        chain.append(step)
        t.reject_unknown()
    days = [s.day for s in chain]
    if len(days) != len(set(days)):
        raise root.error("chain", "two chain steps on the same day")
    root.reject_unknown()
    return Catalog(
        channels=tuple(channels),
        touchpoints=tuple(touchpoints),
        actions=tuple(actions),
        chain=tuple(sorted(chain, key=lambda s: s.day)),
        max_per_7d=max7,
        max_per_30d=max30,
        occasion_lead_days=lead,
        chain_catch_up_days=catch_up,
        source=root.source,
    )


def _check_name(table: Table, name: str) -> None:
    if not name or "@" in name or name == NO_CONTACT_KEY or not name.isidentifier():
        raise ConfigError(
            table.source, table.key(name), "names must be identifiers without '@' (e.g. 'sms')"
        )


def _known(names: object) -> str:
    return f" (known: {', '.join(sorted(names))})"  # type: ignore[call-overload]
