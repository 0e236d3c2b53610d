"""Shared fixtures: small explicit worlds, real SQLite files, real gRPC servers on loopback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import Catalog, load_catalog
from engine.config import EngineConfig, load_config
from engine.decide import DecisionEngine
from engine.requests import DecideBatch, EventBatch, EventType
from engine.server.app import RunningServer, start_server
from engine.server.client import DecisionClient
from engine.store.sqlite import SQLiteStore
from engine.timeutil import DAY, to_seconds

T0 = to_seconds(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def config() -> EngineConfig:
    return load_config()


EngineFactory = Callable[..., DecisionEngine]


@pytest.fixture
def make_engine(tmp_path: Path, config: EngineConfig) -> Iterator[EngineFactory]:
    """Engines on real SQLite files in tmp_path; `policy=` gives a single-arm experiment."""
    engines: list[DecisionEngine] = []

    def factory(
        policy: str | None = None, name: str = "anstoss.db", **changes: object
    ) -> DecisionEngine:
        cfg = config if policy is None else config.with_single_arm(policy)
        if changes:
            cfg = cfg.replace(**changes)
        engine = DecisionEngine(cfg, SQLiteStore(tmp_path / name, cfg.catalog))
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        with contextlib.suppress(Exception):  # already closed by the test
            engine.close()


@pytest.fixture
def server(make_engine: EngineFactory) -> Iterator[RunningServer]:
    """A real gRPC server on a loopback port over the default experiment."""
    running = start_server(make_engine(), port=0)
    yield running
    running.server.stop(0).wait()
    running.servicer.close()
    running.catch_up.stop()


class Clock:
    """A wall clock a test sets: what the live-mode time guard compares request times with."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Served = tuple[RunningServer, DecisionClient]
ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(make_engine: EngineFactory) -> Iterator[ServeFactory]:
    """Servers on loopback with a chosen engine, clock (a `Clock`) and config changes:
    ``serve(policy="bandit", clock=Clock(T0), time=TimeConfig(mode="replay"))``."""
    started: list[Served] = []

    def factory(
        engine: DecisionEngine | None = None,
        clock: Callable[[], float] | None = None,
        workers: int = 32,
        **changes: object,
    ) -> Served:
        policy = changes.pop("policy", None)
        engine = engine or make_engine(policy, **changes)
        running = start_server(engine, port=0, workers=workers, clock=clock or time.time)
        client = DecisionClient(f"127.0.0.1:{running.port}", timeout=10)
        client.wait_ready(10)
        started.append((running, client))
        return running, client

    yield factory
    for running, client in started:
        client.close()
        running.server.stop(0).wait(5)
        running.servicer.close()
        running.catch_up.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[DecisionClient]:
    with DecisionClient(f"127.0.0.1:{server.port}", timeout=10) as c:
        c.wait_ready(10)
        yield c


def purchases(customers: list[str], times: list[int], values: list[float]) -> EventBatch:
    n = len(customers)
    return EventBatch(
        event_ids=[f"order-{c}-{t}" for c, t in zip(customers, times, strict=True)],
        customer_ids=customers,
        times=np.array(times),
        types=np.full(n, EventType.PURCHASE),
        values=np.array(values),
        channels=np.full(n, -1),
    )


def channel_events(
    catalog: Catalog, customers: list[str], times: list[int], kind: EventType, channels: list[str]
) -> EventBatch:
    n = len(customers)
    return EventBatch(
        event_ids=[],
        customer_ids=customers,
        times=np.array(times),
        types=np.full(n, kind),
        values=np.zeros(n),
        channels=np.array([catalog.channel_index[c] for c in channels]),
    )


def decide_batch(customers: list[str], time: int) -> DecideBatch:
    return DecideBatch(customer_ids=customers, times=np.full(len(customers), time))


__all__ = ["DAY", "T0", "Clock", "channel_events", "decide_batch", "purchases"]
