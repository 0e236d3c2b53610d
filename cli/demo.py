"""`make demo`: start `anstoss serve` and play a short scripted channel-system session.

Ten new customers make their first purchase; the channel systems ask what to send on the days
of a new customer's first weeks, report purchases and an unsubscribe, and finally let event time
pass the attribution windows, so rewards close and the bandit learns. Everything goes through
the public gRPC contract of a real server process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli.usage import UsageError, output_dir
from engine.config import load_config
from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CUSTOMERS = [
    # id, first order value, acquisition, category, items, consents beyond the defaults
    ("anna", 184.0, "web", "garden", 4, ["push", "sms"]),
    ("ben", 22.5, "marketplace", "kitchen", 1, []),
    ("carla", 61.0, "app", "fashion", 2, ["push"]),
    ("deniz", 95.0, "web", "kitchen", 3, ["call"]),
    ("emil", 38.0, "store", "garden", 1, []),
    ("frieda", 240.0, "web", "fashion", 6, ["push", "sms", "call"]),
    ("gustav", 15.0, "marketplace", "toys", 1, []),
    ("hanna", 72.0, "app", "toys", 2, ["push"]),
    ("ilias", 49.0, "web", "kitchen", 2, []),
    ("jana", 130.0, "web", "garden", 3, ["sms"]),
]
ASK_DAYS = [0, 1, 3, 7]
# What customers do between the asking days: (day, hour, customer, event, value or channel).
HAPPENINGS = [
    (2, 5, "anna", EventType.PURCHASE, 96.0),
    (3, 3, "ben", EventType.UNSUBSCRIBED, "email"),
    (4, 6, "hanna", EventType.PURCHASE, 44.0),
    (5, 2, "frieda", EventType.PURCHASE, 310.0),
]


def _start_server(out: Path, config: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port_file = out / "port"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "cli.main", "--log-level", "warning", "serve", "--port", "0"]
    command += ["--data-dir", str(out / "data"), "--port-file", str(port_file)]
    if config:
        command += ["--config", config]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"anstoss serve exited with {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("anstoss serve did not start within 60 s")
        time.sleep(0.05)
    return process, int(port_file.read_text())


def _action(decision: pb.Decision) -> str:
    if decision.no_contact:
        return "no contact"
    return f"{decision.action.touchpoint} via {decision.action.channel}"


def run_demo(out: Path, config: str | None = None) -> int:
    if config:
        load_config(config)  # a bad file is named here, not by a server that exits
    output_dir(out, "--out")
    data = out / "data"
    if data.is_dir() and not data.is_symlink():
        shutil.rmtree(data)  # a fresh log each run, so the numbers below are this run's
    elif data.exists() or data.is_symlink():
        raise UsageError(
            f"--out {out}: {data} is not a directory (the demo replaces only a directory there)"
        )
    process, port = _start_server(out, config)
    print(f"anstoss serve is up on 127.0.0.1:{port} (pid {process.pid}, data in {out / 'data'})\n")
    try:
        with DecisionClient(f"127.0.0.1:{port}") as client:
            client.wait_ready()
            catalog = client.catalog()
            arms = ", ".join(f"{a.name} ({a.policy}, {a.share:.0%})" for a in catalog.arms)
            print(f"experiment {catalog.experiment}: {arms}")
            print(
                f"catalog: {len(catalog.actions) - 1} actions over {len(catalog.channels)} channels\n"
            )
            decisions = _play(client)
            _close_windows(client, decisions)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"\nserver stopped; decision log: {out / 'data' / 'anstoss.db'}")
    return 0


def _play(client: DecisionClient) -> list[tuple[str, int, pb.Decision]]:
    for cid, value, *_rest, consents in CUSTOMERS:
        client.event(cid, START, EventType.PURCHASE, value=value, event_id=f"order-{cid}-1")
        for channel in consents:
            client.event(cid, START, EventType.CONSENT_GRANTED, channel=channel)
    print(f"{'day':>3}  {'customer':<8} {'arm':<7} {'decision':<28} {'p':>5}  eligible  removed")
    decisions = []
    for n, day in enumerate(ASK_DAYS):
        next_day = ASK_DAYS[n + 1] if n + 1 < len(ASK_DAYS) else day + 7
        when = START + timedelta(days=day, hours=1)
        for cid, _value, acquisition, category, items, _consents in CUSTOMERS:
            context = pb.CustomerContext(
                acquisition_channel=acquisition,
                first_order_category=category,
                first_order_items=items,
            )
            if cid == "carla" and day == 3:
                context.days_to_occasion = 1  # her name day is coming up
            d = client.decide(cid, when, context)
            decisions.append((cid, day, d))
            print(
                f"{day:>3}  {cid:<8} {d.arm:<7} {_action(d):<28} {d.probability:5.2f}"
                f"  {len(d.eligible):>8}  {len(d.removed):>7}"
            )
        # Events go out in event-time order: what happened before the next asking day.
        for event_day, hour, cid, kind, detail in HAPPENINGS:
            if day <= event_day < next_day:
                when = START + timedelta(days=event_day, hours=hour)
                if kind == EventType.PURCHASE:
                    client.event(cid, when, kind, value=float(detail), event_id=f"order-{cid}-2")
                else:
                    client.event(cid, when, kind, channel=str(detail))
    return decisions


def _close_windows(client: DecisionClient, decisions: list[tuple[str, int, pb.Decision]]) -> None:
    # A purchase long after the windows moves event time on: every window closes.
    later = START + timedelta(days=20)
    client.event("gustav", later, EventType.PURCHASE, value=19.0, event_id="order-gustav-2")
    closed = learned = 0
    total = 0.0
    print(f"\nrewards after the attribution windows closed ({len(decisions)} decisions):")
    for cid, day, d in decisions:
        state = client.get_decision(d.decision_id)
        if state.status == pb.DECISION_STATUS_CLOSED:
            closed += 1
            total += state.reward
        learned += state.learned
        if state.attributed_purchases or state.unsubscribes:
            print(
                f"  {cid:<8} day {day}: {_action(d):<28} attributed {state.attributed_value:7.2f} EUR,"
                f" unsubscribes {state.unsubscribes}, reward {state.reward:+.2f}"
            )
    print(f"closed {closed}, total reward {total:+.2f} EUR, online updates learned {learned}")
    versions = ", ".join(f"{a.name}={a.model_version}" for a in client.catalog().arms)
    print(f"model versions now: {versions}")


if __name__ == "__main__":
    sys.exit(run_demo(Path(os.environ.get("ANSTOSS_DEMO_OUT", "demo-output"))))
