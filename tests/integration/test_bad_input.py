"""Acceptance 3: bad input gets the right status naming the field, and the server keeps serving."""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2

from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.app import RunningServer
from engine.server.client import DecisionClient, timestamp
from tests.conftest import DAY, T0

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _request(**context: object) -> pb.DecideRequest:
    return pb.DecideRequest(
        customer_id="c1", time=timestamp(T0), context=pb.CustomerContext(**context)
    )


def _with_candidates(*pairs: tuple[str, str]) -> pb.DecideRequest:
    request = _request()
    for touchpoint, channel in pairs:
        request.candidates.add(touchpoint=touchpoint, channel=channel)
    return request


DECIDE_CASES = {
    "empty customer id": (
        pb.DecideRequest(customer_id="", time=timestamp(T0)),
        INVALID,
        "customer_id",
    ),
    "blank customer id": (
        pb.DecideRequest(customer_id="  ", time=timestamp(T0)),
        INVALID,
        "customer_id",
    ),
    "missing time": (pb.DecideRequest(customer_id="c1"), INVALID, "time"),
    "NaN feature": (_request(numeric={"age": math.nan}), INVALID, "context.numeric['age']"),
    "infinite feature": (
        _request(numeric={"score": math.inf}),
        INVALID,
        "context.numeric['score']",
    ),
    "negative infinite feature": (
        _request(numeric={"s": -math.inf}),
        INVALID,
        "context.numeric['s']",
    ),
    "unknown touchpoint": (
        _with_candidates(("birthday_cake", "email")),
        INVALID,
        "candidates[0].touchpoint",
    ),
    "unknown channel": (_with_candidates(("welcome", "fax")), INVALID, "candidates[0].channel"),
    "channel without touchpoint": (
        _with_candidates(("", "email")),
        INVALID,
        "candidates[0].touchpoint",
    ),
    "pair not in catalog": (_with_candidates(("welcome", "sms")), INVALID, "candidates[0]"),
    "duplicate candidates": (
        _with_candidates(("welcome", "email"), ("voucher", "email"), ("welcome", "email")),
        INVALID,
        "candidates[2]",
    ),
    "too many features": (
        _request(numeric={f"f{i}": 1.0 for i in range(65)}),
        EXHAUSTED,
        "context.numeric",
    ),
    "too long customer id": (
        pb.DecideRequest(customer_id="x" * 129, time=timestamp(T0)),
        EXHAUSTED,
        "customer_id",
    ),
    "negative occasion": (_request(days_to_occasion=-1), INVALID, "context.days_to_occasion"),
    "feature both numeric and categorical": (
        _request(numeric={"tier": 1.0}, categorical={"tier": "gold"}),
        INVALID,
        "context.categorical['tier']",
    ),
}


def _assert_fails(call: Callable[[], object], code: grpc.StatusCode, field: str) -> None:
    """The call fails with `code`, and the message starts with the exact field path."""
    with pytest.raises(grpc.RpcError) as failure:
        call()
    assert failure.value.code() == code, failure.value.details()
    assert failure.value.details().startswith(field + ": "), failure.value.details()
    assert "Traceback" not in failure.value.details()


def _assert_still_serving(client: DecisionClient) -> None:
    assert client.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    assert client.decide("healthy-customer", T0).decision_id


@pytest.mark.parametrize("case", list(DECIDE_CASES))
def test_bad_decide_request_names_the_field(client: DecisionClient, case: str) -> None:
    request, code, field = DECIDE_CASES[case]
    _assert_fails(lambda: client.stub.Decide(request, timeout=5), code, field)
    _assert_still_serving(client)


def test_message_over_the_size_limit_is_resource_exhausted(client: DecisionClient) -> None:
    request = _request(categorical={"note": "x" * (5 * 1024 * 1024)})
    with pytest.raises(grpc.RpcError) as failure:
        client.stub.Decide(request, timeout=10)
    assert failure.value.code() == EXHAUSTED
    _assert_still_serving(client)


def test_stream_batch_over_the_limit_is_refused_and_the_stream_goes_on(
    client: DecisionClient, server: RunningServer
) -> None:
    too_many = [pb.DecideRequest(customer_id=f"c{i}", time=timestamp(T0)) for i in range(1001)]
    fine = [pb.DecideRequest(customer_id="after", time=timestamp(T0))]
    refused, decided = list(client.decide_stream([too_many, fine]))
    assert refused.error.code == EXHAUSTED.value[0]
    assert refused.error.field == "requests"
    assert "1001 requests exceed the batch limit of 1000" in refused.error.message
    assert len(refused.results) == 0
    assert decided.results[0].decision.customer_id == "after"
    assert not decided.HasField("error")
    assert len(server.engine.store.decisions_frame()) == 1  # nothing of the refused batch
    _assert_still_serving(client)


def test_bad_item_in_a_stream_batch_gets_its_own_error(client: DecisionClient) -> None:
    batch = [
        pb.DecideRequest(customer_id="a", time=timestamp(T0)),
        pb.DecideRequest(customer_id="", time=timestamp(T0)),
        _request(numeric={"x": math.nan}),
    ]
    (reply,) = list(client.decide_stream([batch]))
    assert reply.results[0].decision.customer_id == "a"
    assert reply.results[1].error.code == INVALID.value[0]
    assert reply.results[1].error.field == "requests[1].customer_id"
    assert reply.results[2].error.field == "requests[2].context.numeric['x']"
    _assert_still_serving(client)


