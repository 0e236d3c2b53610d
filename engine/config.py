"""Engine configuration: frozen dataclasses read from TOML, validated with file-and-key errors."""

from __future__ import annotations

import dataclasses
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from engine.catalog import Catalog, load_catalog, load_catalog_from
from engine.errors import ConfigError
from engine.experiment import POLICY_KINDS, Arm, Experiment
from engine.rewards import RewardRule
from engine.tomlconf import Table, load_toml

EXPLORATIONS = ("epsilon", "squarecb")
TIME_MODES = ("live", "replay")
LIFECYCLE_DAYS = ("calendar", "elapsed")


@dataclass(frozen=True)
class BanditConfig:
    exploration: str = "epsilon"
    epsilon: float = 0.1
    squarecb_gamma_scale: float = 10.0
    cb_type: str = "mtr"
    learning_rate: float = 0.5
    power_t: float = 0.0
    interactions: tuple[str, ...] = ("UA",)
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Sizes, magnitudes and concurrency a caller may use; every one is checked at the edge."""

    max_batch: int = 1000
    max_events: int = 10000
    max_id_length: int = 128
    max_features: int = 64
    max_feature_name_length: int = 64
    max_feature_value_length: int = 128
    max_candidates: int = 256
    max_message_bytes: int = 4 * 1024 * 1024
    # Magnitudes: whatever enters the state stays finite, and one value cannot swamp the model.
    max_value: float = 1_000_000.0  # a purchase value or a reported value
    max_abs_reward: float = 10_000.0  # a reported reward
    max_abs_feature: float = 1_000_000.0  # an extra numeric context feature
    # Fair sharing: a stream holds a worker thread while open, so streams are capped in total
    # and per connection, and end when idle; calls beyond the caps answer UNAVAILABLE.
    max_streams: int = 16
    max_streams_per_connection: int = 4
    max_calls_per_connection: int = 24
    stream_idle_seconds: float = 30.0
    # gRPC's own cap on calls open at once (running or queued); beyond it gRPC answers
    # RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded" before any handler runs.
    max_concurrent_rpcs: int = 1024


@dataclass(frozen=True)
class TimeConfig:
    """How far a request's event time is trusted (see engine/timeguard.py)."""

    # "live": times may lie at most max_ahead_seconds after the server's wall clock, so no
    # client can move event time ahead and close attribution windows early. "replay": times
    # move freely (simulations through gRPC, backfills of history).
    mode: str = "live"
    max_ahead_seconds: float = 600.0
    # Times before this are refused: a Timestamp left unset reads as 1970-01-01.
    earliest: int = 946_684_800  # 2000-01-01T00:00:00Z
    # The shop's IANA time zone and how "day N after the first purchase" is counted: calendar
    # days in that zone (what marketing means), or elapsed 24-hour periods.
    zone: str = "Europe/Berlin"
    lifecycle_days: str = "calendar"


@dataclass(frozen=True)
class EngineConfig:
    catalog: Catalog = field(default_factory=load_catalog)
    experiment: Experiment = field(
        default_factory=lambda: Experiment(
            "chain-vs-bandit",
            "anstoss-2026",
            (Arm("chain", "chain", 0.5), Arm("bandit", "bandit", 0.5)),
        )
    )
    bandit: BanditConfig = field(default_factory=BanditConfig)
    rewards: RewardRule = field(default_factory=RewardRule)
    limits: Limits = field(default_factory=Limits)
    time: TimeConfig = field(default_factory=TimeConfig)
    seed: int = 20261124
    checkpoint_every: int = 500
    # The server closes (and learns) at most this many due decisions in one call; a background
    # thread closes the rest between calls, so a pause in traffic followed by a request never
    # makes one call close a night's worth of windows. 0: every due decision at once (what
    # the in-process simulator does).
    closes_per_call: int = 1000
    synchronous: str = "normal"
    source: str = "<defaults>"

    def with_single_arm(self, policy: str) -> EngineConfig:
        """The same configuration with one arm that gets all traffic (e.g. for a simulation)."""
        return dataclasses.replace(self, experiment=Experiment.single(policy))

    def replace(self, **changes: object) -> EngineConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def default_config_path() -> Path:
    return Path(str(resources.files("engine") / "defaults" / "engine.toml"))


def load_config(
    path: str | Path | None = None, policy_kinds: tuple[str, ...] = POLICY_KINDS
) -> EngineConfig:
    """Load an engine config (the shipped default when `path` is None)."""
    path = default_config_path() if path is None else Path(path)
    root = load_toml(path)
    catalog_path = root.string("catalog", "")
    catalog = load_catalog_from(catalog_path, path)
    seed = root.integer("seed", EngineConfig.seed, minimum=0)
    experiment = _experiment(root.table("experiment"), policy_kinds)
    bandit = _bandit(root.table("bandit"))
    rewards = _rewards(root.table("rewards"))
    learning = root.table("learning")
    checkpoint_every = learning.integer(
        "checkpoint_every", EngineConfig.checkpoint_every, minimum=1
    )
    closes_per_call = learning.integer("closes_per_call", EngineConfig.closes_per_call, minimum=0)
    learning.reject_unknown()
    store = root.table("store")
    synchronous = store.string("synchronous", EngineConfig.synchronous, choices=("normal", "full"))
    store.reject_unknown()
    limits = _limits(root.table("limits"))
    time = _time(root.table("time"))
    root.reject_unknown()
    return EngineConfig(
        catalog=catalog,
        experiment=experiment,
        bandit=bandit,
        rewards=rewards,
        limits=limits,
        time=time,
        seed=seed,
        checkpoint_every=checkpoint_every,
        closes_per_call=closes_per_call,
        synchronous=synchronous,
        source=str(path),
    )


