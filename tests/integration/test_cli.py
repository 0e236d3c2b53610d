"""The `anstoss` command: help texts, `serve` as a process, clear errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.server.client import DecisionClient
from tests.conftest import T0

ANSTOSS = [sys.executable, "-m", "cli.main"]


def test_help_lists_the_commands() -> None:
    out = subprocess.run([*ANSTOSS, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "demo"):
        assert command in out
    serve = subprocess.run(
        [*ANSTOSS, "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--port", "--data-dir", "--config", "--model"):
        assert option in serve


def test_serve_runs_until_sigterm_and_checkpoints(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            *ANSTOSS,
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with DecisionClient(f"127.0.0.1:{port_file.read_text()}") as client:
            client.wait_ready()
            assert client.decide("c", T0).decision_id
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "serving on 127.0.0.1" in out
    assert (tmp_path / "d" / "anstoss.db").exists()


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[bandit]\nepsilon = 2\n")
    result = subprocess.run(
        [*ANSTOSS, "serve", "--config", str(config), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{config}: bandit.epsilon: expected a number <= 1, got 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_model_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ANSTOSS, "serve", "--model", str(tmp_path / "missing.vw"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "missing.vw: cannot read model" in result.stderr


def test_simulate_writes_summary_and_tables(tmp_path: Path) -> None:
    import json

    import pandas as pd

    result = subprocess.run(
        [*ANSTOSS, "simulate", "--policy", "random", "--customers", "300", "--days", "40",
         "--seed", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "net value per customer" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("second_purchase_rate_10d", "share_of_second_purchases_within_10d",
                "net_value_per_customer", "contacts_per_customer", "disversion_rate"):  # fmt: skip
        assert isinstance(summary[key], float), key
    decisions = pd.read_parquet(tmp_path / "decisions.parquet")
    assert list(decisions.columns)[:3] == ["decision_id", "seq", "time"]
    assert len(pd.read_parquet(tmp_path / "customers.parquet")) == 300


def test_simulate_with_a_bad_scenario_is_a_clear_error(tmp_path: Path) -> None:
    from simulator.scenario import default_scenario_path

    bad = tmp_path / "s.toml"
    bad.write_text(default_scenario_path().read_text().replace('name = "default"', "name = 3"))
    result = subprocess.run(
        [*ANSTOSS, "simulate", "--scenario", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert f"{bad}: name: expected a string" in result.stderr


def test_calibrate_prints_the_holdout_and_writes_files(tmp_path: Path) -> None:
    import json

    from tests.unit.test_calibration import write_log

    write_log(tmp_path / "purchases.txt", customers=3000, weeks=40, seed=5)
    result = subprocess.run(
        [*ANSTOSS, "simulate", "calibrate", "--transactions", str(tmp_path / "purchases.txt"),
         "--calibration-weeks", "20", "--columns", "customer=1,date=2,amount=4",
         "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "holdout repeat purchases: actual" in result.stdout
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert report["holdout_weeks"] == 20
    assert (tmp_path / "out" / "scenario.toml").exists()


def test_calibrate_reports_malformed_rows_with_line_numbers(tmp_path: Path) -> None:
    log = tmp_path / "bad.csv"
    log.write_text("customer,date,amount\nc1,2026-01-05,10\nc1,2026-01-07,abc\n")
    result = subprocess.run(
        [*ANSTOSS, "simulate", "calibrate", "--transactions", str(log), "--calibration-weeks", "1",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{log}:3: amount 'abc' is not a number" in result.stderr
    assert "--skip-bad-rows" in result.stderr
