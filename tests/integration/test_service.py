"""Acceptance 1: a real server on loopback decides, logs, attributes, learns; health and
reflection answer like any gRPC server's."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.app import RunningServer
from engine.server.client import DecisionClient, timestamp
from tests.conftest import DAY, T0


def _bandit_customer(client: DecisionClient, n: int = 50) -> str:
    """A customer id the default experiment assigns to the bandit arm."""
    for i in range(n):
        d = client.decide(f"probe-{i}", T0 - 20 * DAY)
        if d.arm == "bandit":
            return f"probe-{i}"
    raise AssertionError("no bandit customer among the probes")


def test_decide_returns_an_eligible_action_with_its_probability(client: DecisionClient) -> None:
    client.event("c1", T0, EventType.PURCHASE, value=80.0, event_id="o-1")
    d = client.decide("c1", T0 + 3600, pb.CustomerContext(acquisition_channel="web"))
    eligible = {(e.action.touchpoint, e.action.channel): e.probability for e in d.eligible}
    assert (d.action.touchpoint, d.action.channel) in eligible
    assert d.probability == pytest.approx(eligible[(d.action.touchpoint, d.action.channel)])
    assert d.probability > 0
    assert sum(eligible.values()) == pytest.approx(1.0)
    assert ("", "") in eligible  # no contact is always eligible
    assert d.arm in {"chain", "bandit"} and d.policy == d.arm
    assert d.model_version
    removed = {(r.action.touchpoint, r.action.channel): r for r in d.removed}
    assert removed[("welcome", "push")].rule == pb.ELIGIBILITY_RULE_NO_CONSENT
    assert removed[("welcome", "push")].detail == "push: no consent"
    assert removed[("occasion", "email")].rule == pb.ELIGIBILITY_RULE_OCCASION_NOT_DUE
    assert not set(eligible) & set(removed)


def test_decision_is_in_the_log(client: DecisionClient, server: RunningServer) -> None:
    d = client.decide("c2", T0)
    logged = server.engine.store.decisions_frame().set_index("decision_id").loc[d.decision_id]
    assert logged["customer_id"] == "c2"
    assert logged["arm"] == d.arm
    assert logged["probability"] == pytest.approx(d.probability)
    assert logged["action"] == (
        f"{d.action.touchpoint}@{d.action.channel}" if not d.no_contact else "no_contact"
    )
    read_back = client.get_decision(d.decision_id)
    assert read_back.decision == d
    assert read_back.status == pb.DECISION_STATUS_OPEN


def test_purchase_in_window_gives_reward_and_exactly_one_update(
    client: DecisionClient, server: RunningServer
) -> None:
    customer = _bandit_customer(client)
    client.event(customer, T0, EventType.PURCHASE, value=50.0, event_id="first")
    d = client.decide(customer, T0 + 3600)
    updates_before = server.engine.updates
    attributed = client.event(
        customer, T0 + 3 * DAY, EventType.PURCHASE, value=100.0, event_id="second"
    )
    assert attributed.decisions_attributed == 1
    open_state = client.get_decision(d.decision_id)
    assert open_state.status == pb.DECISION_STATUS_OPEN
    assert open_state.attributed_value == 100.0
    # Event time passes window end + allowed lateness (10 days + 24 h): the window closes.
    client.event("someone-else", T0 + 12 * DAY, EventType.PURCHASE, value=5.0)
    closed = client.get_decision(d.decision_id)
    assert closed.status == pb.DECISION_STATUS_CLOSED
    assert closed.reward == pytest.approx(0.3 * 100.0 - d.cost)
    assert closed.learned
    # The probe decisions made 400 days earlier closed too; ours is one more update.
    assert server.engine.updates - updates_before >= 1
    versions = {a.name: a.model_version for a in client.catalog().arms}
    assert versions["bandit"].endswith(f"+{server.engine.updates}")
    # Time moving on again must not learn it twice.
    updates = server.engine.updates
    client.event("someone-else", T0 + 30 * DAY, EventType.PURCHASE, value=5.0)
    assert server.engine.updates == updates


def test_health_answers_serving(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "anstoss.v1.DecisionService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_decision_service(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        names = {s.name for s in replies[0].list_services_response.service}
        assert "anstoss.v1.DecisionService" in names
        assert "grpc.health.v1.Health" in names
        # A generic client can fetch the contract itself.
        replies = list(
            stub.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="anstoss.v1.DecisionService"
                        )
                    ]
                ),
                timeout=5,
            )
        )
        assert replies[0].file_descriptor_response.file_descriptor_proto


def test_stream_decides_batches_in_order(client: DecisionClient) -> None:
    requests = [pb.DecideRequest(customer_id=f"s{i}", time=timestamp(T0)) for i in range(5)]
    replies = list(client.decide_stream([requests[:2], requests[2:]]))
    assert [len(r.results) for r in replies] == [2, 3]
    ids = [res.decision.customer_id for r in replies for res in r.results]
    assert ids == [f"s{i}" for i in range(5)]


def test_concurrent_calls_for_one_customer_respect_the_caps(client: DecisionClient) -> None:
    """Concurrent unary calls are decided together; a customer asked about many times at once
    still gets at most the capped number of contacts."""
    import threading

    client.event("busy", T0, EventType.PURCHASE, value=40.0, event_id="busy-1")
    for channel in ("push", "sms", "call"):
        client.event("busy", T0, EventType.CONSENT_GRANTED, channel=channel)
    decisions: list[pb.Decision] = []
    start = threading.Barrier(12)

    def ask() -> None:
        start.wait()
        decisions.append(client.decide("busy", T0 + 3600))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decisions) == 12
    contacts = [d for d in decisions if not d.no_contact]
    assert 1 <= len(contacts) <= 3  # the cap over all channels in 7 days
    inserts = [d for d in contacts if d.action.channel == "parcel_insert"]
    assert len(inserts) <= 1  # the first shipment carries one insert