def _field_default(cls: type, name: str) -> Any:
    """The default of a dataclass field, also when it comes from a factory."""
    (f,) = (f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _experiment(t: Table, kinds: tuple[str, ...]) -> Experiment:
    defaults: Experiment = _field_default(EngineConfig, "experiment")
    name = t.string("name", defaults.name)
    # A new experiment is salted with its name, so renaming one reshuffles its customers; the
    # default experiment keeps its own salt.
    salt = t.string("salt", defaults.salt if name == defaults.name else name)
    arms = []
    for a in t.tables("arms"):
        arms.append(
            Arm(
                name=a.string("name"),
                policy=a.string("policy", choices=kinds),
                share=a.number("share", minimum=0, maximum=1),
            )
        )
        a.reject_unknown()
    t.reject_unknown()
    if not arms:
        arms = list(defaults.arms)
    try:
        return Experiment(name, salt, tuple(arms))
    except ValueError as exc:
        raise t.error("arms", str(exc)) from None


def _bandit(t: Table) -> BanditConfig:
    defaults = BanditConfig()
    cfg = BanditConfig(
        exploration=t.string("exploration", defaults.exploration, choices=EXPLORATIONS),
        epsilon=t.number("epsilon", defaults.epsilon, minimum=0, maximum=1),
        squarecb_gamma_scale=t.number(
            "squarecb_gamma_scale",
            defaults.squarecb_gamma_scale,
            minimum=0,
            exclusive_minimum=True,
        ),
        cb_type=t.string("cb_type", defaults.cb_type, choices=("mtr", "ips", "dr", "dm")),
        learning_rate=t.number(
            "learning_rate", defaults.learning_rate, minimum=0, exclusive_minimum=True
        ),
        power_t=t.number("power_t", defaults.power_t, minimum=0, maximum=1),
        interactions=tuple(t.strings("interactions", list(defaults.interactions))),
        extra_args=tuple(t.strings("extra_args", list(defaults.extra_args))),
    )
    for pair in cfg.interactions:
        if len(pair) != 2 or not set(pair) <= {"U", "A"}:
            raise t.error(
                "interactions", f"expected pairs of namespaces U, A such as 'UA'; got {pair!r}"
            )
    if cfg.exploration == "squarecb" and cfg.cb_type != "mtr":
        raise t.error("cb_type", 'squarecb exploration needs cb_type = "mtr"')
    t.reject_unknown()
    return cfg


def _rewards(t: Table) -> RewardRule:
    defaults = RewardRule()
    rule = RewardRule(
        window_days=t.number(
            "attribution_window_days", defaults.window_days, minimum=0, exclusive_minimum=True
        ),
        lateness_hours=t.number("allowed_lateness_hours", defaults.lateness_hours, minimum=0),
        margin_rate=t.number("margin_rate", defaults.margin_rate, minimum=0, maximum=1),
        no_outcome_reward=t.number("no_outcome_reward", defaults.no_outcome_reward),
        unsubscribe_penalty=t.number(
            "unsubscribe_penalty", defaults.unsubscribe_penalty, minimum=0
        ),
    )
    t.reject_unknown()
    return rule


def _limits(t: Table) -> Limits:
    defaults = Limits()
    values: dict[str, int | float] = {}
    for f in dataclasses.fields(Limits):
        default = getattr(defaults, f.name)
        if isinstance(default, float):
            values[f.name] = t.number(f.name, default, minimum=0, exclusive_minimum=True)
        else:
            values[f.name] = t.integer(f.name, default, minimum=1)
    t.reject_unknown()
    limits = Limits(**values)  # type: ignore[arg-type]
    if limits.max_streams_per_connection > limits.max_streams:
        raise t.error(
            "max_streams_per_connection",
            f"{limits.max_streams_per_connection} is more than max_streams ({limits.max_streams})",
        )
    return limits


def _time(t: Table) -> TimeConfig:
    defaults = TimeConfig()
    config = TimeConfig(
        mode=t.string("mode", defaults.mode, choices=TIME_MODES),
        max_ahead_seconds=t.number("max_ahead_seconds", defaults.max_ahead_seconds, minimum=0),
        earliest=t.timestamp("earliest", defaults.earliest),
        zone=t.string("zone", defaults.zone),
        lifecycle_days=t.string("lifecycle_days", defaults.lifecycle_days, choices=LIFECYCLE_DAYS),
    )
    try:
        zoneinfo.ZoneInfo(config.zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise t.error(
            "zone",
            f"unknown time zone {config.zone!r} (an IANA name such as 'Europe/Berlin' or 'UTC')",
        ) from None
    if config.earliest <= 0:  # the stores use -1 for "never"
        raise t.error("earliest", "expected a time after 1970-01-01T00:00:00Z")
    t.reject_unknown()
    return config


__all__ = ["BanditConfig", "ConfigError", "EngineConfig", "Limits", "TimeConfig", "load_config"]
