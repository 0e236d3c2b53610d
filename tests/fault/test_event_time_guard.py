"""Event time can be neither walked nor wedged (issue 10, item 3).

Reproducers: twelve Decides 30 days apart walked event time a year ahead and closed every open
window early with the no-purchase reward; a first request dated 9999-12-31 (or 1970, an unset
Timestamp) was accepted; a server with no traffic for 31 days refused all live traffic; nanos
outside 0..999,999,999 were accepted; decisions logged behind event time never closed.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from engine.config import EngineConfig, TimeConfig
from engine.decide import DecisionEngine
from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient
from engine.store.sqlite import SQLiteStore
from engine.timeutil import MAX_SECONDS
from tests.conftest import DAY, T0, Clock, ServeFactory

INVALID = grpc.StatusCode.INVALID_ARGUMENT
REPLAY = TimeConfig(mode="replay")


def _decide_at(client: DecisionClient, customer: str, seconds: int, nanos: int = 0) -> pb.Decision:
    request = pb.DecideRequest(customer_id=customer)
    request.time.seconds, request.time.nanos = seconds, nanos
    return client.stub.Decide(request, timeout=5).decision


def _refused(call: object, field: str, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as failure:
        call()  # type: ignore[operator]
    assert failure.value.code() == INVALID, failure.value.details()
    details = failure.value.details()
    assert details.startswith(field + ": "), details
    for word in words:
        assert word in details, details
    return details


def test_event_time_cannot_be_walked_ahead_of_the_clock(serve: ServeFactory) -> None:
    clock = Clock(T0)
    running, client = serve(clock=clock)
    client.event("w", T0 - DAY, EventType.PURCHASE, value=20.0, event_id="w-1")
    mine = client.decide("w", T0)
    accepted = 0
    for step in range(1, 13):  # each 30 days after the one before: all ahead of the clock
        try:
            _decide_at(client, f"walker{step}", T0 + step * 30 * DAY)
            accepted += 1
        except grpc.RpcError as exc:
            assert exc.code() == INVALID
            assert "time.max_ahead_seconds" in exc.details()
    assert accepted == 0
    assert client.get_decision(mine.decision_id).status == pb.DECISION_STATUS_OPEN
    assert running.engine.store.watermark == T0
    # Within the skew, time moves; a genuine purchase still finds the window open.
    _decide_at(client, "early", T0 + 600)
    purchase = client.event("w", T0 + 300, EventType.PURCHASE, value=9.0, event_id="w-2")
    assert purchase.decisions_attributed == 1
    # As the clock really moves, the window closes with the purchase in it.
    clock.now = T0 + 12 * DAY
    client.decide("later", T0 + 12 * DAY)
    state = client.get_decision(mine.decision_id)
    assert state.status == pb.DECISION_STATUS_CLOSED
    assert state.attributed_value == 9.0


@pytest.mark.parametrize(
    ("seconds", "nanos", "words"),
    [
        (MAX_SECONDS, 0, ("9999-12-31",)),  # live: far ahead of the clock
        (0, 0, ("time.earliest", "unset")),  # 1970-01-01, what an unset Timestamp reads as
        (-62135596800, 0, ("time.earliest",)),  # year 1
        (T0, -1, ("nanos",)),
        (T0, 1_000_000_000, ("nanos",)),
        (2**62, 0, ("too late",)),
        (-(2**62), 0, ("time.earliest",)),
    ],
)
def test_an_implausible_time_is_refused_naming_the_field(
    serve: ServeFactory, seconds: int, nanos: int, words: tuple[str, ...]
) -> None:
    _, client = serve(clock=Clock(T0))
    _refused(lambda: _decide_at(client, "c", seconds, nanos), "time", *words)
    event = pb.Event(customer_id="c", type=pb.EVENT_TYPE_PURCHASE, value=5)
    event.time.seconds, event.time.nanos = seconds, nanos
    _refused(
        lambda: client.stub.ReportEvent(pb.ReportEventRequest(event=event), timeout=5),
        "event.time",
        *words,
    )
    outcome = pb.ReportOutcomeRequest(decision_id="x", reward=1.0)
    outcome.time.seconds, outcome.time.nanos = seconds, nanos
    _refused(lambda: client.stub.ReportOutcome(outcome, timeout=5), "time", *words)
    assert client.decide("after", T0).decision_id  # and the server serves


def test_an_unset_timestamp_is_refused(serve: ServeFactory) -> None:
    _, client = serve(clock=Clock(T0))
    _refused(lambda: client.stub.Decide(pb.DecideRequest(customer_id="c"), timeout=5), "time")


def test_replay_mode_moves_freely_but_keeps_windows_in_the_timestamp_range(
    serve: ServeFactory,
) -> None:
    _, client = serve(clock=Clock(T0), time=REPLAY)
    far = client.decide("c", T0 + 3 * 365 * DAY)  # years ahead of the clock: a simulation
    assert far.time.seconds == T0 + 3 * 365 * DAY
    last = MAX_SECONDS - 11 * DAY  # window (10 days) and lateness (1 day) still fit
    decision = _decide_at(client, "late", last)
    assert decision.attribution_window_end.ToJsonString().startswith("9999-12-")
    _refused(lambda: _decide_at(client, "later", last + 1), "time", "9999-12-31")
    _refused(lambda: _decide_at(client, "old", 0), "time", "time.earliest")


def test_a_long_pause_in_traffic_does_not_lock_out_live_traffic(serve: ServeFactory) -> None:
    clock = Clock(T0)
    _, client = serve(clock=clock)
    client.decide("before", T0)
    clock.now = T0 + 45 * DAY  # nobody called for 45 days
    assert client.decide("after", T0 + 45 * DAY).decision_id


def test_a_decision_logged_behind_event_time_closes_at_the_next_call(
    serve: ServeFactory,
) -> None:
    running, client = serve(clock=Clock(T0 + 100 * DAY))
    client.decide("ahead", T0 + 100 * DAY)
    backfilled = client.decide("backfill", T0)  # its window ended long before event time
    client.decide("someone", T0 + 100 * DAY)  # event time did not move
    state = client.get_decision(backfilled.decision_id)
    assert state.status == pb.DECISION_STATUS_CLOSED
    assert running.engine.store.watermark == T0 + 100 * DAY


def test_event_time_survives_a_restart(
    serve: ServeFactory, tmp_path: Path, config: EngineConfig
) -> None:
    running, client = serve(clock=Clock(T0 + DAY), name="wm.db")
    client.decide("a", T0)
    client.event("a", T0 + 3600, EventType.PURCHASE, value=5.0, event_id="e")  # no decision due
    running.server.stop(0).wait(5)
    running.engine.close()
    store = SQLiteStore(tmp_path / "wm.db", config.catalog)
    assert store.watermark == T0 + 3600
    DecisionEngine(config, store).close()


def test_a_store_used_in_replay_mode_is_not_served_live(
    serve: ServeFactory, make_engine: object
) -> None:
    from engine.errors import ConfigError
    from engine.server.app import start_server

    running, client = serve(clock=Clock(T0), time=REPLAY, name="replayed.db")
    client.decide("c", T0 + 100 * DAY)  # a simulation ran ahead of the clock
    running.server.stop(0).wait(5)
    engine = running.engine
    live = engine.config.replace(time=TimeConfig())
    engine.config = live
    with pytest.raises(ConfigError, match=r"time\.mode"):
        start_server(engine, port=0, clock=Clock(T0))


def test_time_earliest_must_be_after_1970(tmp_path: Path) -> None:
    from engine.config import load_config
    from engine.errors import ConfigError

    path = tmp_path / "engine.toml"
    path.write_text("[time]\nearliest = 1969-12-31T00:00:00Z\n")
    with pytest.raises(ConfigError, match=r"time\.earliest"):
        load_config(path)
