"""A typed Python client of DecisionService, for channel systems written in Python, the
simulator (which plays the channel systems), the demo and the benchmarks.

It speaks only the public contract: what it sends is what any gRPC client would send.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.catalog import Catalog
from engine.requests import NO_OCCASION, DecideBatch, EventBatch, EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.timeutil import to_seconds


def timestamp(moment: datetime | int) -> Timestamp:
    return Timestamp(seconds=moment if isinstance(moment, int) else to_seconds(moment))


def decide_requests(batch: DecideBatch, catalog: Catalog) -> list[pb.DecideRequest]:
    """Engine batch -> protobuf requests (what a channel system would send)."""
    out = []
    times = batch.times.tolist()
    acq = batch.strings(batch.acquisition_channel)
    cat = batch.strings(batch.first_order_category)
    reg = batch.strings(batch.region)
    for i, customer_id in enumerate(batch.customer_ids):
        ctx = pb.CustomerContext(
            acquisition_channel=acq[i], first_order_category=cat[i], region=reg[i]
        )
        if batch.first_order_items is not None and not math.isnan(batch.first_order_items[i]):
            ctx.first_order_items = int(batch.first_order_items[i])
        if batch.days_to_occasion is not None and batch.days_to_occasion[i] != NO_OCCASION:
            ctx.days_to_occasion = int(batch.days_to_occasion[i])
        if batch.extra_numeric is not None:
            ctx.numeric.update(batch.extra_numeric[i])
        if batch.extra_categorical is not None:
            ctx.categorical.update(batch.extra_categorical[i])
        request = pb.DecideRequest(
            customer_id=customer_id, time=Timestamp(seconds=times[i]), context=ctx
        )
        if batch.candidates is not None:
            for a in batch.candidates[i].nonzero()[0].tolist():
                action = catalog.actions[a]
                request.candidates.add(touchpoint=action.touchpoint, channel=action.channel)
        out.append(request)
    return out


def events_message(events: EventBatch, catalog: Catalog) -> pb.ReportEventsRequest:
    message = pb.ReportEventsRequest()
    times = events.times.tolist()
    values = events.values.tolist()
    types = events.types.tolist()
    channels = events.channels.tolist()
    for i, customer_id in enumerate(events.customer_ids):
        message.events.add(
            event_id=events.event_ids[i],
            customer_id=customer_id,
            time=Timestamp(seconds=times[i]),
            type=pb.EventType.ValueType(types[i]),
            value=values[i],
            channel=catalog.channels[channels[i]].name if channels[i] >= 0 else "",
            decision_id=events.decision_ids[i],
        )
    return message


class DecisionClient:
    """Blocking client over one channel. Use as a context manager to close the channel."""

    def __init__(self, target: str, timeout: float = 30.0, own_connection: bool = False) -> None:
        """`own_connection`: do not share the TCP connection with other channels of this
        process to the same target (gRPC shares them by default; the server's per-connection
        limits then count the process as one caller)."""
        self.target = target
        self.timeout = timeout
        options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        if own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.DecisionServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server's health check answers SERVING."""
        deadline = _time.monotonic() + timeout
        while True:
            try:
                status = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if _time.monotonic() > deadline:
                raise TimeoutError(f"no SERVING answer from {self.target} within {timeout:g} s")
            _time.sleep(0.05)

    def catalog(self) -> pb.GetCatalogResponse:
        return self.stub.GetCatalog(pb.GetCatalogRequest(), timeout=self.timeout)

    def decide(
        self,
        customer_id: str,
        when: datetime | int,
        context: pb.CustomerContext | None = None,
        candidates: Sequence[tuple[str, str]] = (),
        request_id: str = "",
        defer_activation: bool = False,
    ) -> pb.Decision:
        request = pb.DecideRequest(
            customer_id=customer_id,
            time=timestamp(when),
            context=context,
            request_id=request_id,
            defer_activation=defer_activation,
        )
        for touchpoint, channel in candidates:
            request.candidates.add(touchpoint=touchpoint, channel=channel)
        return self.stub.Decide(request, timeout=self.timeout).decision

    def decide_stream(
        self, batches: Iterable[Sequence[pb.DecideRequest]]
    ) -> Iterator[pb.DecideBatchResponse]:
        """One stream; each batch goes out as one message, replies come back in order."""
        messages = (pb.DecideBatchRequest(requests=list(b)) for b in batches)
        return self.stub.DecideStream(messages, timeout=None)

    def event(
        self,
        customer_id: str,
        when: datetime | int,
        type: EventType,
        value: float = 0.0,
        channel: str = "",
        decision_id: str = "",
        event_id: str = "",
    ) -> pb.ReportEventResponse:
        event = pb.Event(
            event_id=event_id,
            customer_id=customer_id,
            time=timestamp(when),
            type=pb.EventType.ValueType(int(type)),
            value=value,
            channel=channel,
            decision_id=decision_id,
        )
        return self.stub.ReportEvent(pb.ReportEventRequest(event=event), timeout=self.timeout)

    def report_events(self, message: pb.ReportEventsRequest) -> pb.ReportEventsResponse:
        return self.stub.ReportEvents(message, timeout=self.timeout)

    def outcome(
        self,
        decision_id: str,
        when: datetime | int,
        reward: float | None = None,
        value: float | None = None,
        outcome_id: str = "",
    ) -> pb.ReportOutcomeResponse:
        request = pb.ReportOutcomeRequest(
            decision_id=decision_id, outcome_id=outcome_id, time=timestamp(when)
        )
        if reward is not None:
            request.reward = reward
        if value is not None:
            request.value = value
        return self.stub.ReportOutcome(request, timeout=self.timeout)

    def get_decision(self, decision_id: str) -> pb.GetDecisionResponse:
        return self.stub.GetDecision(
            pb.GetDecisionRequest(decision_id=decision_id), timeout=self.timeout
        )
