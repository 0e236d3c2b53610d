"""One source of truth for defaults: the dataclasses. A key left out of a file means the
dataclass default, and the shipped files spell out exactly those defaults, so a default changed
in one place and not the other fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.config import EngineConfig, load_config
from simulator.scenario import (
    ChannelResponse,
    Scenario,
    Segment,
    TouchpointResponse,
    load_scenario,
)


def _field_default(cls: type, name: str) -> Any:
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    assert f.default is not dataclasses.MISSING, f"{cls.__name__}.{name} has no default"
    return f.default


def _differences(loaded: object, expected: object, skip: tuple[str, ...] = ()) -> list[str]:
    assert dataclasses.is_dataclass(loaded) and dataclasses.is_dataclass(expected)
    return [
        f"{f.name}: file {getattr(loaded, f.name)!r}, dataclass {getattr(expected, f.name)!r}"
        for f in dataclasses.fields(expected)
        if f.name not in skip and getattr(loaded, f.name) != getattr(expected, f.name)
    ]


# Engine config: every key of the file is optional.


def test_empty_engine_config_file_gives_the_dataclass_defaults(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("")
    assert _differences(load_config(path), EngineConfig(), skip=("source",)) == []


def test_shipped_engine_toml_spells_out_the_dataclass_defaults() -> None:
    assert _differences(load_config(), EngineConfig(), skip=("source",)) == []


def test_a_named_experiment_without_salt_is_salted_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text('[experiment]\nname = "spring"\n')
    experiment = load_config(path).experiment
    assert (experiment.name, experiment.salt) == ("spring", "spring")
    assert experiment.arms == EngineConfig().experiment.arms


# Scenario: segments, channels and touchpoints have no defaults; everything else does.

SCENARIO_DEFAULTS = [
    f.name
    for f in dataclasses.fields(Scenario)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
]


def _minimal_scenario(path: Path) -> Path:
    """Only what a scenario must say: two segments, each channel's required response keys, and
    an empty touchpoints table; every optional key is left out."""
    catalog = load_scenario().catalog
    lines = []
    for name in ("first", "rest"):
        lines += [
            "[[segments]]",
            f'name = "{name}"',
            "purchase_rate_per_year = 1.0",
            "purchase_rate_shape = 1.0",
            "dropout_per_year = 1.0",
            "dropout_shape = 1.0",
        ]
    for channel in catalog.channels:
        lines += [
            f"[channels.{channel.name}]",
            "peak_uplift = 0.1",
            "daily_decay = 0.5",
            "fatigue_weight = 1.0",
            "optout_per_touch = 0.0",
            "consent_share = 1.0",
        ]
    lines += ["[touchpoints]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_minimal_scenario_file_gives_the_dataclass_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(_minimal_scenario(tmp_path / "default.toml"))
    expected = {name: _field_default(Scenario, name) for name in SCENARIO_DEFAULTS}
    expected["source"] = scenario.source
    assert {name: getattr(scenario, name) for name in SCENARIO_DEFAULTS} == expected


def test_minimal_scenario_parts_get_their_dataclass_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(_minimal_scenario(tmp_path / "s.toml"))
    first = scenario.segments[0]
    for name in ("logit_intercept", "logit_first_basket", "response"):
        assert getattr(first, name) == _field_default(Segment, name), name
    for channel in scenario.channels.values():
        assert channel.affinity_sd == _field_default(ChannelResponse, "affinity_sd")
    assert set(scenario.touchpoints.values()) == {TouchpointResponse()}


def test_scenario_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    assert load_scenario(_minimal_scenario(tmp_path / "spring.toml")).name == "spring"


def test_shipped_default_scenario_spells_out_the_dataclass_defaults() -> None:
    scenario = load_scenario()
    expected = {name: _field_default(Scenario, name) for name in SCENARIO_DEFAULTS}
    expected["source"] = scenario.source
    assert {name: getattr(scenario, name) for name in SCENARIO_DEFAULTS} == expected