def test_unknown_decision_id_is_not_found(client: DecisionClient) -> None:
    _assert_fails(
        lambda: client.outcome("no-such-decision", T0, reward=1.0),
        grpc.StatusCode.NOT_FOUND,
        "decision_id",
    )
    _assert_fails(
        lambda: client.get_decision("no-such-decision"), grpc.StatusCode.NOT_FOUND, "decision_id"
    )
    _assert_fails(
        lambda: client.event("c1", T0, EventType.OPENED, decision_id="no-such-decision"),
        grpc.StatusCode.NOT_FOUND,
        "event.decision_id",
    )
    _assert_still_serving(client)


EVENT_CASES = {
    "no type": (pb.Event(customer_id="c", time=timestamp(T0)), "event.type"),
    "negative purchase": (
        pb.Event(customer_id="c", time=timestamp(T0), type=1, value=-5),
        "event.value",
    ),
    "NaN purchase": (
        pb.Event(customer_id="c", time=timestamp(T0), type=1, value=math.nan),
        "event.value",
    ),
    "unknown channel": (
        pb.Event(
            customer_id="c", time=timestamp(T0), type=int(EventType.UNSUBSCRIBED), channel="fax"
        ),
        "event.channel",
    ),
    "unsubscribe without channel": (
        pb.Event(customer_id="c", time=timestamp(T0), type=int(EventType.UNSUBSCRIBED)),
        "event.channel",
    ),
    "open without decision": (
        pb.Event(customer_id="c", time=timestamp(T0), type=int(EventType.OPENED)),
        "event.decision_id",
    ),
    "no customer": (pb.Event(time=timestamp(T0), type=1, value=3), "event.customer_id"),
    "no time": (pb.Event(customer_id="c", type=1, value=3), "event.time"),
}


@pytest.mark.parametrize("case", list(EVENT_CASES))
def test_bad_event_names_the_field(client: DecisionClient, case: str) -> None:
    event, field = EVENT_CASES[case]
    _assert_fails(
        lambda: client.stub.ReportEvent(pb.ReportEventRequest(event=event), timeout=5),
        INVALID,
        field,
    )
    _assert_still_serving(client)


def test_bad_events_in_a_batch_get_their_own_errors(client: DecisionClient) -> None:
    message = pb.ReportEventsRequest(
        events=[
            pb.Event(customer_id="c", time=timestamp(T0), type=1, value=10, event_id="ok-1"),
            pb.Event(customer_id="c", time=timestamp(T0), type=1, value=-1),
            pb.Event(
                customer_id="c", time=timestamp(T0), type=int(EventType.CLICKED), decision_id="nope"
            ),
        ]
    )
    reply = client.report_events(message)
    assert not reply.results[0].HasField("error")
    assert reply.results[1].error.field == "events[1].value"
    assert reply.results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert reply.results[2].error.field == "events[2].decision_id"
    assert reply.results[2].error.message.startswith("events[2].decision_id: ")


OUTCOME_CASES = {
    "neither reward nor value": ({}, "outcome"),
    "NaN reward": ({"reward": math.nan}, "reward"),
    "negative value": ({"value": -1.0, "outcome_id": "o"}, "value"),
    "value without outcome id": ({"value": 3.0}, "outcome_id"),
    "value under the reward's id": ({"value": 3.0, "outcome_id": "reward"}, "outcome_id"),
}


@pytest.mark.parametrize("case", list(OUTCOME_CASES))
def test_bad_outcome_names_the_field(client: DecisionClient, case: str) -> None:
    decision = client.decide("c1", T0)
    kwargs, field = OUTCOME_CASES[case]
    request = pb.ReportOutcomeRequest(
        decision_id=decision.decision_id, time=timestamp(T0), **kwargs
    )
    _assert_fails(lambda: client.stub.ReportOutcome(request, timeout=5), INVALID, field)
    _assert_still_serving(client)


def test_same_outcome_reported_twice_is_learned_once(
    client: DecisionClient, server: RunningServer
) -> None:
    bandit = next(d for d in (client.decide(f"o{i}", T0) for i in range(40)) if d.arm == "bandit")
    before = server.engine.updates
    first = client.outcome(bandit.decision_id, T0 + DAY, reward=4.0)
    second = client.outcome(bandit.decision_id, T0 + DAY, reward=4.0)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.status == second.status == pb.DECISION_STATUS_CLOSED
    assert second.reward == 4.0
    assert server.engine.updates == before + 1
    # A different reward for a closed decision is refused, not learned.
    _assert_fails(
        lambda: client.outcome(bandit.decision_id, T0 + DAY, reward=9.0, outcome_id="late"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "decision_id",
    )
    assert server.engine.updates == before + 1
    assert client.get_decision(bandit.decision_id).learned
    _assert_still_serving(client)


def test_same_purchase_event_twice_is_applied_once(client: DecisionClient) -> None:
    client.event("p", T0, EventType.PURCHASE, value=20.0, event_id="order-1")
    d = client.decide("p", T0 + 60)
    first = client.event("p", T0 + DAY, EventType.PURCHASE, value=30.0, event_id="order-2")
    again = client.event("p", T0 + DAY, EventType.PURCHASE, value=30.0, event_id="order-2")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert (first.decisions_attributed, again.decisions_attributed) == (1, 0)
    assert client.get_decision(d.decision_id).attributed_value == 30.0
