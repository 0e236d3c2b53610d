"""SIGKILL in the middle of bursts: decision streams, event batches, reward bursts and one call
that closes thousands of attribution windows at once. After a restart on the same data dir, no
acknowledged decision, event or reward is lost, none is applied twice, nothing unacknowledged
is invented, an unacknowledged ReportEvents or DecideStream batch is all or nothing (one
transaction), and the bandit has learned every closed reward exactly
once (its version ends with ``+<closed bandit decisions>``).

Every request time is a fixed offset from a base 45 days before the wall clock, never in the
future: a server in live mode accepts them.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from engine.config import load_config
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient, timestamp
from tests.fault.serve_process import start_serve

pytestmark = pytest.mark.slow

DAY = 86_400
HOUR = 3_600
GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)  # what a killed server answers
OPEN, CLOSED = 1, 2
PURCHASE = pb.EVENT_TYPE_PURCHASE


def base_time() -> int:
    """Every test's times are fixed offsets from here: at least 32 days before the wall clock."""
    return int(time.time()) - 45 * DAY


def start(
    data_dir: Path, port_file: Path, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    return start_serve(data_dir, port_file, stderr=log)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Servers a test started; whatever is still running when it ends is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            kill(process)


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the store read-only (also while a server runs on it: WAL readers do not block)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


def settled_version(client: DecisionClient, arm: str, updates: int, timeout: float = 30) -> str:
    """The arm's model version once it shows `updates` (a restarted server replays what closed
    after its last checkpoint, perhaps in the background), or the last one seen at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        version = {a.name: a.model_version for a in client.catalog().arms}[arm]
        if version.endswith(f"+{updates}") or time.monotonic() > deadline:
            return version
        time.sleep(0.1)


BUDGET = load_config().closes_per_call  # due decisions a served call closes itself


def wait_closed(db: Path, count: int, timeout: float = 60) -> None:
    """Until `count` decisions are closed (the server closes a backlog in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        closed = query(db, "SELECT count(*) FROM decisions WHERE status = ?", (CLOSED,))[0][0]
        if closed == count:
            return
        assert closed < count, f"{closed} decisions closed, more than {count}"
        assert time.monotonic() < deadline, f"{closed} of {count} decisions closed"
        time.sleep(0.1)


def closed_of_arm(db: Path, arm: str) -> int:
    return query(
        db, "SELECT count(*) FROM decisions WHERE arm = ? AND close_seq IS NOT NULL", (arm,)
    )[0][0]


def assert_closed_once(db: Path) -> None:
    """Closed decisions have a reward and a close_seq, each close_seq once; open ones neither."""
    rows = query(db, "SELECT status, reward, close_seq, closed_time FROM decisions")
    bad = [r for r in rows if r[0] not in (OPEN, CLOSED)]
    assert bad == [], f"{len(bad)} decisions with an unknown status, e.g. {bad[:3]}"
    closed = [r for r in rows if r[0] == CLOSED]
    assert all(r[1] is not None and r[2] is not None and r[3] is not None for r in closed)
    assert all(r[1] is None and r[2] is None and r[3] is None for r in rows if r[0] == OPEN)
    seqs = Counter(r[2] for r in closed)
    twice = {s: n for s, n in seqs.items() if n > 1}
    assert twice == {}, f"close_seq given twice: {list(twice.items())[:5]}"


def assert_none_unlearned(db: Path) -> None:
    """Healthy closed decisions are all learnable: none may be recorded as unlearned (the
    versions checked here count every closed decision)."""
    tables = {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "unlearned" in tables:
        rows = query(db, "SELECT arm, close_seq, reason FROM unlearned")
        assert rows == [], f"{len(rows)} closed decisions recorded as unlearned: {rows[:3]}"


def assert_checkpoint_consistent(db: Path, arm: str) -> None:
    """The newest checkpoint of a learning arm counts exactly the closed decisions up to its
    close_seq: each learned once (the model started fresh: label "init")."""
    found = query(
        db,
        "SELECT label, updates, close_seq FROM checkpoints WHERE arm = ? ORDER BY id DESC LIMIT 1",
        (arm,),
    )
    assert_none_unlearned(db)
    if not found:
        return
    label, updates, close_seq = found[0]
    covered = query(
        db,
        "SELECT count(*) FROM decisions WHERE arm = ? AND close_seq IS NOT NULL AND close_seq <= ?",
        (arm, close_seq),
    )[0][0]
    assert label == "init"
    assert updates == covered, (
        f"checkpoint of {arm} says {updates} updates up to close_seq {close_seq},"
        f" but {covered} decisions of the arm closed up to it"
    )


def decide_request(customer_id: str, when: int) -> pb.DecideRequest:
    return pb.DecideRequest(customer_id=customer_id, time=timestamp(when))


def purchase(event_id: str, customer_id: str, when: int, value: float) -> pb.Event:
    return pb.Event(
        event_id=event_id, customer_id=customer_id, time=timestamp(when), type=PURCHASE, value=value
    )


def decide_all(
    client: DecisionClient, requests: list[pb.DecideRequest], size: int = 500
) -> list[pb.Decision]:
    """Decide in stream batches of `size` (setup, no kill); every item must be decided."""
    batches = [requests[i : i + size] for i in range(0, len(requests), size)]
    out: list[pb.Decision] = []
    for reply in client.decide_stream(batches):
        for r in reply.results:
            assert r.WhichOneof("result") == "decision", r
            out.append(r.decision)
    assert len(out) == len(requests)
    return out


def report_all(client: DecisionClient, events: list[pb.Event]) -> None:
    """Report events in batches of 5,000 (setup, before any kill); none may fail."""
    for i in range(0, len(events), 5000):
        reply = client.report_events(pb.ReportEventsRequest(events=events[i : i + 5000]))
        for r in reply.results:
            assert r.WhichOneof("result") == "ok", r


def quarters(rng: random.Random, low: int, high: int) -> float:
    """A purchase value in quarter euros: sums of them are exact in binary floating point."""
    return rng.randint(low, high) * 0.25


# -- 1. DecideStream -----------------------------------------------------------------------


@dataclass
class StreamLog:
    """One stream's batches as (customer, time) pairs and the decision ids of each reply. The
    next batch goes out only after the previous reply: at most one batch is unacknowledged."""

    sent: list[list[tuple[str, int]]] = field(default_factory=list)
    replies: list[list[str]] = field(default_factory=list)

    @property
    def in_flight(self) -> list[tuple[str, int]]:
        return self.sent[len(self.replies)] if len(self.sent) > len(self.replies) else []


def stream_until_killed(
    process: subprocess.Popen[bytes],
    port: int,
    first: int,
    customers: list[str],
    acked: dict[str, tuple[str, int]],
    more: int,
    seed: int,
) -> list[list[tuple[str, int]]]:
    """Four DecideStreams with batches of 50-200 until `more` decisions are acknowledged (into
    `acked`: decision id -> (customer, time)), then SIGKILL; returns the unacknowledged batches."""
    n_streams = 4
    streams = [StreamLog() for _ in range(n_streams)]
    lock = threading.Lock()
    stop, killed = threading.Event(), threading.Event()
    errors: list[BaseException | str] = []

    def run(s: int) -> None:
        rng = random.Random(seed * 100 + s)
        log_ = streams[s]
        replied = threading.Semaphore(0)

        def batches() -> Iterator[pb.DecideBatchRequest]:
            j = 0
            while not stop.is_set():
                # Times encode (stream, batch): an unacknowledged batch is recognisable in the log.
                when = first + (j * n_streams + s) * 3
                size = rng.randint(50, 200)
                # Even streams ask about each customer once per batch, odd ones may repeat her.
                chosen = (
                    rng.sample(customers, size) if s % 2 == 0 else rng.choices(customers, k=size)
                )
                batch = [(c, when) for c in chosen]
                log_.sent.append(batch)
                yield pb.DecideBatchRequest(requests=[decide_request(c, t) for c, t in batch])
                while not replied.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                j += 1

        with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
            try:
                for reply in client.stub.DecideStream(batches()):
                    batch = log_.sent[len(log_.replies)]
                    ids = []
                    if len(reply.results) != len(batch):
                        errors.append(f"{len(reply.results)} results for {len(batch)} requests")
                    for (customer, when), r in zip(batch, reply.results, strict=False):
                        d = r.decision
                        got = (d.customer_id, d.time.seconds)
                        if r.WhichOneof("result") != "decision" or got != (customer, when):
                            errors.append(f"bad result for {customer}@{when}: {r}")
                        ids.append(d.decision_id)
                    with lock:
                        for d_id, item in zip(ids, batch, strict=False):
                            if d_id in acked:
                                errors.append(f"decision id {d_id} acknowledged twice")
                            acked[d_id] = item
                    log_.replies.append(ids)
                    replied.release()
            except grpc.RpcError as exc:
                if not (killed.is_set() and exc.code() in GONE):
                    errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(n_streams)]
    target = len(acked) + more
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while len(acked) < target and time.monotonic() < deadline and not errors:
            time.sleep(0.005)
        time.sleep(random.Random(seed).uniform(0.0, 0.2))  # somewhere in the middle of a batch
        killed.set()
        kill(process)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert errors == [], errors[:5]
    assert len(acked) >= target, f"only {len(acked)} decisions acknowledged"
    return [s.in_flight for s in streams if s.in_flight]


def test_sigkill_mid_decide_streams(tmp_path: Path, servers: list[subprocess.Popen[bytes]]) -> None:
    base = base_time()
    data_dir, port_file, log = tmp_path / "data", tmp_path / "port", tmp_path / "server.log"
    db = data_dir / "anstoss.db"
    kills = 3
    customers = [f"c{k}" for k in range(3000)]
    acked: dict[str, tuple[str, int]] = {}  # decision id -> (customer, time)
    in_flight: list[list[tuple[str, int]]] = []  # the unacknowledged batches of every kill
    rng = random.Random(7)
    process, port = start(data_dir, port_file, log)
    servers.append(process)
    for k in range(kills):
        # Each round's times lie after the last one's: 4 hours apart, 3 s between batches.
        first = base + k * 4 * HOUR
        in_flight += stream_until_killed(process, port, first, customers, acked, 4000, seed=k)
        process, port = start(data_dir, port_file, log)
        servers.append(process)
        with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_ready()
            for decision_id in rng.sample(sorted(acked), 200):
                d = client.get_decision(decision_id).decision
                assert (d.customer_id, d.time.seconds) == acked[decision_id]

    # New decisions after the last restart get new ids.
    with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
        later = base + kills * 4 * HOUR
        after = decide_all(client, [decide_request(c, later) for c in customers[:300]])
    terminate(process)
    after_ids = {d.decision_id for d in after}
    assert len(after_ids) == len(after)
    assert not after_ids & set(acked), "ids of acknowledged decisions handed out again"

    rows = query(db, "SELECT seq, decision_id, customer_id, time FROM decisions")
    assert len({r[0] for r in rows}) == len({r[1] for r in rows}) == len(rows)
    logged = {r[1]: (r[2], r[3]) for r in rows}
    missing = [d for d in acked if d not in logged]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged decisions lost"
    changed = [d for d, item in acked.items() if logged[d] != item]
    assert changed == [], f"{len(changed)} acknowledged decisions changed, e.g. {changed[:3]}"
    # Everything else in the log is from unacknowledged in-flight batches. A batch is one
    # transaction, also one that repeats a customer (decided in rounds that commit together):
    # entirely there or not at all.
    extra: dict[int, list[str]] = defaultdict(list)
    for d, (customer, when) in logged.items():
        if d not in acked and d not in after_ids:
            extra[when].append(customer)
    batches = {b[0][1]: Counter(c for c, _ in b) for b in in_flight}
    partly = []
    for when, found in extra.items():
        assert when in batches, f"{len(found)} decisions at {when} that no in-flight batch sent"
        sent = batches[when]
        assert Counter(found) <= sent, f"decisions at {when} beyond what its batch asked for"
        if Counter(found) != sent:
            partly.append(f"{len(found)} of {sent.total()}")
    assert partly == [], f"in-flight batches partly logged: {partly}"
    acked_per = Counter(c for c, _ in acked.values())
    flight_per = Counter(c for b in in_flight for c, _ in b)
    logged_per = Counter(c for d, (c, _) in logged.items() if d not in after_ids)
    for customer in set(logged_per) | set(acked_per):
        assert (
            acked_per[customer]
            <= logged_per[customer]
            <= acked_per[customer] + flight_per[customer]
        ), (customer, acked_per[customer], logged_per[customer], flight_per[customer])
    print(
        f"\ndecide streams, {kills} kills: {len(acked)} acknowledged,"
        f" {sum(map(len, extra.values()))} logged of {sum(map(len, in_flight))} in flight"
        f" ({len(extra)} of {len(in_flight)} batches)"
    )


# -- 2. ReportEvents -----------------------------------------------------------------------


def report_until_killed(
    process: subprocess.Popen[bytes],
    port: int,
    first: int,
    customers: list[str],
    decided: set[str],
    sent: dict[str, tuple[str, int, float]],
    acked: set[str],
    more: int,
    seed: int,
) -> list[list[str]]:
    """Four threads report batches of 500 purchases (unique event ids, into `sent`: event id ->
    (customer, time, value)) until `more` batches are acknowledged (their ids into `acked`),
    then SIGKILL; returns the event ids of the unacknowledged batches."""
    n_threads, batch_size = 4, 500
    done: list[list[str]] = []
    in_flight: dict[int, list[str]] = {}
    lock = threading.Lock()
    stop, killed = threading.Event(), threading.Event()
    errors: list[BaseException | str] = []

    def run(w: int) -> None:
        rng = random.Random(seed * 100 + w)
        with DecisionClient(f"127.0.0.1:{port}", timeout=30) as client:
            for j in range(100):
                if stop.is_set():
                    return
                at = first + (j * n_threads + w) * 600  # < first + 3 days
                events = [
                    purchase(f"s{seed}-w{w}-b{j}-e{k}", rng.choice(customers), at + k, quarters(rng, 1, 800))
                    for k in range(batch_size)
                ]  # fmt: skip
                ids = [e.event_id for e in events]
                with lock:
                    for e in events:
                        sent[e.event_id] = (e.customer_id, e.time.seconds, e.value)
                    in_flight[w] = ids
                try:
                    reply = client.report_events(pb.ReportEventsRequest(events=events))
                except grpc.RpcError as exc:
                    if not (killed.is_set() and exc.code() in GONE):
                        errors.append(exc)
                    return
                for e, r in zip(events, reply.results, strict=True):
                    expected = int(e.customer_id in decided)
                    if r.WhichOneof("result") != "ok" or r.ok.duplicate:
                        errors.append(f"{e.event_id}: {r}")
                    elif r.ok.decisions_attributed != expected:
                        errors.append(f"{e.event_id}: attributed to {r.ok.decisions_attributed}")
                with lock:
                    done.append(ids)
                    del in_flight[w]

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while len(done) < more and time.monotonic() < deadline and not errors:
            time.sleep(0.002)
        time.sleep(random.Random(seed).uniform(0.0, 0.1))
        killed.set()
        kill(process)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert errors == [], errors[:5]
    assert len(done) >= more, f"only {len(done)} batches acknowledged"
    acked.update(e for ids in done for e in ids)
    return list(in_flight.values())


def test_sigkill_mid_report_events_batches(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    base = base_time()
    data_dir, port_file, log = tmp_path / "data", tmp_path / "port", tmp_path / "server.log"
    db = data_dir / "anstoss.db"
    kills = 3
    customers = [f"p{k}" for k in range(2000)]
    decided = set(customers[:1000])  # one open decision each, window [base, base + 10 days)
    process, port = start(data_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
        client.wait_ready()
        decide_all(client, [decide_request(c, base) for c in sorted(decided)])

    sent: dict[str, tuple[str, int, float]] = {}
    acked: set[str] = set()
    resent: set[str] = set()
    stored_at_kill = []
    for k in range(kills):
        first = base + HOUR + k * 3 * DAY  # each round after the last, all inside the windows
        in_flight = report_until_killed(
            process, port, first, customers, decided, sent, acked, 20, seed=k
        )
        process, port = start(data_dir, port_file, log)
        servers.append(process)
        with DecisionClient(f"127.0.0.1:{port}", timeout=30) as client:
            client.wait_ready()
            per_id = Counter(r[0] for r in query(db, "SELECT event_id FROM events"))
            check_events(db, sent, acked | resent)
            partial = [
                f"{sum(e in per_id for e in ids)} of {len(ids)}"
                for ids in in_flight
                if 0 < sum(e in per_id for e in ids) < len(ids)
            ]
            assert partial == [], f"unacknowledged batches partly applied: {partial}"
            # The in-flight batches again: each is all duplicates or all new.
            for ids in in_flight:
                present = ids[0] in per_id
                stored_at_kill.append(present)
                events = [purchase(e, *sent[e]) for e in ids]
                reply = client.report_events(pb.ReportEventsRequest(events=events))
                assert all(r.WhichOneof("result") == "ok" for r in reply.results)
                assert {r.ok.duplicate for r in reply.results} == {present}
                resent.update(ids)
    terminate(process)
    check_events(db, sent, acked | resent)
    assert {r[0] for r in query(db, "SELECT event_id FROM events")} == acked | resent
    print(
        f"\nreport events, {kills} kills: {len(acked) // 500} batches acknowledged,"
        f" {len(stored_at_kill)} in flight, stored at the kill: {stored_at_kill}"
    )


def check_events(db: Path, sent: dict[str, tuple[str, int, float]], acked: set[str]) -> None:
    """Acknowledged events are stored once and as sent; nothing else is stored; the totals
    derived from purchases agree with them."""
    stored = query(db, "SELECT event_id, customer_id, time, type, value FROM events")
    per_id = Counter(r[0] for r in stored)
    twice = [e for e, n in per_id.items() if n > 1]
    assert twice == [], f"{len(twice)} event ids stored more than once"
    invented = [e for e in per_id if e not in sent]
    assert invented == [], f"{len(invented)} events that were never sent"
    lost = [e for e in acked if e not in per_id]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged events lost"
    changed = [r[0] for r in stored if (r[1], r[2], r[4]) != sent[r[0]] or r[3] != PURCHASE]
    assert changed == [], f"{len(changed)} events stored differently, e.g. {changed[:3]}"
    check_purchase_totals(db)


def check_purchase_totals(db: Path) -> None:
    """Customer totals and decision attribution equal what the stored purchases add up to."""
    events = query(db, "SELECT customer_id, time, value FROM events WHERE type = ?", (PURCHASE,))
    per_customer: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for customer, when, value in events:
        per_customer[customer].append((when, value))
    totals = {
        r[0]: r[1:]
        for r in query(
            db,
            "SELECT customer_id, purchases, purchase_value, first_purchase_time,"
            " last_purchase_time FROM customers",
        )
    }
    assert set(totals) == set(per_customer)
    wrong = []
    for customer, bought in per_customer.items():
        expected = (
            len(bought),
            sum(v for _, v in bought),
            min(t for t, _ in bought),
            max(t for t, _ in bought),
        )
        if totals[customer] != expected:
            wrong.append((customer, totals[customer], expected))
    assert wrong == [], f"{len(wrong)} customers' totals differ from their purchases: {wrong[:3]}"
    check_attribution(db, per_customer)


def check_attribution(db: Path, per_customer: dict[str, list[tuple[int, float]]]) -> None:
    """Every decision holds exactly the purchases inside its window (none twice, none lost)."""
    wrong = []
    for d_id, customer, start_, end, value, count in query(
        db,
        "SELECT decision_id, customer_id, time, window_end, attributed_value,"
        " attributed_purchases FROM decisions",
    ):
        inside = [v for t, v in per_customer.get(customer, []) if start_ <= t < end]
        if (count, value) != (len(inside), sum(inside)):
            wrong.append((d_id, (count, value), (len(inside), sum(inside))))
    assert wrong == [], (
        f"{len(wrong)} decisions' attribution differs from the purchases: {wrong[:3]}"
    )


# -- 3. ReportOutcome ----------------------------------------------------------------------


def test_sigkill_mid_reward_bursts(tmp_path: Path, servers: list[subprocess.Popen[bytes]]) -> None:
    base = base_time()
    data_dir, port_file, log = tmp_path / "data", tmp_path / "port", tmp_path / "server.log"
    db = data_dir / "anstoss.db"
    n_threads = 4
    process, port = start(data_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
        client.wait_ready()
        decided = decide_all(client, [decide_request(f"r{k}", base) for k in range(8000)])
    bandit = [d.decision_id for d in decided if d.arm == "bandit"]
    assert len(bandit) > 3000
    rng = random.Random(3)
    rewards = {d: rng.randint(-6, 12) * 0.5 for d in bandit}
    held_back = bandit[-400:]  # rewarded only after the restart
    burst = bandit[:-400]

    acked: dict[str, float] = {}
    in_flight: dict[int, str] = {}
    lock = threading.Lock()
    stop, killed = threading.Event(), threading.Event()
    errors: list[BaseException | str] = []

    def run(w: int) -> None:
        with DecisionClient(f"127.0.0.1:{port}", timeout=30) as client:
            for i, decision_id in enumerate(burst[w::n_threads]):
                if stop.is_set():
                    return
                with lock:
                    in_flight[w] = decision_id
                try:
                    reply = client.outcome(decision_id, base + 60 + i, reward=rewards[decision_id])
                except grpc.RpcError as exc:
                    if not (killed.is_set() and exc.code() in GONE):
                        errors.append(exc)
                    return
                if (
                    reply.duplicate
                    or reply.status != CLOSED
                    or reply.reward != rewards[decision_id]
                ):
                    errors.append(f"{decision_id}: {reply}")
                with lock:
                    acked[decision_id] = rewards[decision_id]
                    del in_flight[w]

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 1500 and time.monotonic() < deadline and not errors:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.05))
        killed.set()
        kill(process)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert errors == [], errors[:5]
    assert len(acked) >= 1500, f"only {len(acked)} rewards acknowledged"
    assert len(acked) < len(burst), "the burst ended before the kill"

    process, port = start(data_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=30) as client:
        client.wait_ready()
        closed_bandit = closed_of_arm(db, "bandit")
        version = settled_version(client, "bandit", closed_bandit)
        check_rewards(db, acked, in_flight, rewards)
        for decision_id, reward in acked.items():
            state = client.get_decision(decision_id)
            assert state.status == CLOSED and state.reward == reward, (decision_id, state)
            assert state.learned, f"acknowledged bandit reward of {decision_id} not learned"
        assert version.endswith(f"+{closed_bandit}"), (
            f"bandit version {version}, {closed_bandit} closed bandit decisions in the log"
        )
        assert_checkpoint_consistent(db, "bandit")

        # The in-flight rewards again (duplicates if they were stored), then more new ones.
        stored = {r[0] for r in query(db, "SELECT decision_id FROM outcomes")}
        for w, decision_id in in_flight.items():
            reply = client.outcome(decision_id, base + 2 * DAY, reward=rewards[decision_id])
            assert reply.duplicate == (decision_id in stored), (w, decision_id, reply)
            assert reply.status == CLOSED and reply.reward == rewards[decision_id]
            acked[decision_id] = rewards[decision_id]
        for i, decision_id in enumerate(held_back):
            reply = client.outcome(decision_id, base + 2 * DAY + i, reward=rewards[decision_id])
            assert not reply.duplicate and reply.reward == rewards[decision_id]
            acked[decision_id] = rewards[decision_id]
        closed_bandit = closed_of_arm(db, "bandit")
        assert closed_bandit == len(acked)
        version = settled_version(client, "bandit", closed_bandit)
        assert version.endswith(f"+{closed_bandit}"), (version, closed_bandit)
    # Killed again while idle: what was learned after the last checkpoint is replayed once.
    kill(process)
    process, port = start(data_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=30) as client:
        client.wait_ready()
        version = settled_version(client, "bandit", closed_bandit)
        assert version.endswith(f"+{closed_bandit}"), (version, closed_bandit)
        for decision_id in held_back:
            assert client.get_decision(decision_id).learned
    terminate(process)
    check_rewards(db, acked, {}, rewards)
    assert_checkpoint_consistent(db, "bandit")
    print(f"\nreward bursts: {len(acked)} rewards, in flight at the kill {len(in_flight)}")


def check_rewards(
    db: Path, acked: dict[str, float], in_flight: dict[int, str], rewards: dict[str, float]
) -> None:
    """Acknowledged rewards are stored and closed their decision; an in-flight one either did
    both or neither; no other decision is closed."""
    assert_closed_once(db)
    decisions = {
        r[0]: r[1:]
        for r in query(db, "SELECT decision_id, status, reward, reward_source FROM decisions")
    }
    outcomes = {
        r[0]: r[1:]
        for r in query(db, "SELECT decision_id, outcome_id, reward, value FROM outcomes")
    }
    lost = [d for d in acked if outcomes.get(d) != ("reward", acked[d], None)]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged rewards not stored: {lost[:3]}"
    open_ = [d for d in acked if decisions[d] != (CLOSED, acked[d], "reported")]
    assert open_ == [], f"{len(open_)} acknowledged rewards did not close their decision"
    for decision_id in in_flight.values():
        if decision_id in outcomes:
            assert decisions[decision_id] == (CLOSED, rewards[decision_id], "reported")
        else:
            assert decisions[decision_id][0] == OPEN, (decision_id, decisions[decision_id])
    known = set(acked) | set(in_flight.values())
    extra = [d for d, r in decisions.items() if r[0] == CLOSED and d not in known]
    assert extra == [], f"{len(extra)} decisions closed that no reward was sent for"
    assert set(outcomes) <= known


# -- 4. Bulk window closes -----------------------------------------------------------------


def test_sigkill_mid_bulk_window_close(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    base = base_time()
    rng = random.Random(4)
    seed_dir, port_file, log = tmp_path / "seed", tmp_path / "port", tmp_path / "server.log"
    customers = [f"b{k}" for k in range(4000)]
    bought: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def purchases(times: tuple[int, int], buyers: list[str], tag: str) -> list[pb.Event]:
        out = []
        for k, customer in enumerate(buyers):
            when, value = rng.randrange(*times), quarters(rng, 4, 1200)
            bought[customer].append((when, value))
            out.append(purchase(f"{tag}-{k}", customer, when, value))
        return out

    # The log: first orders a day before, purchases arriving before their decisions (attributed
    # when the decision is logged), 20,000 decisions over a day, purchases in their windows.
    first = purchases((base - DAY, base - HOUR), customers, "first")
    early = purchases((base + DAY, base + 5 * DAY), rng.sample(customers, 800), "early")
    requests = [
        decide_request(rng.choice(customers), base + b * 800 + rng.randrange(800))
        for b in range(100)
        for _ in range(200)
    ]
    late = purchases((base + HOUR, base + 10 * DAY - HOUR), rng.choices(customers, k=2500), "late")
    process, port = start(seed_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=60) as client:
        client.wait_ready()
        report_all(client, first + early)
        decide_all(client, requests, 200)
        report_all(client, late)
    terminate(process)
    db = seed_dir / "anstoss.db"
    assert query(db, "SELECT count(*) FROM decisions WHERE status = ?", (OPEN,))[0][0] == 20_000
    check_windows(db, bought)
    n_bandit = query(db, "SELECT count(*) FROM decisions WHERE arm = 'bandit'")[0][0]

    # One purchase 12 days after the decisions closes every window at once.
    closer = purchase("closer", "z-closer", base + 12 * DAY, 10.0)

    def close_all(client: DecisionClient) -> grpc.Future:
        return client.stub.ReportEvents.future(pb.ReportEventsRequest(events=[closer]), timeout=120)

    reference_dir = tmp_path / "reference"
    shutil.copytree(seed_dir, reference_dir)
    process, port = start(reference_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=60) as client:
        client.wait_ready()
        began = time.monotonic()
        close_all(client).result()  # closes one budget; the server closes the rest after it
        assert settled_version(client, "bandit", n_bandit).endswith(f"+{n_bandit}")
        duration = time.monotonic() - began
    # Killed when idle after the close: the restart replays only what its checkpoint lacks.
    kill(process)
    process, port = start(reference_dir, port_file, log)
    servers.append(process)
    with DecisionClient(f"127.0.0.1:{port}", timeout=60) as client:
        client.wait_ready()
        version = settled_version(client, "bandit", n_bandit)
        assert version.endswith(f"+{n_bandit}"), ("idle kill after the close", version, n_bandit)
    terminate(process)
    expected = dict(
        query(reference_dir / "anstoss.db", "SELECT decision_id, reward FROM decisions")
    )
    assert None not in expected.values()
    check_windows(reference_dir / "anstoss.db", bought, expected)

    outcomes = []
    spans = [(0.02, 0.2), (0.2, 0.45), (0.45, 0.7), (0.7, 1.0), (1.2, 2.0)]
    for run, (low, high) in enumerate(spans):  # fractions of the reference call's duration
        delay = rng.uniform(low, high) * duration
        run_dir = tmp_path / f"run{run}"
        shutil.copytree(seed_dir, run_dir)
        db = run_dir / "anstoss.db"
        process, port = start(run_dir, port_file, log)
        servers.append(process)
        with DecisionClient(f"127.0.0.1:{port}", timeout=60) as client:
            client.wait_ready()
            call = close_all(client)
            time.sleep(delay)
            kill(process)
            try:
                call.result()
                answered = True
            except grpc.RpcError as exc:
                assert exc.code() in GONE, exc
                answered = False

        process, port = start(run_dir, port_file, log)
        servers.append(process)
        with DecisionClient(f"127.0.0.1:{port}", timeout=60) as client:
            client.wait_ready()
            n_closed = query(db, "SELECT count(*) FROM decisions WHERE status = ?", (CLOSED,))[0][0]
            if answered:  # the call closed one budget before it answered
                assert n_closed >= min(BUDGET, 20_000), "an acknowledged close did not survive"
            stored = bool(query(db, "SELECT 1 FROM events WHERE event_id = 'closer'"))
            # Event time was stored with the purchase: the restarted server closes the rest by
            # itself, in the background.
            wait_closed(db, 20_000 if stored else 0)
            closed = closed_of_arm(db, "bandit")
            version = settled_version(client, "bandit", closed)
            checkpoint = query(db, "SELECT max(close_seq) FROM checkpoints WHERE arm = 'bandit'")
            check_windows(db, bought, expected)
            assert version.endswith(f"+{closed}"), (
                f"run {run} (kill after {delay:.2f} s): bandit version {version},"
                f" {closed} closed bandit decisions in the log"
            )
            assert_checkpoint_consistent(db, "bandit")
            # The same call again closes whatever is still open, exactly once.
            reply = close_all(client).result()
            assert reply.results[0].ok.duplicate == stored
            version = settled_version(client, "bandit", n_bandit)
            assert version.endswith(f"+{n_bandit}"), (run, version, n_bandit)
        terminate(process)
        check_windows(db, bought, expected, all_closed=True)
        assert_checkpoint_consistent(db, "bandit")
        outcomes.append((round(delay, 2), answered, stored, n_closed, checkpoint[0][0]))
    print(
        f"\nbulk close of 20,000 windows ({n_bandit} bandit) took {duration:.2f} s; kills (delay s,"
        f" answered, closer stored, decisions closed, checkpoint close_seq at restart): {outcomes}"
    )


def check_windows(
    db: Path,
    bought: dict[str, list[tuple[int, float]]],
    expected: dict[str, float] | None = None,
    all_closed: bool = False,
) -> None:
    """Each decision is open with exactly the purchases of its window attributed, or closed
    once with the reward those purchases earn (the reference run's reward, if given)."""
    assert_closed_once(db)
    rule = load_config().rewards
    rows = query(
        db,
        "SELECT decision_id, customer_id, time, window_end, status, attributed_value,"
        " attributed_purchases, cost, unsubscribes, reward FROM decisions",
    )
    wrong: list[tuple[Any, ...]] = []
    for d_id, customer, start_, end, status, value, count, cost, unsubscribes, reward in rows:
        inside = [v for t, v in bought.get(customer, []) if start_ <= t < end]
        if (count, value, unsubscribes) != (len(inside), sum(inside), 0):
            wrong.append((d_id, "attribution", (count, value), (len(inside), sum(inside))))
        if status == CLOSED:
            earned = float(
                rule.rewards(
                    np.array([value]), np.array([count]), np.array([cost]), np.array([0.0])
                )[0]
            )
            if reward != earned or (expected is not None and reward != expected[d_id]):
                wrong.append((d_id, "reward", reward, earned))
        elif all_closed:
            wrong.append((d_id, "still open"))
    assert wrong == [], f"{len(wrong)} decisions wrong, e.g. {wrong[:3]}"
