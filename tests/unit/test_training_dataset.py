"""Simulated and real logs read the same way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.config import load_config
from engine.decide import DecisionEngine
from engine.store import SQLiteStore
from simulator import simulate
from tests.conftest import DAY, T0, decide_batch, purchases
from training.dataset import LogNotFound, read_decision_log


def test_server_log_and_simulation_output_share_one_schema(tmp_path: Path) -> None:
    config = load_config()
    engine = DecisionEngine(config, SQLiteStore(tmp_path / "data" / "anstoss.db", config.catalog))
    engine.report_events(purchases(["a", "b"], [T0, T0], [20.0, 30.0]))
    engine.decide(decide_batch(["a", "b"], T0 + 60))
    engine.advance(T0 + 20 * DAY)
    engine.close()
    real = read_decision_log(tmp_path / "data")
    simulate(policy="chain", customers=50, days=20, seed=1).write(tmp_path / "sim")
    simulated = read_decision_log(tmp_path / "sim")
    assert list(real.decisions.columns) == list(simulated.decisions.columns)
    assert list(real.events.columns) == list(simulated.events.columns)
    for column in ("time", "window_end", "reward", "probability", "close_seq"):
        assert real.decisions[column].dtype == simulated.decisions[column].dtype, column
    assert len(real.decisions) == 2 and (real.decisions["status"] == "closed").all()
    assert len(simulated.decisions) > 50
    pd.testing.assert_frame_equal(
        real.decisions, read_decision_log(tmp_path / "data" / "anstoss.db").decisions
    )


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogNotFound, match="no decision log here"):
        read_decision_log(tmp_path)
    (tmp_path / "x.db").write_text("not a database")
    with pytest.raises(LogNotFound, match="not an anstoss decision log"):
        read_decision_log(tmp_path / "x.db")
