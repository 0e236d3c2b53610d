"""A bounded-time soak of a real `anstoss serve` process: mixed traffic, resources sampled.

The server runs as `anstoss serve` in its own process (as in bench_serving.py) on a fresh data
dir; this process plays every kind of client at once for `--seconds`:

- unary `Decide` from `--unary-threads` threads, one call in flight each;
- one `DecideStream` with batches of `--stream-batch` requests (a few batches in flight), paced
  at `--stream-rate` decisions/s (a sustained load below the peak `make bench` measures;
  0 = unpaced, which saturates the machine);
- `ReportEvents` batches: purchases with event ids (some sent twice, to exercise idempotency),
  consent grants and withdrawals, unsubscribes, DELIVERED/OPENED for decisions seen;
- `ReportOutcome`: rewards (and some attributed values) for bandit-arm decisions;
- reads: `GetDecision` of decisions seen (the answer is checked), `GetCatalog`.

Event time starts 60 days before the wall clock and moves with the run so that it reaches an
hour before the wall clock at the end (never later: a live server refuses times after the wall
clock), so attribution windows (10 days + 24 h lateness) close and the bandit learns all along.
The customers' first purchases are seeded at the start.

Every `--every` seconds one line: elapsed time, server RSS, size of anstoss.db and its WAL,
decisions/s and events/s over the interval, unary p99, the server's CPU (100 % = one core), the
machine's load average (the cores are shared: a stall may be the neighbours'), errors by status
code. At the end a summary judges the targets -- RSS growth after warm-up under 10 % (warm-up:
the first 20 % of the run, at least 30 s; growth = (max RSS after it - RSS at its end) / RSS at
its end) and the WAL under 256 MB at every sample; besides, no error statuses, the server alive
throughout and a clean exit on SIGTERM -- writes the figures to benchmarks/results.json (soak_*
keys) and exits 1 if anything is missed. An error status is counted and printed, never fatal to
the soak; UNAVAILABLE from the server's admission caps (load shedding) is counted apart and
tolerated.

    python -m benchmarks.soak --seconds 60 --every 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np

from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient
from engine.timeutil import DAY, iso

DB_FILE = "anstoss.db"
RSS_GROWTH_TARGET = 0.10  # after warm-up
WAL_TARGET_MB = 256.0  # at every sample
WARMUP_SHARE = 0.2
WARMUP_MIN_S = 30.0
START_LAG = 60 * DAY  # event time at the start, behind the wall clock
END_LAG = 3600  # event time at the end, behind the wall clock
STREAM_IN_FLIGHT = 4  # DecideStream batches sent but not yet answered
RPC_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 120.0
SHED = "UNAVAILABLE(shed)"  # load shedding: counted, tolerated
MIN_FREE_GB = 5.0  # traffic stops (and the soak fails) before the disk fills up
EARLY_BANDIT = 300  # early bandit decisions left alone, checked for closed + learned at the end

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_ACQUISITION = ("web", "app", "marketplace", "store")
_CATEGORY = ("garden", "kitchen", "fashion", "toys")


# -- the server -------------------------------------------------------------------------------


def start_server(data_dir: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], int]:
    """`anstoss serve` on a free port in its own process (as bench_serving.py starts it)."""
    port_file = data_dir / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "warning", "serve", "--port", "0",
         "--data-dir", str(data_dir), "--port-file", str(port_file)],
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"server failed to start (exit code {process.returncode})")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not write its port file within {timeout:g} s")
        time.sleep(0.02)
    return process, int(port_file.read_text())


def revision() -> str:
    """The git commit of the code under test, and whether engine/ or cli/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "engine", "cli"], cwd=root,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return head + (" + uncommitted changes in engine/ or cli/" if dirty else "")


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS), MB; nan once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def file_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


# -- event time -------------------------------------------------------------------------------


