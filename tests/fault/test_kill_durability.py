"""Acceptance 4: a server killed with SIGKILL loses no acknowledged decision or outcome, and no
reward is learned twice after the restart."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient, timestamp
from tests.conftest import T0
from tests.fault.serve_process import start_serve

pytestmark = pytest.mark.slow


def start(data_dir: Path, port_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    return start_serve(data_dir, port_file, timeout=30)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_sigkill_loses_no_acknowledged_decision_or_outcome(data_dir: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process, port = start(data_dir, port_file)
    acknowledged: list[str] = []
    rewarded: dict[str, float] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def unary(worker: int) -> None:
        with DecisionClient(f"127.0.0.1:{port}", timeout=5) as client:
            i = 0
            while not stop.is_set():
                try:
                    d = client.decide(f"u{worker}-{i % 40}", T0 + i * 600)
                    acknowledged.append(d.decision_id)
                    if i % 5 == 0:
                        client.outcome(d.decision_id, T0 + i * 600, reward=float(i % 7))
                        rewarded[d.decision_id] = float(i % 7)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        errors.append(exc)
                    return  # the server died under us: whatever was acknowledged counts
                i += 1

    def stream() -> None:
        with DecisionClient(f"127.0.0.1:{port}", timeout=5) as client:

            def batches() -> Iterator[list[pb.DecideRequest]]:
                j = 0
                while not stop.is_set():
                    yield [
                        pb.DecideRequest(
                            customer_id=f"s{(j * 50 + k) % 500}", time=timestamp(T0 + j * 600)
                        )
                        for k in range(50)
                    ]
                    j += 1

            try:
                for reply in client.decide_stream(batches()):
                    acknowledged.extend(r.decision.decision_id for r in reply.results)
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    errors.append(exc)

    threads = [threading.Thread(target=unary, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=stream))
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while (len(acknowledged) < 1500 or len(rewarded) < 60) and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-flight: clients are still sending
        process.wait(timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors
    assert len(acknowledged) >= 1500
    assert len(rewarded) >= 60

    process, port = start(data_dir, port_file)
    try:
        with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_ready()
            for decision_id in acknowledged[:: max(1, len(acknowledged) // 300)]:
                assert client.get_decision(decision_id).decision.decision_id == decision_id
            for decision_id, reward in list(rewarded.items())[:100]:
                state = client.get_decision(decision_id)
                assert state.status == pb.DECISION_STATUS_CLOSED
                assert state.reward == reward
                assert state.learned == (state.decision.arm == "bandit")
            bandit_version = {a.name: a.model_version for a in client.catalog().arms}["bandit"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    with sqlite3.connect(data_dir / "anstoss.db") as db:
        logged = {row[0] for row in db.execute("SELECT decision_id FROM decisions")}
        closed_bandit = db.execute(
            "SELECT count(*) FROM decisions WHERE arm = 'bandit' AND close_seq IS NOT NULL"
        ).fetchone()[0]
    missing = [d for d in acknowledged if d not in logged]
    assert missing == [], f"{len(missing)} acknowledged decisions lost"
    # Every closed bandit reward was learned exactly once, across the kill and the restart.
    assert bandit_version.endswith(f"+{closed_bandit}"), (bandit_version, closed_bandit)
