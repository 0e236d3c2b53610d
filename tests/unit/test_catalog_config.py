"""Catalog and engine config: the shipped defaults, and errors that name file, key, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import default_catalog_path, load_catalog
from engine.config import default_config_path, load_config
from engine.errors import ConfigError


def test_default_catalog_covers_the_domain() -> None:
    catalog = load_catalog()
    assert catalog.actions[0].key == "no_contact" and not catalog.actions[0].is_contact
    assert {t.name for t in catalog.touchpoints} == {
        "welcome", "cross_sell", "voucher", "reminder", "occasion", "nps_survey",
    }  # fmt: skip
    costs = {c.name: c.cost for c in catalog.channels}
    assert costs == {
        "email": 0.001, "push": 0.0, "sms": 0.08, "postcard": 0.60, "call": 3.50,
        "parcel_insert": 0.05,
    }  # fmt: skip
    insert = catalog.channels[catalog.channel_index["parcel_insert"]]
    assert insert.first_shipment_only
    # The fixed chain spans twelve months and every step is a catalog action.
    days = [s.day for s in catalog.chain]
    assert days[0] == 0 and days[-1] >= 330 and days == sorted(days)
    for day, actions in catalog.chain_actions().items():
        assert all(catalog.actions[a].is_contact for a in actions), day


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


BASE = default_catalog_path().read_text()


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (('channel = "sms"', 'channel = "fax"'), "actions[10].channel", "unknown channel 'fax'"),
        (("cost = 0.08", "cost = -0.08"), "channels.sms.cost", "expected a number >= 0"),
        (("max_per_7d = 3\n", 'max_per_7d = "three"\n'), "contact.max_per_7d", "expected an integer"),
        (('touchpoint = "voucher"\nchannel = "sms"', 'touchpoint = "vouchr"\nchannel = "sms"'),
         "actions[10].touchpoint", "unknown touchpoint 'vouchr'"),
        (("[touchpoints.welcome]\n", "[touchpoints.welcome]\nmax_par_customer = 1\n"),
         "touchpoints.welcome.max_par_customer", "did you mean 'max_per_customer'"),
        (('channels = ["parcel_insert"]', 'channels = ["postcard"]'), "chain[0].channels",
         "welcome@postcard is not an action"),
    ],
)  # fmt: skip
def test_bad_catalog_names_file_key_and_problem(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    assert change[0] in BASE
    path = _write(tmp_path, BASE.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as failure:
        load_catalog(path)
    message = str(failure.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_duplicate_action_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + '\n[[actions]]\ntouchpoint = "voucher"\nchannel = "sms"\n')
    with pytest.raises(
        ConfigError, match=r"actions\[20\]\.channel: action voucher@sms is declared twice"
    ):
        load_catalog(path)


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("cost = 0.08", "cost = = 0.08"))
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line \d+"):
        load_catalog(path)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_catalog(tmp_path / "nope.toml")


def test_default_config_is_chain_vs_bandit() -> None:
    config = load_config(default_config_path())
    assert [(a.name, a.policy, a.share) for a in config.experiment.arms] == [
        ("chain", "chain", 0.5),
        ("bandit", "bandit", 0.5),
    ]
    assert config.rewards.window_days == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[experiment.arms]]\nname='a'\npolicy='chain'\nshare=0.7\n", "arm shares sum to 0.7"),
        (
            "[[experiment.arms]]\nname='a'\npolicy='greedy'\nshare=1.0\n",
            "experiment.arms[0].policy: expected one of",
        ),
        (
            "[bandit]\nexploration='squarecb'\ncb_type='ips'\n",
            "bandit.cb_type: squarecb exploration needs",
        ),
        (
            "[rewards]\nattribution_window_days=0\n",
            "rewards.attribution_window_days: expected a number > 0",
        ),
        ("[bandit]\ninteractions=['UX']\n", "bandit.interactions"),
        ("catalog = 'missing.toml'\n", "missing.toml: file not found"),
        ("[store]\nsynchronous='off'\n", "store.synchronous: expected one of normal, full"),
    ],
)
def test_bad_engine_config(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_relative_catalog_path_resolves_against_the_config(tmp_path: Path) -> None:
    (tmp_path / "cat.toml").write_text(BASE.replace("cost = 0.08", "cost = 0.09"))
    (tmp_path / "engine.toml").write_text("catalog = 'cat.toml'\n")
    config = load_config(tmp_path / "engine.toml")
    assert config.catalog.channels[config.catalog.channel_index["sms"]].cost == 0.09
