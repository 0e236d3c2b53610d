"""Acceptance 3 (simulator): in-process and via-gRPC runs of the same policy, scenario and seed
give the same outcomes. The gRPC run plays the channel systems against a real server on a
loopback port (DecideStream for decisions, ReportEvents for what customers do)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.config import load_config
from engine.decide import DecisionEngine
from engine.server.app import start_server
from engine.store import SQLiteStore
from simulator import simulate
from simulator.link import SimulationError

CLIENT_VISIBLE = [
    "time", "customer_id", "experiment", "arm", "policy", "model_version", "action",
    "touchpoint", "channel", "probability", "cost", "eligible", "probabilities", "removed",
    "window_end",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["chain", "random", "bandit"])
def test_in_process_and_via_grpc_give_the_same_outcomes(tmp_path: Path, policy: str) -> None:
    config = load_config().with_single_arm(policy).replace(checkpoint_every=50)
    engine = DecisionEngine(config, SQLiteStore(tmp_path / "server.db", config.catalog))
    running = start_server(engine, port=0)
    try:
        remote = simulate(
            policy=policy, customers=400, days=60, seed=11, via=f"127.0.0.1:{running.port}"
        )
        server_log = engine.store.decisions_frame()
    finally:
        running.stop(grace=1)
    local = simulate(policy=policy, customers=400, days=60, seed=11, config=config)

    pd.testing.assert_frame_equal(local.customers, remote.customers)
    pd.testing.assert_frame_equal(local.events, remote.events)
    ours = local.decisions[CLIENT_VISIBLE].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, remote.decisions[CLIENT_VISIBLE].reset_index(drop=True))
    # The server's own log has what the channel system never sees; it matches the
    # in-process log too, rewards included.
    full = [
        "status",
        "attributed_value",
        "attributed_purchases",
        "unsubscribes",
        "reward",
        "features",
    ]
    pd.testing.assert_frame_equal(
        local.decisions[full].reset_index(drop=True), server_log[full].reset_index(drop=True)
    )
    assert local.summary["contacts_per_customer"] > 1
    if policy == "bandit":
        assert (server_log["status"] == "closed").sum() > 500  # it learned along the way
        assert server_log["model_version"].iloc[-1] != "init+0"


def test_oracle_refuses_to_run_via_grpc() -> None:
    with pytest.raises(SimulationError, match="in-process only"):
        simulate(policy="oracle", customers=10, days=5, via="127.0.0.1:1")


def test_policy_must_match_the_server(tmp_path: Path) -> None:
    config = load_config()  # chain and bandit arms
    engine = DecisionEngine(config, SQLiteStore(tmp_path / "s.db", config.catalog))
    running = start_server(engine, port=0)
    try:
        with pytest.raises(
            SimulationError, match="runs arms chain \\(chain\\), bandit \\(bandit\\)"
        ):
            simulate(policy="chain", customers=10, days=5, via=f"127.0.0.1:{running.port}")
        both = simulate(
            policy="experiment", customers=300, days=20, seed=2, via=f"127.0.0.1:{running.port}"
        )
    finally:
        running.stop(grace=1)
    assert set(both.summary["arms"]) == {"chain", "bandit"}