class EventClock:
    """Event time moving from `wall - 60 days` at the start to `wall - 1 h` at the end of the
    run, proportionally to the elapsed time; never after the wall clock minus an hour."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.began = time.monotonic()
        wall = time.time()
        self.start = int(wall) - START_LAG
        self.end = int(wall + seconds) - END_LAG

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def now(self) -> int:
        share = min(1.0, self.elapsed() / self.seconds)
        return min(int(self.start + share * (self.end - self.start)), int(time.time()) - END_LAG)


# -- bookkeeping ------------------------------------------------------------------------------


class Seen(NamedTuple):
    """A decision this process received, for follow-up events, outcomes and reads."""

    decision_id: str
    customer_id: str
    time: int
    arm: str
    no_contact: bool


@dataclass
class Stats:
    """Counters shared by the traffic threads (one lock; a few thousand updates a second)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # status code name -> n
    by_rpc: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # unary Decide, since the last sample

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def error(self, rpc: str, code: str, message: str, n: int = 1) -> None:
        with self.lock:
            self.errors[code] += n
            self.by_rpc[rpc, code] += n
            self.examples.setdefault((rpc, code), message[:300])

    def rpc_error(self, rpc: str, exc: grpc.RpcError) -> str:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
        name = _code_name(code.name if code is not None else "UNKNOWN", details)
        self.error(rpc, name, details)
        return name

    def item_error(self, rpc: str, error: pb.ItemError) -> None:
        name = _code_name(_CODE_NAMES.get(error.code, str(error.code)), error.message)
        self.error(rpc, name, error.message)

    def snapshot(self) -> tuple[Counter[str], Counter[str], list[float]]:
        with self.lock:
            latencies, self.latencies = self.latencies, []
            return Counter(self.counts), Counter(self.errors), latencies


def _code_name(code: str, details: str) -> str:
    """The status code's name; UNAVAILABLE from the server's admission caps (their messages say
    "retry later") is load shedding, SHED, tolerated. Other UNAVAILABLEs (storage, a dead
    server, a stream ended as idle) stay errors."""
    return SHED if code == "UNAVAILABLE" and "retry later" in details else code


