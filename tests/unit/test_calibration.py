"""Acceptance 2 (simulator): calibration on a synthetic log generated from known parameters
recovers them, and the simulated holdout is within 10 % of the actual one."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from simulator.calibrate import calibrate, fitted_scenario, simulate_transactions
from simulator.scenario import Bond, Burst, Segment, Spend, load_scenario

TRUTH = {"r": 0.9, "alpha": 60.0, "s": 0.8, "beta": 400.0, "burst_probability": 0.5, "burst_tau": 3.0,
         "spend_p": 6.25, "spend_q": 3.74}  # fmt: skip
START = date(2025, 1, 6)


def known_scenario():  # type: ignore[no-untyped-def]
    base = load_scenario()
    segment = Segment(
        name="truth",
        purchase_rate_per_year=365 * TRUTH["r"] / TRUTH["alpha"],
        purchase_rate_shape=TRUTH["r"],
        dropout_per_year=365 * TRUTH["s"] / TRUTH["beta"],
        dropout_shape=TRUTH["s"],
        burst_probability=TRUTH["burst_probability"],
    )
    return base.replace(
        segments=(segment,),
        burst=Burst(tau=TRUTH["burst_tau"], days=14),
        spend=Spend(p=TRUTH["spend_p"], q=TRUTH["spend_q"], mean_order_value=60.0),
        bond=Bond(rate_gain=0.0, dropout_gain=0.0),
    )


def write_log(path: Path, customers: int, weeks: int, seed: int) -> None:
    """A purchase log as real systems write them: whitespace-separated, YYYYMMDD dates, CRLF
    line ends, an extra column, no header."""
    rng = np.random.default_rng(seed)
    arrival = rng.integers(0, 12 * 7, customers)
    purchases = simulate_transactions(known_scenario(), arrival, weeks * 7 - 1, seed)
    dates = [(START + timedelta(days=int(d))).strftime("%Y%m%d") for d in purchases["day"]]
    lines = [
        f"C{c:06d}  {d}  STORE-{c % 7}  {a:.2f}"
        for c, d, a in zip(purchases["customer"], dates, purchases["amount"], strict=True)
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    directory = tmp_path_factory.mktemp("calibration")
    write_log(directory / "purchases.txt", customers=24_000, weeks=78, seed=20261124)
    return calibrate(
        directory / "purchases.txt",
        calibration_weeks=39,
        columns="customer=1,date=2,amount=4",
        seed=1,
        out=directory / "out",
    )


@pytest.mark.slow
def test_fit_recovers_the_known_parameters(report: dict) -> None:  # type: ignore[type-arg]
    fit, se = report["fit"], report["standard_errors"]
    for name, truth in TRUTH.items():
        estimate, error = fit[name], se.get(name)
        assert error is not None and error > 0, name
        # |log(estimate / truth)| within 4 standard errors of the log estimate
        assert abs(math.log(estimate / truth)) <= 4 * error / estimate, (
            name,
            estimate,
            truth,
            error,
        )


@pytest.mark.slow
def test_holdout_is_within_ten_percent(report: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    assert report["holdout_repeat_actual"] > 5000
    assert abs(report["holdout_total_rel_error"]) < 0.10
    assert abs(report["cumulative_end_rel_error"]) < 0.10
    written = json.loads(Path(report["files"][1]).read_text())
    for key in ("holdout_repeat_actual", "holdout_repeat_simulated", "holdout_total_rel_error",
                "cumulative_end_rel_error", "weekly"):  # fmt: skip
        assert key in written
    assert sum(w["holdout"] for w in written["weekly"]) == 39
    fitted = load_scenario(report["files"][0])
    assert fitted.segments[0].purchase_rate_shape == pytest.approx(report["fit"]["r"])


def test_fitted_scenario_turns_the_bond_off_and_keeps_the_rest() -> None:
    from simulator.btyd import PurchaseModelFit

    fit = PurchaseModelFit(
        0.9, 60.0, 0.8, 400.0, 0.5, 0.2, 3.0, 6.25, 3.74, 26.3, {}, 10, 0, 0, 0, 14, 14
    )
    base = load_scenario()
    scenario = fitted_scenario(fit, base, "x")
    assert len(scenario.segments) == 1
    assert scenario.bond.rate_gain == 0 and scenario.bond.dropout_gain == 0
    assert scenario.channels == base.channels
    assert scenario.segments[0].purchase_rate_per_year == pytest.approx(365 * 0.9 / 60)
