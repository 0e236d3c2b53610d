"""Serving throughput on loopback: unary Decide at 16 in flight, DecideStream in batches of 100,
and raw VW predictions on the same features (the ceiling the service is compared against).

The server runs as `anstoss serve` in its own process with the default experiment (chain and
bandit, 50/50), SQLite in WAL mode, every decision logged before its reply; the load generator
runs here, on the same two cores.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from engine.catalog import load_catalog
from engine.config import BanditConfig
from engine.contact import ContactPolicy
from engine.features import build_features
from engine.lifecycle import LifecycleDays
from engine.policy.vw import VWModel
from engine.requests import DecideBatch, EventBatch, EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.server.client import DecisionClient, events_message
from engine.state import CustomerStates
from engine.timeutil import DAY

T0 = 1_772_438_400  # 2026-03-02
CUSTOMERS = 20_000
IN_FLIGHT = 16


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = data_dir / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "warning", "serve", "--port", "0",
         "--data-dir", str(data_dir), "--port-file", str(port_file),
         "--replay"],  # simulated event time runs ahead of the wall clock
    )  # fmt: skip
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError("server failed to start")
        time.sleep(0.02)
    return process, int(port_file.read_text())


def _request(i: int, t: int) -> pb.DecideRequest:
    request = pb.DecideRequest(
        customer_id=f"c{i % CUSTOMERS}",
        context=pb.CustomerContext(
            acquisition_channel=("web", "app", "marketplace")[i % 3],
            first_order_category=("garden", "kitchen", "fashion", "toys")[i % 4],
            first_order_items=1 + i % 4,
            region="DE",
        ),
    )
    request.time.seconds = t
    return request


def _seed_customers(target: str) -> None:
    """First purchases (and some push consents) so states and features are realistic."""
    catalog = load_catalog()
    rng = np.random.default_rng(0)
    with DecisionClient(target) as client:
        client.wait_ready()
        for start in range(0, CUSTOMERS, 5000):
            ids = [f"c{i}" for i in range(start, start + 5000)]
            purchases = EventBatch(
                event_ids=[f"first-{c}" for c in ids],
                customer_ids=ids,
                times=T0 - rng.integers(0, 60, 5000) * DAY,
                types=np.full(5000, EventType.PURCHASE),
                values=rng.gamma(4, 15, 5000).round(2),
                channels=np.full(5000, -1),
            )
            client.report_events(events_message(purchases, catalog))


async def _unary(target: str, seconds: float) -> tuple[float, float, float, int]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        latencies: list[float] = []
        counter = 0
        stop_at = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal counter
            while time.perf_counter() < stop_at:
                i = counter
                counter += 1
                request = _request(i * 7919 + w, T0 + i)
                start = time.perf_counter()
                await stub.Decide(request)
                latencies.append(time.perf_counter() - start)

        await stub.Decide(_request(0, T0))  # warm up the channel
        began = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return (
        len(lat) / elapsed,
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        len(lat),
    )


STREAM_START = T0 + 86_400  # the stream starts a day after the unary phase
WINDOW_BATCHES = (
    11 * 24
)  # at an hour per batch, windows (10 days + 1 day lateness) close after this


def _stream(
    target: str,
    seconds: float,
    step: int,
    start: int = STREAM_START,
    warmup: int = 0,
    batch: int = 100,
) -> tuple[float, int]:
    """Batches of `batch` requests over one stream, event time moving `step` seconds per batch;
    throughput counted after `warmup` batches."""
    requests = [_request(i * 31, start + i) for i in range(batch * 50)]
    with DecisionClient(target) as client:
        stop_at = time.perf_counter() + seconds

        def batches():  # type: ignore[no-untyped-def]
            k = 0
            while time.perf_counter() < stop_at:
                chunk = requests[(k % 50) * batch : (k % 50 + 1) * batch]
                for j, r in enumerate(chunk):
                    r.time.seconds = start + k * step + j
                k += 1
                yield chunk

        began = time.perf_counter()
        received = counted = 0
        for reply in client.decide_stream(batches()):
            errors = [r.error for r in reply.results if r.HasField("error")]
            if errors:  # a benchmark of refusals would measure nothing
                raise RuntimeError(f"the server refused a request: {errors[0]}")
            received += len(reply.results)
            if received == warmup * batch:
                began = time.perf_counter()
            elif received > warmup * batch:
                counted += len(reply.results)
        elapsed = time.perf_counter() - began
    if counted == 0:
        raise RuntimeError("the stream ran too short to pass its warm-up")
    return counted / elapsed, counted


def _raw_vw(seconds: float) -> float:
    """VW predictions/s through the engine's own adapter on features like the service builds."""
    catalog = load_catalog()
    rng = np.random.default_rng(1)
    n = 2000
    states = CustomerStates.empty(
        [f"c{i}" for i in range(n)], np.full(n, T0), len(catalog.channels), len(catalog.touchpoints)
    )
    states.known[:] = True
    states.first_purchase_time[:] = T0 - rng.integers(0, 60, n) * DAY
    states.first_order_value[:] = rng.gamma(4, 15, n)
    states.purchases[:] = 1
    states.count_days(LifecycleDays())
    batch = DecideBatch(
        [f"c{i}" for i in range(n)], np.full(n, T0),
        acquisition_channel=["web"] * n, first_order_category=["garden"] * n, region=["DE"] * n,
        first_order_items=np.ones(n),
    )  # fmt: skip
    features = build_features(states, batch, catalog.occasion_lead_days)
    allowed = ContactPolicy(catalog).evaluate(states).allowed
    model = VWModel(BanditConfig(), catalog)
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        model.predict(features, allowed)
        done += n
    return done / (time.perf_counter() - began)


def run(seconds: float = 8.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        process, port = _start(Path(tmp))
        target = f"127.0.0.1:{port}"
        try:
            _seed_customers(target)
            unary, p50, p99, calls = asyncio.run(_unary(target, seconds))
            # Deciding: event time moves a second per decision, so no window closes meanwhile.
            stream, streamed = _stream(target, seconds, step=100)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    with tempfile.TemporaryDirectory() as tmp:
        # Steady state on a fresh server: an hour per batch, so after 11 days of event time
        # every batch also closes as many windows and the bandit learns their rewards.
        process, port = _start(Path(tmp))
        target = f"127.0.0.1:{port}"
        try:
            _seed_customers(target)
            learning, learned = _stream(target, seconds * 2, step=3_600, warmup=WINDOW_BATCHES)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    raw = _raw_vw(3.0)
    print(
        f"unary Decide, {IN_FLIGHT} in flight: {unary:9,.0f} decisions/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({calls:,} calls)"
    )
    print(f"DecideStream, batches of 100:   {stream:9,.0f} decisions/s  ({streamed:,} decisions)")
    print(
        f"  same, steady state with every reward closed and learned: {learning:9,.0f} decisions/s"
        f"  ({learned:,} decisions)"
    )
    print(f"raw VW predictions (same features): {raw:9,.0f} /s")
    print(f"service / raw VW: unary {unary / raw:.3f}, stream {stream / raw:.3f}")
    return {
        "decide_unary_per_s": unary,
        "decide_unary_p50_ms": p50,
        "decide_unary_p99_ms": p99,
        "decide_stream_per_s": stream,
        "decide_stream_learning_per_s": learning,
        "vw_raw_predict_per_s": raw,
        "decide_unary_to_raw_ratio": unary / raw,
        "decide_stream_to_raw_ratio": stream / raw,
    }
