"""Scenario files: every parameter, validated with file and key; written files read back equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from simulator.scenario import default_scenario_path, load_scenario, write_scenario

BASE = default_scenario_path().read_text()


def test_default_scenario_covers_the_catalog() -> None:
    scenario = load_scenario()
    assert [s.name for s in scenario.segments] == ["loyal_prone", "one_off"]
    assert set(scenario.channels) == {c.name for c in scenario.catalog.channels}
    assert set(scenario.touchpoints) == {t.name for t in scenario.catalog.touchpoints}
    costs = {c.name: c.cost for c in scenario.catalog.channels}
    assert costs["postcard"] == 0.60 and costs["call"] == 3.50  # the catalog is the cost source
    assert scenario.spend.gamma == pytest.approx(60 * (3.74 - 1) / 6.25)


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("peak_uplift = 0.35", "peak_uplift = -0.35"), "channels.email.peak_uplift", "expected a number >= 0"),
        (("[channels.call]", "[channels.fax]"), "channels.call", "needs a response model"),
        (("daily_decay = 0.60", "daily_decai = 0.60"), "channels.email.daily_decay", "is 'daily_decai' a typo?"),
        (("web = { share = 0.55", "web = { share = 0.45"), "attributes.acquisition_channel", "shares sum to 0.9"),
        (("response = { voucher = 0.9,", "response = { vouchers = 0.9,"), "segments[0].response.vouchers", "unknown touchpoint"),
        (('start_date = "2026-01-05"', 'start_date = "05.01.2026"'), "start_date", "expected a date"),
        (("decision_days = [0, 1, 2,", "decision_days = [1, 0, 2,"), "decision_days", "increasing"),
    ],
)  # fmt: skip
def test_bad_scenario_names_file_key_problem(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    assert change[0] in BASE, change[0]
    path = tmp_path / "scenario.toml"
    path.write_text(BASE.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as failure:
        load_scenario(path)
    message = str(failure.value)
    assert message.startswith(f"{path}: {key}"), message
    assert problem in message


def test_written_scenario_reads_back_equal(tmp_path: Path) -> None:
    scenario = load_scenario()
    write_scenario(scenario, tmp_path / "copy.toml")
    again = load_scenario(tmp_path / "copy.toml")
    assert again.replace(source="") == scenario.replace(source="")