class Pacer:
    """Sleep so that `tick()` returns at most `rate` times a second (0 = no limit)."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.period = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop
        self.next = time.monotonic()

    def tick(self) -> bool:
        """False once the soak is stopping."""
        if self.period:
            self.next += self.period
            delay = self.next - time.monotonic()
            if delay < -1.0:  # far behind (a stall): do not burst to catch up
                self.next = time.monotonic()
            elif delay > 0:
                self.stop.wait(delay)
        return not self.stop.is_set()


def _contexts(customers: int) -> list[pb.CustomerContext]:
    out = []
    for i in range(customers):
        ctx = pb.CustomerContext(
            acquisition_channel=_ACQUISITION[i % 4],
            first_order_category=_CATEGORY[(i // 4) % 4],
            first_order_items=1 + i % 5,
            region=("DE", "AT", "CH")[i % 3],
        )
        if i % 10 == 0:
            ctx.days_to_occasion = i % 30
        out.append(ctx)
    return out


# -- the traffic ------------------------------------------------------------------------------


class Traffic:
    """The client side of the soak: one thread per kind of traffic, all until `stop`."""

    def __init__(
        self,
        target: str,
        clock: EventClock,
        customers: int,
        bandit_arms: frozenset[str],
        opt_in_channels: Sequence[str],
        channels: Sequence[str],
        unary_threads: int,
        stream_batch: int,
        stream_rate: float,
        events_rate: float,
        outcome_rate: float,
        read_rate: float,
    ) -> None:
        self.target = target
        self.clock = clock
        self.customers = customers
        self.bandit_arms = bandit_arms
        self.opt_in_channels = list(opt_in_channels)
        self.channels = list(channels)
        self.unary_threads = unary_threads
        self.stream_batch = stream_batch
        self.stream_rate = stream_rate
        self.events_rate = events_rate
        self.outcome_rate = outcome_rate
        self.read_rate = read_rate
        self.stats = Stats()
        self.stop = threading.Event()
        self.contexts = _contexts(customers)
        self.warmup_until = WARMUP_SHARE * clock.seconds
        # Decisions seen, for the follow-ups (deque appends and pops are atomic).
        self.contacted: deque[Seen] = deque(maxlen=20_000)  # -> DELIVERED / OPENED, purchases
        self.for_outcome: deque[Seen] = deque(maxlen=2_000)  # bandit arm -> ReportOutcome
        self.lookup: deque[Seen] = deque(maxlen=5_000)  # -> GetDecision
        self.early: list[Seen] = []  # bandit decisions left alone: closed and learned by the end?
        self.purchase_ids: deque[str] = deque(maxlen=1_000)  # sent again as duplicates
        self.clients: list[DecisionClient] = []
        self.threads: list[threading.Thread] = []

    # -- plumbing --

    def _client(self) -> DecisionClient:
        client = DecisionClient(self.target, timeout=RPC_TIMEOUT)
        self.clients.append(client)
        return client

    def start(self) -> None:
        unary, stream, side = self._client(), self._client(), self._client()
        workers: list[tuple[str, Callable[[], None]]] = [
            (f"unary-{w}", partial(self._unary, unary, w)) for w in range(self.unary_threads)
        ]
        workers += [
            ("stream", partial(self._stream, stream)),
            ("events", partial(self._events, side)),
            ("outcomes", partial(self._outcomes, side)),
            ("reads", partial(self._reads, side)),
        ]
        for name, body in workers:
            thread = threading.Thread(
                target=self._guard, args=(name, body), name=f"soak-{name}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def _guard(self, name: str, body: Callable[[], None]) -> None:
        """A bug on this side must not pass for a server fault, nor silently end a thread."""
        while not self.stop.is_set():
            try:
                body()
                return
            except Exception as exc:
                self.stats.add("client_exceptions")
                with self.stats.lock:
                    self.stats.examples.setdefault(("client", name), repr(exc)[:300])
                self.stop.wait(0.5)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=RPC_TIMEOUT + 5)
        for client in self.clients:
            client.close()

    def _failed(self, rpc: str, exc: grpc.RpcError) -> None:
        if self.stats.rpc_error(rpc, exc) in (SHED, "UNAVAILABLE"):
            self.stop.wait(0.05)  # shed (or gone): back off a little

    def _seen(self, decision: pb.Decision, sample: bool) -> None:
        seen = Seen(
            decision.decision_id,
            decision.customer_id,
            decision.time.seconds,
            decision.arm,
            decision.no_contact,
        )
        if not seen.no_contact:
            self.contacted.append(seen)
        if not sample:
            return
        self.lookup.append(seen)
        if seen.arm in self.bandit_arms:
            if len(self.early) < EARLY_BANDIT and self.clock.elapsed() < self.warmup_until:
                self.early.append(seen)
            else:
                self.for_outcome.append(seen)

    def _request(self, customer: int, when: int) -> pb.DecideRequest:
        request = pb.DecideRequest(customer_id=f"c{customer}", context=self.contexts[customer])
        request.time.seconds = when
        return request

    # -- the kinds of traffic --

    def _unary(self, client: DecisionClient, worker: int) -> None:
        rng = random.Random(1000 + worker)
        while not self.stop.is_set():
            request = self._request(rng.randrange(self.customers), self.clock.now())
            began = time.perf_counter()
            try:
                reply = client.stub.Decide(request, timeout=RPC_TIMEOUT)
            except grpc.RpcError as exc:
                self._failed("Decide", exc)
                continue
            latency = time.perf_counter() - began
            with self.stats.lock:
                self.stats.counts["decisions"] += 1
                self.stats.counts["unary_decisions"] += 1
                self.stats.latencies.append(latency)
            self._seen(reply.decision, sample=rng.random() < 0.2)

    def _batches(
        self, rng: np.random.Generator, window: threading.Semaphore
    ) -> Iterator[pb.DecideBatchRequest]:
        """DecideStream messages at the pace asked for, at most STREAM_IN_FLIGHT unanswered."""
        pacer = Pacer(self.stream_rate / self.stream_batch, self.stop)
        while pacer.tick():
            if not window.acquire(timeout=0.5):
                continue
            now = self.clock.now()
            ids = rng.choice(self.customers, self.stream_batch, replace=False).tolist()
            yield pb.DecideBatchRequest(
                requests=[self._request(c, now + j) for j, c in enumerate(ids)]
            )

    def _stream(self, client: DecisionClient) -> None:
        rng = np.random.default_rng(7)
        pick = random.Random(7)
        while not self.stop.is_set():
            window = threading.Semaphore(STREAM_IN_FLIGHT)
            try:
                for reply in client.stub.DecideStream(self._batches(rng, window)):
                    window.release()
                    decided = 0
                    for result in reply.results:
                        if result.HasField("error"):
                            self.stats.item_error("DecideStream", result.error)
                        else:
                            decided += 1
                            if pick.random() < 0.05:
                                self._seen(result.decision, sample=True)
                    with self.stats.lock:
                        self.stats.counts["decisions"] += decided
                        self.stats.counts["stream_decisions"] += decided
            except grpc.RpcError as exc:
                self._failed("DecideStream", exc)  # and open a new stream
                self.stop.wait(0.2)

    def _events(self, client: DecisionClient) -> None:
        rng = random.Random(11)
        tick = 0.25
        size = max(10, round(self.events_rate * tick))
        pacer = Pacer(1.0 / tick, self.stop)
        serial = 0
        while pacer.tick():
            now = self.clock.now()
            message = pb.ReportEventsRequest()
            # Deliveries (and some opens) of messages decided, purchases partly by their
            # customers (attributed to the decisions), partly by anyone.
            for _ in range(int(size * 0.35)):
                try:
                    seen = self.contacted.popleft()
                except IndexError:
                    break
                when = max(now, seen.time)
                _event(message, pb.EVENT_TYPE_DELIVERED, seen.customer_id, when,
                       decision_id=seen.decision_id, event_id=f"d-{seen.decision_id}")  # fmt: skip
                if rng.random() < 0.3:
                    _event(message, pb.EVENT_TYPE_OPENED, seen.customer_id, when,
                           decision_id=seen.decision_id, event_id=f"o-{seen.decision_id}")  # fmt: skip
                if rng.random() < 0.3:
                    serial += 1
                    _event(message, pb.EVENT_TYPE_PURCHASE, seen.customer_id, when,
                           event_id=f"p{serial}", value=round(rng.gammavariate(3, 20), 2))  # fmt: skip
                    self.purchase_ids.append(f"p{serial}")
            for _ in range(int(size * 0.3)):
                serial += 1
                _event(message, pb.EVENT_TYPE_PURCHASE, f"c{rng.randrange(self.customers)}", now,
                       event_id=f"p{serial}", value=round(rng.gammavariate(3, 20), 2))  # fmt: skip
                self.purchase_ids.append(f"p{serial}")
            for _ in range(max(1, int(size * 0.04))):
                serial += 1
                _event(message, pb.EVENT_TYPE_CONSENT_GRANTED, f"c{rng.randrange(self.customers)}",
                       now, channel=rng.choice(self.opt_in_channels), event_id=f"g{serial}")  # fmt: skip
            if rng.random() < 0.3:
                serial += 1
                _event(message, pb.EVENT_TYPE_CONSENT_WITHDRAWN,
                       f"c{rng.randrange(self.customers)}", now,
                       channel=rng.choice(self.opt_in_channels), event_id=f"w{serial}")  # fmt: skip
            if rng.random() < 0.5:
                serial += 1
                _event(message, pb.EVENT_TYPE_UNSUBSCRIBED, f"c{rng.randrange(self.customers)}",
                       now, channel=rng.choice(self.channels), event_id=f"u{serial}")  # fmt: skip
            if self.purchase_ids and rng.random() < 0.5:  # an event id seen before: ignored
                again = rng.choice(self.purchase_ids)
                _event(message, pb.EVENT_TYPE_PURCHASE, "c0", now, event_id=again, value=1.0)
            try:
                reply = client.report_events(message)
            except grpc.RpcError as exc:
                self._failed("ReportEvents", exc)
                continue
            ok = duplicates = 0
            for result in reply.results:
                if result.HasField("error"):
                    self.stats.item_error("ReportEvents", result.error)
                else:
                    ok += 1
                    duplicates += result.ok.duplicate
            with self.stats.lock:
                self.stats.counts["events"] += ok
                self.stats.counts["duplicate_events"] += duplicates

    def _outcomes(self, client: DecisionClient) -> None:
        rng = random.Random(13)
        pacer = Pacer(self.outcome_rate, self.stop)
        while pacer.tick():
            try:
                seen = self.for_outcome.pop()  # the newest: its window is surely open
            except IndexError:
                continue
            now = self.clock.now()
            if now - seen.time > 2 * DAY:
                continue  # too old to be sure its window is still open
            request = pb.ReportOutcomeRequest(decision_id=seen.decision_id)
            request.time.seconds = max(now, seen.time)
            if rng.random() < 0.8:
                request.reward = round(rng.uniform(-1.0, 5.0), 3)
                kind = "rewards"
            else:
                request.outcome_id = f"order-{seen.decision_id}"
                request.value = round(rng.gammavariate(3, 20), 2)
                kind = "values"
            try:
                client.stub.ReportOutcome(request, timeout=RPC_TIMEOUT)
            except grpc.RpcError as exc:
                self._failed("ReportOutcome", exc)
                continue
            self.stats.add(kind)

    def _reads(self, client: DecisionClient) -> None:
        rng = random.Random(17)
        pacer = Pacer(self.read_rate, self.stop)
        k = 0
        while pacer.tick():
            k += 1
            try:
                if k % 20 == 0:
                    client.catalog()
                    self.stats.add("reads")
                    continue
                if not self.lookup:
                    continue
                seen = self.lookup[rng.randrange(len(self.lookup))]
                reply = client.get_decision(seen.decision_id)
            except grpc.RpcError as exc:
                self._failed("GetCatalog" if k % 20 == 0 else "GetDecision", exc)
                continue
            self.stats.add("reads")
            got = reply.decision
            if (got.decision_id, got.customer_id, got.time.seconds, got.arm) != seen[:4]:
                self.stats.error(
                    "GetDecision",
                    "WRONG_ANSWER",
                    f"{seen.decision_id}: got customer {got.customer_id!r} at"
                    f" {got.time.seconds}, arm {got.arm!r}; decided {seen.customer_id!r} at"
                    f" {seen.time}, arm {seen.arm!r}",
                )


def _event(
    message: pb.ReportEventsRequest, type_: int, customer: str, when: int, **fields: str | float
) -> None:
    event = message.events.add(customer_id=customer, type=type_, **fields)
    event.time.seconds = when


def _seed(client: DecisionClient, customers: int, start: int) -> None:
    """First purchases 0-60 days before the start, and some opt-ins (push, SMS)."""
    rng = np.random.default_rng(0)
    first = start - rng.integers(0, 60 * DAY, customers)
    values = rng.gamma(4, 15, customers).round(2)
    consent = rng.random(customers)
    chunk = 5000
    for lo in range(0, customers, chunk):
        message = pb.ReportEventsRequest()
        for i in range(lo, min(lo + chunk, customers)):
            event = message.events.add(
                event_id=f"first-c{i}", customer_id=f"c{i}", type=pb.EVENT_TYPE_PURCHASE,
                value=float(values[i]),
            )  # fmt: skip
            event.time.seconds = int(first[i])
            if consent[i] < 0.4:
                grant = message.events.add(
                    event_id=f"optin-c{i}", customer_id=f"c{i}",
                    type=pb.EVENT_TYPE_CONSENT_GRANTED, channel="push" if consent[i] < 0.3 else "sms",
                )  # fmt: skip
                grant.time.seconds = int(first[i]) + 3600
        reply = client.report_events(message)
        bad = [r.error for r in reply.results if r.HasField("error")]
        if bad:
            raise RuntimeError(f"seeding refused: {len(bad)} events, e.g. {bad[0]}")


# -- the soak ---------------------------------------------------------------------------------


@dataclass
class Sample:
    elapsed: float
    rss_mb: float
    db_mb: float
    wal_mb: float
    memory: dict[str, float]  # VmRSS split: RssAnon, RssFile, RssShmem (MB)
    cpu_s: float  # the server's CPU time so far (user + system)
    load: float  # the machine's 1-minute load average (neighbours included)


def _sample(elapsed: float, pid: int, db: Path) -> Sample:
    memory = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                memory[key] = int(value.split()[0]) / 1024
    cpu_s = load = float("nan")
    with contextlib.suppress(OSError, IndexError, ValueError):
        # Fields after the ")" that ends the command name: utime and stime are the 12th, 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, IndexError, ValueError):
        load = float(Path("/proc/loadavg").read_text().split()[0])
    return Sample(
        elapsed,
        rss_mb(pid),
        file_mb(db),
        file_mb(db.with_name(f"{DB_FILE}-wal")),
        memory,
        cpu_s,
        load,
    )


def _free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def _fmt_errors(errors: Counter[str]) -> str:
    return ", ".join(f"{code}={n:,}" for code, n in errors.most_common()) or "none"


def run_soak(
    seconds: float,
    every: float,
    customers: int = 20_000,
    unary_threads: int = 8,
    stream_batch: int = 100,
    stream_rate: float = 2000.0,
    events_rate: float = 400.0,
    outcome_rate: float = 20.0,
    read_rate: float = 20.0,
    data_dir: Path | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, float]:
    """Start a server, drive mixed traffic at it for `seconds`, sample every `every` seconds,
    stop it with SIGTERM; print a line per sample and a summary, return the soak_* figures
    (judge them with `missed_targets`). `data_dir` (default: a temporary one, removed
    afterwards) must be empty or new."""
    if seconds <= 0 or every <= 0:
        raise ValueError("seconds and every must be positive")
    owned = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="anstoss-soak-")) if data_dir is None else data_dir
    directory.mkdir(parents=True, exist_ok=True)
    db, wal = directory / DB_FILE, directory / f"{DB_FILE}-wal"
    problems: list[str] = []
    process, port = start_server(directory)
    target = f"127.0.0.1:{port}"
    traffic: Traffic | None = None
    try:
        with DecisionClient(target, timeout=RPC_TIMEOUT) as client:
            client.wait_ready()
            catalog = client.catalog()
            bandit_arms = frozenset(a.name for a in catalog.arms if a.policy == "bandit")
            versions_before = {a.name: a.model_version for a in catalog.arms}
            clock = EventClock(seconds)  # restarted below, once the customers are in
            began = time.monotonic()
            _seed(client, customers, clock.start)
            out(
                f"soak: server pid {process.pid} on {target} (code {revision()}),"
                f" data dir {directory};"
                f" {customers:,} customers seeded in {time.monotonic() - began:.1f} s"
            )
        clock = EventClock(seconds)
        warmup = max(WARMUP_SHARE * seconds, min(WARMUP_MIN_S, seconds))
        out(
            f"soak: {seconds:g} s of traffic, event time {iso(clock.start)} -> {iso(clock.end)}"
            f" ({(clock.end - clock.start) / DAY:.1f} days), warm-up {warmup:g} s;"
            f" targets: RSS growth after warm-up < {RSS_GROWTH_TARGET:.0%},"
            f" WAL < {WAL_TARGET_MB:g} MB at every sample"
        )
        traffic = Traffic(
            target, clock, customers, bandit_arms,
            opt_in_channels=[c.name for c in catalog.channels if not c.default_consent],
            channels=[c.name for c in catalog.channels if not c.first_shipment_only],
            unary_threads=unary_threads, stream_batch=stream_batch, stream_rate=stream_rate,
            events_rate=events_rate, outcome_rate=outcome_rate, read_rate=read_rate,
        )  # fmt: skip
        traffic.warmup_until = warmup
        samples = [_sample(0.0, process.pid, db)]
        at_warmup: Sample | None = None
        out(
            f"{'t':>6}  {'rss MB':>7}  {'db MB':>7}  {'wal MB':>7}  {'decisions/s':>11}"
            f"  {'events/s':>8}  {'unary p99':>9}  {'cpu %':>5}  {'load':>5}  errors (interval)"
        )
        first = samples[0]
        out(
            f"{0:>5.0f}s  {first.rss_mb:7.1f}  {first.db_mb:7.1f}  {first.wal_mb:7.1f}"
            f"  {'':>11}  {'':>8}  {'':>9}  {'':>5}  {first.load:5.1f}"
        )
        traffic.start()
        marks = sorted({*np.arange(every, seconds, every).round(6).tolist(), warmup, seconds})
        last_counts: Counter[str] = Counter()
        last_errors: Counter[str] = Counter()
        last_at = 0.0
        died = False
        for mark in marks:
            while (left := mark - clock.elapsed()) > 0 and process.poll() is None:
                time.sleep(min(left, 0.5))
            if process.poll() is not None:
                died = True
                out(
                    f"soak: the server exited (code {process.returncode}) at {clock.elapsed():.0f} s"
                )
                break
            at = clock.elapsed()
            sample = _sample(at, process.pid, db)
            samples.append(sample)
            if mark == warmup:
                at_warmup = sample
            counts, errors, latencies = traffic.stats.snapshot()
            span = max(at - last_at, 1e-9)
            p99 = f"{np.percentile(latencies, 99) * 1000:6.1f} ms" if latencies else "      -  "
            out(
                f"{at:>5.0f}s  {sample.rss_mb:7.1f}  {sample.db_mb:7.1f}  {sample.wal_mb:7.1f}"
                f"  {(counts['decisions'] - last_counts['decisions']) / span:11,.0f}"
                f"  {(counts['events'] - last_counts['events']) / span:8,.0f}  {p99:>9}"
                f"  {(sample.cpu_s - samples[-2].cpu_s) / span * 100:5.0f}  {sample.load:5.1f}"
                f"  {_fmt_errors(errors - last_errors)}"
                + ("  <- end of warm-up" if mark == warmup else "")
            )
            last_counts, last_errors, last_at = counts, errors, at
            if (free := _free_gb(directory)) < MIN_FREE_GB:
                problems.append(f"stopped at {at:.0f} s: {free:.1f} GB left on the disk")
                out(f"soak: {problems[-1]}")
                break
        traffic.finish()
        stats = traffic.stats
        shm_mb = file_mb(directory / f"{DB_FILE}-shm")

        # Did the bandit learn? Early bandit decisions got no outcome: their windows closed.
        early = list(traffic.early)
        closed = learned = 0
        versions_after: dict[str, str] = {}
        if not died:
            with DecisionClient(target, timeout=RPC_TIMEOUT) as client:
                for seen in early:
                    try:
                        reply = client.get_decision(seen.decision_id)
                    except grpc.RpcError as exc:
                        stats.rpc_error("GetDecision", exc)
                        continue
                    closed += reply.status == pb.DECISION_STATUS_CLOSED
                    learned += reply.learned
                try:
                    versions_after = {a.name: a.model_version for a in client.catalog().arms}
                except grpc.RpcError as exc:
                    stats.rpc_error("GetCatalog", exc)
    finally:
        if traffic is not None:
            traffic.finish()
        shutdown_s, exit_code = _stop(process)
    db_after, wal_after = file_mb(db), file_mb(wal)
    if owned:
        shutil.rmtree(directory, ignore_errors=True)

    counts, errors, _ = stats.snapshot()
    shed = errors.pop(SHED, 0)
    base = at_warmup or samples[-1]
    rest = [s for s in samples if s.elapsed > base.elapsed]
    peak = max(rest, key=lambda s: s.rss_mb) if rest else base
    growth = (peak.rss_mb - base.rss_mb) / base.rss_mb
    wal_peak = max(samples, key=lambda s: s.wal_mb)
    ran = samples[-1].elapsed
    figures = {
        "soak_seconds": ran,
        "soak_customers": float(customers),
        "soak_rss_mb_start": samples[0].rss_mb,
        "soak_rss_mb_warmup": base.rss_mb,
        "soak_rss_mb_max": max(s.rss_mb for s in samples),
        "soak_rss_mb_end": samples[-1].rss_mb,
        "soak_rss_growth_after_warmup": growth,
        "soak_wal_mb_max": wal_peak.wal_mb,
        "soak_db_mb_end": samples[-1].db_mb,
        "soak_db_mb_after_shutdown": db_after,
        "soak_wal_mb_after_shutdown": wal_after,
        "soak_decisions": float(counts["decisions"]),
        "soak_decisions_per_s": counts["decisions"] / max(ran, 1e-9),
        "soak_events": float(counts["events"]),
        "soak_events_per_s": counts["events"] / max(ran, 1e-9),
        "soak_outcomes": float(counts["rewards"] + counts["values"]),
        "soak_reads": float(counts["reads"]),
        "soak_errors": float(sum(errors.values()) + counts["client_exceptions"]),
        "soak_unavailable": float(shed),
        "soak_bandit_learned_share": learned / len(early) if early else 0.0,
        "soak_shutdown_s": shutdown_s,
        "soak_server_died": float(died),
        "soak_stopped_early": float(bool(problems)),
        "soak_exit_code": float(exit_code),
    }

    out(f"\n== soak summary: {ran:.0f} s, {customers:,} customers ==")
    out(
        f"traffic: {counts['decisions']:,} decisions ({counts['unary_decisions']:,} unary,"
        f" {counts['stream_decisions']:,} streamed; {figures['soak_decisions_per_s']:,.0f}/s),"
        f" {counts['events']:,} events ({counts['duplicate_events']:,} duplicates;"
        f" {figures['soak_events_per_s']:,.0f}/s), {counts['rewards']:,} rewards +"
        f" {counts['values']:,} values reported, {counts['reads']:,} reads"
    )
    out(
        f"RSS: {samples[0].rss_mb:.1f} MB at start, {base.rss_mb:.1f} MB at the end of warm-up"
        f" ({base.elapsed:.0f} s), max after warm-up {peak.rss_mb:.1f} MB ({peak.elapsed:.0f} s),"
        f" {samples[-1].rss_mb:.1f} MB at the end: growth {growth:+.1%}"
        f" (target < {RSS_GROWTH_TARGET:.0%})"
        f"  {'PASS' if growth < RSS_GROWTH_TARGET else 'FAIL'}"
    )
    out(
        f"WAL: max {wal_peak.wal_mb:.1f} MB ({wal_peak.elapsed:.0f} s) (target < {WAL_TARGET_MB:g}"
        f" MB at every sample)  {'PASS' if wal_peak.wal_mb < WAL_TARGET_MB else 'FAIL'}"
    )
    split = ", ".join(
        f"{k[3:].lower()} {base.memory.get(k, 0):.1f} -> {samples[-1].memory.get(k, 0):.1f}"
        for k in ("RssAnon", "RssFile", "RssShmem")
    )
    out(f"RSS by kind, end of warm-up -> end (MB): {split}; WAL index (-shm) {shm_mb:.1f} MB")
    out(
        f"DB: {samples[-1].db_mb:.1f} MB at the end; after shutdown {db_after:.1f} MB,"
        f" WAL {wal_after:.1f} MB"
    )
    if early:
        out(
            f"bandit: of {len(early)} bandit decisions from the warm-up left without an outcome,"
            f" {closed} closed by event time, {learned} learned; model versions"
            f" {versions_before} -> {versions_after or '?'}"
        )
    out(f"errors: {_fmt_errors(errors)}" + ("" if errors else " (every call OK)"))
    for (rpc, code), n in sorted(stats.by_rpc.items()):
        example = stats.examples.get((rpc, code), "")
        out(f"  {rpc} {code}: {n:,}  e.g. {example}")
    if counts["client_exceptions"]:
        out(f"client exceptions (a bug in the soak, not the server): {counts['client_exceptions']}")
        for (rpc, name), text in stats.examples.items():
            if rpc == "client":
                out(f"  {name}: {text}")
    if shed:
        out(f"{SHED}: {shed:,} calls shed by the server's admission caps (tolerated)")
    for problem in problems:
        out(f"soak: {problem}")
    out(f"shutdown (SIGTERM): {shutdown_s:.2f} s, exit code {exit_code}")
    return figures


def _stop(process: subprocess.Popen[bytes]) -> tuple[float, int]:
    """SIGTERM, wait for the exit (SIGKILL after SHUTDOWN_TIMEOUT); seconds taken, exit code."""
    if process.poll() is not None:
        return 0.0, process.returncode
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return time.monotonic() - began, code


def missed_targets(figures: dict[str, float]) -> list[str]:
    """The soak's targets that `figures` miss (empty: all met)."""
    missed = []
    if figures["soak_server_died"]:
        missed.append("the server died during the soak")
    if figures["soak_stopped_early"]:
        missed.append("the soak stopped early (disk nearly full)")
    if figures["soak_rss_growth_after_warmup"] >= RSS_GROWTH_TARGET:
        missed.append(
            f"RSS grew {figures['soak_rss_growth_after_warmup']:.1%} after warm-up"
            f" (target < {RSS_GROWTH_TARGET:.0%})"
        )
    if figures["soak_wal_mb_max"] >= WAL_TARGET_MB:
        missed.append(
            f"WAL reached {figures['soak_wal_mb_max']:.1f} MB (target < {WAL_TARGET_MB:g} MB)"
        )
    if figures["soak_errors"]:
        missed.append(f"{figures['soak_errors']:,.0f} errors (other than load shedding)")
    if figures["soak_exit_code"] or figures["soak_shutdown_s"] >= SHUTDOWN_TIMEOUT:
        missed.append(
            f"shutdown: exit code {figures['soak_exit_code']:.0f}"
            f" after {figures['soak_shutdown_s']:.1f} s"
        )
    return missed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak a real `anstoss serve` process with mixed traffic for a bounded time "
        "(unary Decide, DecideStream, ReportEvents, ReportOutcome, GetDecision, GetCatalog; "
        "event time moving 60 days over the run), sample its RSS and the SQLite DB and WAL "
        "sizes, and judge: RSS growth after warm-up < 10 %, WAL < 256 MB at every sample, no "
        "errors but load shedding, a clean SIGTERM shutdown. Figures go to "
        "benchmarks/results.json (soak_*); exit code 1 if a target is missed.",
    )
    parser.add_argument(
        "--seconds", type=float, default=600.0, help="traffic duration (default: %(default)g)"
    )
    parser.add_argument(
        "--every", type=float, default=10.0, help="sample interval, seconds (default: %(default)g)"
    )
    parser.add_argument(
        "--customers", type=int, default=20_000, help="customers seeded (default: %(default)s)"
    )
    parser.add_argument(
        "--unary-threads",
        type=int,
        default=8,
        help="unary Decide threads, one call in flight each (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-batch",
        type=int,
        default=100,
        help="DecideStream batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-rate",
        type=float,
        default=2000.0,
        help="DecideStream decisions/s; 0 = as fast as the server answers, which saturates the"
        " two cores (default: %(default)g)",
    )
    parser.add_argument(
        "--events-rate", type=float, default=400.0, help="events/s reported (default: %(default)g)"
    )
    parser.add_argument(
        "--outcome-rate",
        type=float,
        default=20.0,
        help="ReportOutcome calls/s (default: %(default)g)",
    )
    parser.add_argument(
        "--read-rate",
        type=float,
        default=20.0,
        help="GetDecision/GetCatalog calls/s (default: %(default)g)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep the server's data here (default: a temporary dir)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not write benchmarks/results.json"
    )
    args = parser.parse_args(argv)
    figures = run_soak(
        args.seconds, args.every, customers=args.customers, unary_threads=args.unary_threads,
        stream_batch=args.stream_batch, stream_rate=args.stream_rate,
        events_rate=args.events_rate, outcome_rate=args.outcome_rate,
        read_rate=args.read_rate, data_dir=args.data_dir,
    )  # fmt: skip
    if not args.no_record:
        from benchmarks.results import RESULTS, record

        record(figures)
        print(f"figures written to {RESULTS}")
    missed = missed_targets(figures)
    for problem in missed:
        print(f"TARGET MISSED: {problem}")
    print("soak: PASS" if not missed else "soak: FAIL")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
