"""Errors never echo unbounded input, and a batch's reply always fits (issue 10, item 6).

Reproducers: item errors echoed the offending input (NUL bytes escaped fourfold), so a 3.6 MB
ReportEvents produced a 14 MB reply the client could not receive although its valid items were
committed; long inputs echoed into status messages exceeded the metadata limit, so the client
never learned the field; GetDecision had no length limit on decision_id.
"""

from __future__ import annotations

import grpc
import pytest

from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.server.client import timestamp
from engine.server.service import MAX_DETAILS, MAX_ITEM_MESSAGE
from tests.conftest import T0, ServeFactory

NUL = "\x00"


def _default_client(port: int) -> tuple[grpc.Channel, pb_grpc.DecisionServiceStub]:
    """A client with gRPC's default limits (4 MiB receive), like any integrator's."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, pb_grpc.DecisionServiceStub(channel)


def test_a_batch_of_huge_bad_items_gets_a_small_reply_and_commits_the_good_ones(
    serve: ServeFactory,
) -> None:
    running, _ = serve()
    channel, stub = _default_client(running.port)
    message = pb.ReportEventsRequest()
    for i in range(12):  # 12 x 300 KB of NUL bytes: a 3.6 MB request
        message.events.add(
            customer_id="c",
            time=timestamp(T0),
            type=pb.EVENT_TYPE_UNSUBSCRIBED,
            channel=NUL * 300_000,
        )
        message.events.add(
            customer_id=f"good{i}", time=timestamp(T0), type=pb.EVENT_TYPE_PURCHASE, value=10.0,
            event_id=f"order-{i}",
        )  # fmt: skip
    assert message.ByteSize() > 3_500_000
    reply = stub.ReportEvents(message, timeout=10)
    assert reply.ByteSize() < 20_000
    bad = reply.results[0::2]
    assert all(r.error.field == f"events[{2 * i}].channel" for i, r in enumerate(bad))
    assert all(len(r.error.message) <= MAX_ITEM_MESSAGE for r in bad)
    assert "unknown channel" in bad[0].error.message
    assert all(r.HasField("ok") and not r.ok.duplicate for r in reply.results[1::2])
    events = running.engine.store.events_frame()
    assert sorted(events["event_id"]) == sorted(f"order-{i}" for i in range(12))
    channel.close()


def test_the_largest_event_batch_of_errors_still_fits_the_reply_limit(serve: ServeFactory) -> None:
    running, _ = serve()
    channel, stub = _default_client(running.port)
    message = pb.ReportEventsRequest()
    for _ in range(running.engine.config.limits.max_events):  # every one wrong, with a long echo
        message.events.add(
            customer_id="c",
            time=timestamp(T0),
            type=pb.EVENT_TYPE_CONSENT_GRANTED,
            channel="é" * 150,
        )
    assert message.ByteSize() < running.engine.config.limits.max_message_bytes
    reply = stub.ReportEvents(message, timeout=20)
    assert len(reply.results) == running.engine.config.limits.max_events
    assert all(r.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for r in reply.results)
    channel.close()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            pb.DecideRequest(
                customer_id="c",
                time=timestamp(T0),
                candidates=[pb.Action(touchpoint=NUL * 100_000, channel="email")],
            ),
            "candidates[0].touchpoint",
        ),
        (
            pb.DecideRequest(
                customer_id="c",
                time=timestamp(T0),
                context=pb.CustomerContext(numeric={"n" * 10_000: 1.0}),
            ),
            "context.numeric['nnnnnnnn",
        ),
        (pb.DecideRequest(customer_id="x" * 1_000_000, time=timestamp(T0)), "customer_id"),
    ],
)
def test_a_status_message_never_echoes_long_input(
    serve: ServeFactory, request_: pb.DecideRequest, field: str
) -> None:
    running, _ = serve()
    channel, stub = _default_client(running.port)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Decide(request_, timeout=10)
    assert failure.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    details = failure.value.details()
    assert details.startswith(field), details[:200]
    assert len(details) <= MAX_DETAILS
    channel.close()


def test_get_decision_limits_the_id_length(serve: ServeFactory) -> None:
    running, _ = serve()
    channel, stub = _default_client(running.port)
    with pytest.raises(grpc.RpcError) as failure:
        stub.GetDecision(pb.GetDecisionRequest(decision_id="d" * 1_000_000), timeout=10)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.value.details().startswith("decision_id: ")
    assert len(failure.value.details()) < 200
    channel.close()
