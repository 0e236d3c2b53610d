"""Issue 11: what a channel system relies on, over the wire of a real server on loopback.

Customers' wishes are never undone by accident (unsubscribe vs consent sync, event ids scoped
to the customer), a decision is a contact only when it was made once and executed (request ids,
deferred activation, checked delivery events), and what the server reports says what it counts.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient
from tests.conftest import DAY, T0, ServeFactory

EMAIL_ACTIONS = {"welcome", "cross_sell", "voucher", "reminder", "nps_survey", "occasion"}


def _rules(decision: pb.Decision, channel: str) -> dict[str, int]:
    """touchpoint -> rule of the removed actions on `channel`."""
    return {r.action.touchpoint: r.rule for r in decision.removed if r.action.channel == channel}


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()


def _error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


# -- customers' wishes --------------------------------------------------------------------------


def test_a_consent_sync_never_reopens_an_unsubscribe(client: DecisionClient) -> None:
    client.event("u1", T0, EventType.PURCHASE, value=50.0)
    client.event("u1", T0 + 3600, EventType.UNSUBSCRIBED, channel="email")
    # The CRM re-sends its consent table: e-mail "granted" again, later than the unsubscribe.
    client.event("u1", T0 + 7200, EventType.CONSENT_GRANTED, channel="email")
    d = client.decide("u1", T0 + 2 * DAY)
    rules = _rules(d, "email")
    assert rules and set(rules.values()) == {pb.ELIGIBILITY_RULE_UNSUBSCRIBED}
    assert all(e.action.channel != "email" for e in d.eligible)
    # A withdrawal and a grant in either order change nothing either.
    client.event("u1", T0 + 3 * DAY, EventType.CONSENT_WITHDRAWN, channel="email")
    client.event("u1", T0 + 3 * DAY + 1, EventType.CONSENT_GRANTED, channel="email")
    d = client.decide("u1", T0 + 4 * DAY)
    assert set(_rules(d, "email").values()) == {pb.ELIGIBILITY_RULE_UNSUBSCRIBED}
    # Only the customer's explicit re-subscription reopens the channel.
    client.event("u1", T0 + 5 * DAY, EventType.RESUBSCRIBED, channel="email")
    d = client.decide("u1", T0 + 6 * DAY)
    after = _rules(d, "email")
    assert pb.ELIGIBILITY_RULE_UNSUBSCRIBED not in after.values()
    assert pb.ELIGIBILITY_RULE_NO_CONSENT not in after.values()
    assert any(e.action.channel == "email" for e in d.eligible)


def test_a_resubscription_older_than_the_unsubscribe_does_not_reopen(
    client: DecisionClient,
) -> None:
    """The two subscription events are ordered by time, not by arrival (a late delivery of an
    old re-subscription must not undo today's unsubscribe)."""
    client.event("u2", T0, EventType.PURCHASE, value=50.0)
    client.event("u2", T0 + 2 * DAY, EventType.UNSUBSCRIBED, channel="email")
    client.event("u2", T0 + DAY, EventType.RESUBSCRIBED, channel="email")  # arrives late
    d = client.decide("u2", T0 + 3 * DAY)
    assert set(_rules(d, "email").values()) == {pb.ELIGIBILITY_RULE_UNSUBSCRIBED}


def test_event_ids_are_scoped_to_the_customer(client: DecisionClient) -> None:
    client.event("x", T0, EventType.PURCHASE, value=10.0, event_id="e-1")
    client.event("y", T0, EventType.PURCHASE, value=20.0, event_id="o-y")
    # Another customer's event with the same id is another event: applied, not a duplicate.
    reply = client.event("y", T0 + 60, EventType.UNSUBSCRIBED, channel="email", event_id="e-1")
    assert not reply.duplicate
    d = client.decide("y", T0 + DAY)
    assert set(_rules(d, "email").values()) == {pb.ELIGIBILITY_RULE_UNSUBSCRIBED}
    # The same event again is a duplicate; nothing changes.
    assert client.event("x", T0, EventType.PURCHASE, value=10.0, event_id="e-1").duplicate


def test_a_reused_event_id_with_other_content_is_already_exists(client: DecisionClient) -> None:
    client.event("z", T0, EventType.PURCHASE, value=10.0, event_id="order-7")
    error = _error(
        lambda: client.event("z", T0, EventType.PURCHASE, value=99.0, event_id="order-7")
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details().startswith("event.event_id: 'order-7' was used for another event")
    assert "value 10.0 then 99.0" in error.details()
    # In a batch: an item error in its place, the other events are applied.
    reply = client.report_events(
        pb.ReportEventsRequest(
            events=[
                pb.Event(
                    event_id="order-7", customer_id="z", time=Timestamp(seconds=T0 + 5),
                    type=pb.EVENT_TYPE_PURCHASE, value=10.0,
                ),
                pb.Event(
                    event_id="order-8", customer_id="z", time=Timestamp(seconds=T0 + 5),
                    type=pb.EVENT_TYPE_PURCHASE, value=5.0,
                ),
            ]
        )
    )  # fmt: skip
    first, second = reply.results
    assert first.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert first.error.field == "events[0].event_id"
    assert "time" in first.error.message
    assert second.HasField("ok") and not second.ok.duplicate


# -- a decision is a contact once, when executed ------------------------------------------------


def test_a_retried_decide_returns_the_same_decision(client: DecisionClient, server: object) -> None:
    client.event("r1", T0, EventType.PURCHASE, value=40.0)
    first = client.decide("r1", T0 + DAY, request_id="print-run-12/4711")
    again = client.decide("r1", T0 + DAY, request_id="print-run-12/4711")
    assert not first.duplicate and again.duplicate
    assert again.decision_id == first.decision_id
    assert (again.action, again.probability, again.time) == (
        first.action,
        first.probability,
        first.time,
    )
    assert again.request_id == "print-run-12/4711"
    frame = server.engine.store.decisions_frame()  # type: ignore[attr-defined]
    assert (frame["customer_id"] == "r1").sum() == 1  # logged once: caps and gaps count it once
    # The same key with another time is a different request: refused, nothing logged.
    error = _error(lambda: client.decide("r1", T0 + DAY + 60, request_id="print-run-12/4711"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details().startswith("request_id: ")
    # Another customer's request with the same key is her own.
    other = client.decide("r2", T0 + DAY, request_id="print-run-12/4711")
    assert not other.duplicate and other.decision_id != first.decision_id
    frame = server.engine.store.decisions_frame()  # type: ignore[attr-defined]
    assert len(frame) == 2


def test_a_stream_batch_that_repeats_a_request_decides_it_once(client: DecisionClient) -> None:
    request = pb.DecideRequest(
        customer_id="s1", time=Timestamp(seconds=T0 + DAY), request_id="batch-1"
    )
    conflicting = pb.DecideRequest(
        customer_id="s1", time=Timestamp(seconds=T0 + DAY + 1), request_id="batch-1"
    )
    [reply] = list(client.decide_stream([[request, request, conflicting]]))
    a, b, c = reply.results
    assert a.decision.decision_id == b.decision.decision_id
    assert not a.decision.duplicate and b.decision.duplicate
    assert c.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert c.error.field == "requests[2].request_id"


def _contact(client: DecisionClient, customer: str, when: int, defer: bool) -> pb.Decision:
    """A decision that contacts (the chain's day-1 welcome e-mail)."""
    d = client.decide(customer, when, defer_activation=defer)
    assert (d.action.touchpoint, d.action.channel) == ("welcome", "email"), d
    return d


def _probe_gap(client: DecisionClient, customer: str, when: int) -> bool:
    """Whether e-mail is held back by its minimum gap at `when` (a deferred probe that never
    counts itself)."""
    d = client.decide(customer, when, candidates=[("reminder", "email")], defer_activation=True)
    return _rules(d, "email").get("reminder") == pb.ELIGIBILITY_RULE_MIN_GAP


def test_a_deferred_decision_counts_as_a_contact_only_once_delivered(
    serve: ServeFactory,
) -> None:
    _, client = serve(policy="chain")
    client.event("d1", T0, EventType.PURCHASE, value=40.0)
    d = _contact(client, "d1", T0 + DAY, defer=True)
    assert d.defer_activation
    assert client.get_decision(d.decision_id).activation == pb.ACTIVATION_PENDING
    assert not _probe_gap(client, "d1", T0 + DAY + 60)  # decided, not sent: no contact yet
    client.event("d1", T0 + DAY + 3600, EventType.DELIVERED, decision_id=d.decision_id)
    assert _probe_gap(client, "d1", T0 + DAY + 3660)  # sent: the gap runs from the delivery
    read = client.get_decision(d.decision_id)
    assert read.activation == pb.ACTIVATION_ACTIVE
    assert read.delivered_time.seconds == T0 + DAY + 3600
    # Delivered: it can no longer be taken back.
    error = _error(
        lambda: client.event(
            "d1", T0 + DAY + 7200, EventType.NOT_EXECUTED, decision_id=d.decision_id
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The gap is measured from the delivery, not from the decision.
    assert _probe_gap(client, "d1", T0 + 2 * DAY + 1800)
    assert not _probe_gap(client, "d1", T0 + 2 * DAY + 3600)


def test_an_immediate_decision_counts_at_once_and_not_executed_frees_it(
    serve: ServeFactory,
) -> None:
    _, client = serve(policy="chain")
    client.event("n1", T0, EventType.PURCHASE, value=40.0)
    d = _contact(client, "n1", T0 + DAY, defer=False)
    assert _probe_gap(client, "n1", T0 + DAY + 60)
    client.event("n1", T0 + DAY + 120, EventType.NOT_EXECUTED, decision_id=d.decision_id)
    assert not _probe_gap(client, "n1", T0 + DAY + 180)
    read = client.get_decision(d.decision_id)
    assert read.activation == pb.ACTIVATION_NOT_EXECUTED
    assert read.not_executed_time.seconds == T0 + DAY + 120
    # Taken back: no delivery, no reward, ever.
    error = _error(
        lambda: client.event("n1", T0 + DAY + 240, EventType.DELIVERED, decision_id=d.decision_id)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _code(lambda: client.outcome(d.decision_id, T0 + DAY + 300, reward=5.0)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


def test_decisions_not_executed_are_logged_but_never_learned(serve: ServeFactory) -> None:
    running, client = serve(policy="bandit")
    engine = running.engine
    contacts: dict[str, list[str]] = {"never_delivered": [], "taken_back": [], "executed": []}
    for i in range(60):
        customer = f"b{i}"
        client.event(customer, T0, EventType.PURCHASE, value=40.0)
        kind = list(contacts)[i % 3]
        d = client.decide(customer, T0 + DAY, defer_activation=kind != "executed")
        if d.no_contact:
            continue
        if kind == "taken_back":
            client.event(customer, T0 + DAY + 60, EventType.NOT_EXECUTED, decision_id=d.decision_id)
        contacts[kind].append(d.decision_id)
    assert all(len(v) >= 3 for v in contacts.values()), contacts
    before = engine.updates
    client.event("late", T0 + 30 * DAY, EventType.PURCHASE, value=1.0)  # every window closes
    deadline = __import__("time").monotonic() + 10
    while engine.backlog and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    learned_contacts = 0
    for kind, ids in contacts.items():
        for decision_id in ids:
            read = client.get_decision(decision_id)
            assert read.status == pb.DECISION_STATUS_CLOSED
            if kind == "executed":
                assert read.activation == pb.ACTIVATION_ACTIVE and read.HasField("reward")
                assert read.learned
                learned_contacts += 1
            else:
                assert read.activation == pb.ACTIVATION_NOT_EXECUTED, (kind, read)
                assert not read.HasField("reward") and not read.learned
                assert read.HasField("not_executed_time")
    # Every closed decision the bandit learned is an executed one or a "no contact".
    frame = engine.store.decisions_frame()
    closed = frame[frame["status"] == "closed"]
    active = (closed["activation"] == "active").sum()
    assert engine.updates - before == active
    assert (closed["activation"] == "not_executed").sum() == sum(
        len(contacts[k]) for k in ("never_delivered", "taken_back")
    )
    assert learned_contacts == len(contacts["executed"])


def test_delivery_events_are_checked_against_their_decision(serve: ServeFactory) -> None:
    _, client = serve(policy="chain")
    client.event("v1", T0, EventType.PURCHASE, value=40.0)
    d = _contact(client, "v1", T0 + DAY, defer=False)
    nothing = client.decide("v1", T0 + 2 * DAY)  # the chain has no step on day 2
    assert nothing.no_contact

    def deliver(customer: str, when: int, decision_id: str, kind: EventType) -> grpc.RpcError:
        return _error(lambda: client.event(customer, when, kind, decision_id=decision_id))

    wrong = deliver("someone-else", T0 + DAY + 60, d.decision_id, EventType.DELIVERED)
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wrong.details().startswith("event.customer_id: ")
    early = deliver("v1", T0 + DAY - 60, d.decision_id, EventType.OPENED)
    assert early.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert early.details().startswith("event.time: ")
    for kind in (EventType.DELIVERED, EventType.CLICKED, EventType.NOT_EXECUTED):
        empty = deliver("v1", T0 + 2 * DAY + 60, nothing.decision_id, kind)
        assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "made no contact" in empty.details()
    unknown = deliver("v1", T0 + DAY + 60, "nope-0000000001", EventType.DELIVERED)
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    # Valid reports are kept, the first time of each.
    client.event("v1", T0 + DAY + 600, EventType.DELIVERED, decision_id=d.decision_id)
    client.event("v1", T0 + DAY + 300, EventType.DELIVERED, decision_id=d.decision_id)  # earlier
    client.event("v1", T0 + DAY + 900, EventType.OPENED, decision_id=d.decision_id)
    client.event("v1", T0 + DAY + 960, EventType.CLICKED, decision_id=d.decision_id)
    client.event("v1", T0 + DAY + 990, EventType.CLICKED, decision_id=d.decision_id)
    read = client.get_decision(d.decision_id)
    assert read.delivered_time.seconds == T0 + DAY + 300
    assert read.opened_time.seconds == T0 + DAY + 900
    assert read.clicked_time.seconds == T0 + DAY + 960
    assert not client.get_decision(nothing.decision_id).HasField("delivered_time")
    # In a batch, each bad event gets its own error with its position.
    reply = client.report_events(
        pb.ReportEventsRequest(
            events=[
                pb.Event(customer_id="v1", time=Timestamp(seconds=T0 + DAY + 1000),
                         type=pb.EVENT_TYPE_OPENED, decision_id=d.decision_id),
                pb.Event(customer_id="intruder", time=Timestamp(seconds=T0 + DAY + 1000),
                         type=pb.EVENT_TYPE_OPENED, decision_id=d.decision_id),
            ]
        )
    )  # fmt: skip
    assert reply.results[0].HasField("ok")
    assert reply.results[1].error.field == "events[1].customer_id"
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


# -- times, values and limits as reported -------------------------------------------------------


def test_sub_second_times_are_rounded_down_to_the_second(client: DecisionClient) -> None:
    """As the .proto says: nanos are accepted and dropped, so an event in the second of a
    decision counts as simultaneous with it (inside its window)."""
    client.event("t1", T0, EventType.PURCHASE, value=40.0)
    request = pb.DecideRequest(
        customer_id="t1", time=Timestamp(seconds=T0 + DAY, nanos=999_999_999)
    )
    d = client.stub.Decide(request, timeout=10).decision
    assert (d.time.seconds, d.time.nanos) == (T0 + DAY, 0)
    event = pb.Event(
        customer_id="t1", time=Timestamp(seconds=T0 + DAY, nanos=1), type=pb.EVENT_TYPE_PURCHASE,
        value=12.5,
    )  # fmt: skip
    reply = client.stub.ReportEvent(pb.ReportEventRequest(event=event), timeout=10)
    assert reply.decisions_attributed == 1
    assert client.get_decision(d.decision_id).attributed_value == 12.5


def test_reported_values_are_counted_apart_from_purchases(client: DecisionClient) -> None:
    client.event("p1", T0, EventType.PURCHASE, value=40.0)
    d = client.decide("p1", T0 + DAY)
    client.outcome(d.decision_id, T0 + DAY + 60, value=30.0, outcome_id="voucher-order-1")
    client.event("p1", T0 + DAY + 120, EventType.PURCHASE, value=20.0)
    read = client.get_decision(d.decision_id)
    assert read.attributed_purchases == 1  # the PURCHASE event only
    assert (read.reported_values, read.reported_value) == (1, 30.0)
    assert read.attributed_value == 50.0


def test_get_catalog_tells_every_limit_and_rule(client: DecisionClient, server: object) -> None:
    import dataclasses

    config = server.engine.config  # type: ignore[attr-defined]
    catalog = client.catalog()
    limits = dataclasses.asdict(config.limits)
    assert set(limits) == {f.name for f in pb.Limits.DESCRIPTOR.fields}
    for name, value in limits.items():
        assert getattr(catalog.limits, name) == pytest.approx(value), name
    rewards = catalog.rewards
    assert rewards.attribution_window_days == config.rewards.window_days
    assert rewards.allowed_lateness_hours == config.rewards.lateness_hours
    assert rewards.margin_rate == config.rewards.margin_rate
    assert rewards.no_outcome_reward == config.rewards.no_outcome_reward
    assert rewards.unsubscribe_penalty == config.rewards.unsubscribe_penalty
    time = catalog.time
    assert (time.mode, time.max_ahead_seconds) == ("live", 600.0)
    assert time.earliest.seconds == config.time.earliest
    assert time.latest_window_end.ToJsonString() == "9999-12-31T23:59:59Z"
    assert (time.zone, time.lifecycle_days) == (config.time.zone, config.time.lifecycle_days)
    assert catalog.chain_catch_up_days == config.catalog.chain_catch_up_days
    # What the catalog says is what the server enforces: one request over max_id_length.
    too_long = "c" * (catalog.limits.max_id_length + 1)
    assert _code(lambda: client.decide(too_long, T0)) == grpc.StatusCode.RESOURCE_EXHAUSTED
