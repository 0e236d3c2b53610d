"""The gRPC servicer: a thin adapter that validates, converts, calls the core, maps errors.

No business logic lives here. Domain errors map to status codes in `status_of`, the one place
that does it; anything unexpected becomes INTERNAL with a reference to the server log, never a
stack trace on the wire. Requests are decoded here too (`handlers`): bytes that are no valid
message of the method's type are the client's error (INVALID_ARGUMENT), not the server's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import grpc

from engine.decide import DecisionEngine
from engine.decisions import STATUS_CLOSED
from engine.errors import (
    InvalidRequest,
    LimitExceeded,
    OutcomeRejected,
    Overloaded,
    StorageCorrupt,
    StorageUnavailable,
    UnknownDecision,
)
from engine.requests import EventResult
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.admission import Admission
from engine.server.batching import Combiner
from engine.server.convert import Converter
from engine.timeguard import TimeGuard

log = logging.getLogger("anstoss.server")
_UNSET = AssertionError("request was neither decided nor rejected")
SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"]
# Whatever a status or item error says stays this short (gRPC carries status messages in
# metadata, about 8 KiB at most, and a batch reply must fit the message limit).
MAX_DETAILS = 1000
MAX_ITEM_MESSAGE = 240
MAX_ITEM_FIELD = 128


class Undecodable:
    """A request whose bytes are no valid message of the method's type."""

    def __init__(self, type_name: str, problem: str) -> None:
        self.error = InvalidRequest("request", f"cannot be decoded as {type_name}: {problem}")


def _decoder(message_class: Any) -> Callable[[bytes], Any]:
    name = message_class.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except Exception as exc:  # DecodeError, invalid UTF-8, nesting too deep, ...
            return Undecodable(name, str(exc)[:120] or type(exc).__name__)

    return decode


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message of an error."""
    if isinstance(exc, LimitExceeded):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
    elif isinstance(exc, InvalidRequest):
        code = grpc.StatusCode.INVALID_ARGUMENT
    elif isinstance(exc, UnknownDecision):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, OutcomeRejected):
        code = grpc.StatusCode.FAILED_PRECONDITION
    elif isinstance(exc, Overloaded | StorageUnavailable):
        code = grpc.StatusCode.UNAVAILABLE
    elif isinstance(exc, StorageCorrupt):
        code = grpc.StatusCode.DATA_LOSS
    else:
        reference = uuid.uuid4().hex[:12]
        log.error("internal error, reference %s", reference, exc_info=exc)
        return grpc.StatusCode.INTERNAL, f"internal error (reference {reference} in the server log)"
    return code, _bounded(str(exc), MAX_DETAILS)


def _bounded(text: str, limit: int) -> str:
    """ASCII and at most `limit` characters: its size in bytes is known (see replies.py)."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _item_error(exc: Exception, field: str = "") -> pb.ItemError:
    code, message = status_of(exc)
    return pb.ItemError(
        code=code.value[0],
        field=_bounded(getattr(exc, "field", field) or field, MAX_ITEM_FIELD),
        message=_bounded(message, MAX_ITEM_MESSAGE),
    )


class DecisionServicer:
    """The DecisionService methods; `handlers()` registers them with a gRPC server."""

    def __init__(self, engine: DecisionEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.limits = engine.config.limits
        rewards = engine.config.rewards
        guard = TimeGuard(
            engine.config.time, rewards.window_seconds + rewards.lateness_seconds, clock
        )
        self.convert = Converter(engine.catalog, self.limits, engine.contact, guard)
        self.unary = Combiner(self._decide_many, self.limits.max_batch)
        self.admission = Admission(self.limits)

    def handlers(self) -> grpc.GenericRpcHandler:
        """Every method of the service with its decoder; admission control around each call."""
        handlers = {}
        for method in SERVICE.methods:
            request_class = getattr(pb, method.input_type.name)
            response_class = getattr(pb, method.output_type.name)
            kind = (
                grpc.stream_stream_rpc_method_handler
                if method.client_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            handlers[method.name] = kind(
                getattr(self, method.name),
                request_deserializer=_decoder(request_class),
                response_serializer=response_class.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    def close(self) -> None:
        self.admission.close()

    def _decide_many(self, requests: Sequence[pb.DecideRequest]) -> list[pb.Decision | Exception]:
        """Concurrent unary requests, decided as one batch (see batching.py)."""
        batch, converted = self.convert.decide_batch(requests)
        out: list[pb.Decision | Exception] = [
            converted.errors.get(i) or _UNSET for i in range(len(requests))
        ]
        if len(batch):
            decisions = self.convert.decisions(self.engine.decide(batch), self.engine.experiment)
            for pos, decision in zip(converted.positions, decisions, strict=True):
                out[pos] = decision
        return out

    @staticmethod
    def _abort(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
        code, message = status_of(exc)
        context.abort(code, message)
        raise AssertionError("unreachable")  # context.abort raises

    def _unary(
        self, request: Any, context: grpc.ServicerContext, handle: Callable[[Any], Any]
    ) -> Any:
        """Admit, decode-check and run one unary call; every error becomes its status."""
        try:
            if isinstance(request, Undecodable):
                raise request.error
            with self.admission.call(context):
                return handle(request)
        except Exception as exc:
            self._abort(context, exc)

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        return self._unary(
            request, context, lambda r: pb.DecideResponse(decision=self.unary.submit(r))
        )

    def DecideStream(
        self, request_iterator: Iterator[pb.DecideBatchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DecideBatchResponse]:
        clock = self.admission.clock
        try:
            with self.admission.stream(context) as watch:
                for message in watch.track(request_iterator, clock):
                    reply = self._decide_batch(message)
                    watch.writing(clock())
                    yield reply
                    watch.working(clock())
        except Exception as exc:
            self._abort(context, exc)

    def _decide_batch(self, message: pb.DecideBatchRequest | Undecodable) -> pb.DecideBatchResponse:
        if isinstance(message, Undecodable):
            raise message.error
        reply = pb.DecideBatchResponse()
        n = len(message.requests)
        if n > self.limits.max_batch:
            reply.error.CopyFrom(
                _item_error(
                    LimitExceeded(
                        "requests",
                        f"{n} requests exceed the batch limit of {self.limits.max_batch}"
                        " (limits.max_batch); nothing of this batch was decided",
                    )
                )
            )
            return reply
        batch, converted = self.convert.decide_batch(message.requests, "requests")
        results = [reply.results.add() for _ in range(n)]
        if len(batch):
            self.convert.decisions(
                self.engine.decide(batch),
                self.engine.experiment,
                into=[results[pos].decision for pos in converted.positions],
            )
        for pos, exc in converted.errors.items():
            results[pos].error.CopyFrom(_item_error(exc))
        return reply

    def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        return self._unary(request, context, self._report_outcome)

    def _report_outcome(self, request: pb.ReportOutcomeRequest) -> pb.ReportOutcomeResponse:
        applied = self.engine.report_outcome(self.convert.outcome(request))
        response = pb.ReportOutcomeResponse(
            duplicate=applied.duplicate, status=pb.DecisionStatus.ValueType(applied.status)
        )
        if applied.status == STATUS_CLOSED and applied.reward is not None:
            response.reward = applied.reward
        return response

    def ReportEvent(
        self, request: pb.ReportEventRequest, context: grpc.ServicerContext
    ) -> pb.ReportEventResponse:
        return self._unary(request, context, self._report_event)

    def _report_event(self, request: pb.ReportEventRequest) -> pb.ReportEventResponse:
        batch, converted = self.convert.event_batch([request.event], "event", single=True)
        if converted.errors:
            raise converted.errors[0]
        result = self.engine.report_events(batch)[0]
        if isinstance(result, UnknownDecision):
            raise UnknownDecision(result.decision_id, "event.decision_id")
        if not isinstance(result, EventResult):
            raise result
        return pb.ReportEventResponse(
            duplicate=result.duplicate, decisions_attributed=result.decisions_attributed
        )

    def ReportEvents(
        self, request: pb.ReportEventsRequest, context: grpc.ServicerContext
    ) -> pb.ReportEventsResponse:
        return self._unary(request, context, self._report_events)

    def _report_events(self, request: pb.ReportEventsRequest) -> pb.ReportEventsResponse:
        n = len(request.events)
        if n > self.limits.max_events:
            raise LimitExceeded(
                "events", f"{n} events exceed the limit of {self.limits.max_events}"
            )
        batch, converted = self.convert.event_batch(request.events)
        results = [pb.ReportEventResult() for _ in range(n)]
        applied = self.engine.report_events(batch) if len(batch) else []
        for pos, outcome in zip(converted.positions, applied, strict=True):
            if isinstance(outcome, EventResult):
                results[pos].ok.duplicate = outcome.duplicate
                results[pos].ok.decisions_attributed = outcome.decisions_attributed
            elif isinstance(outcome, UnknownDecision):
                field = f"events[{pos}].decision_id"
                results[pos].error.CopyFrom(
                    _item_error(UnknownDecision(outcome.decision_id, field))
                )
            else:
                results[pos].error.CopyFrom(_item_error(outcome))
        for pos, exc in converted.errors.items():
            results[pos].error.CopyFrom(_item_error(exc))
        return pb.ReportEventsResponse(results=results)

    def GetDecision(
        self, request: pb.GetDecisionRequest, context: grpc.ServicerContext
    ) -> pb.GetDecisionResponse:
        return self._unary(request, context, self._get_decision)

    def _get_decision(self, request: pb.GetDecisionRequest) -> pb.GetDecisionResponse:
        decision_id = self.convert.decision_id(request.decision_id)
        record, learned = self.engine.get_decision(decision_id)
        if record is None:
            raise UnknownDecision(decision_id)
        response = pb.GetDecisionResponse(
            decision=self.convert.record(record, self.engine.experiment),
            status=pb.DecisionStatus.ValueType(record.status),
            attributed_value=record.attributed_value,
            attributed_purchases=record.attributed_purchases,
            unsubscribes=record.unsubscribes,
            learned=learned,
        )
        if record.reward is not None:
            response.reward = record.reward
        if record.closed_time is not None:
            response.closed_time.seconds = record.closed_time
        return response

    def GetCatalog(
        self, request: pb.GetCatalogRequest, context: grpc.ServicerContext
    ) -> pb.GetCatalogResponse:
        return self._unary(request, context, self._get_catalog)

    def _get_catalog(self, request: pb.GetCatalogRequest) -> pb.GetCatalogResponse:
        cat = self.engine.catalog
        versions = self.engine.model_versions()
        return pb.GetCatalogResponse(
            channels=[
                pb.ChannelInfo(
                    name=c.name,
                    cost=c.cost,
                    default_consent=c.default_consent,
                    min_gap_days=c.min_gap_days,
                    max_per_7d=c.max_per_7d,
                    max_per_30d=c.max_per_30d,
                    first_shipment_only=c.first_shipment_only,
                )
                for c in cat.channels
            ],
            touchpoints=[
                pb.TouchpointInfo(
                    name=t.name,
                    description=t.description,
                    max_per_customer=t.max_per_customer,
                    min_day=t.min_day,
                    max_day=t.max_day,
                    requires_occasion=t.requires_occasion,
                )
                for t in cat.touchpoints
            ],
            actions=[
                pb.CatalogAction(
                    action=pb.Action(touchpoint=a.touchpoint, channel=a.channel), cost=a.cost
                )
                for a in cat.actions
            ],
            chain=[
                pb.ChainStep(day=s.day, touchpoint=s.touchpoint, channels=list(s.channels))
                for s in cat.chain
            ],
            max_contacts_per_7d=cat.max_per_7d,
            max_contacts_per_30d=cat.max_per_30d,
            occasion_lead_days=cat.occasion_lead_days,
            experiment=self.engine.experiment.name,
            arms=[
                pb.Arm(name=a.name, policy=a.policy, share=a.share, model_version=versions[a.name])
                for a in self.engine.experiment.arms
            ],
            attribution_window_days=self.engine.config.rewards.window_days,
            chain_catch_up_days=cat.chain_catch_up_days,
            time=pb.TimeRules(
                zone=self.engine.config.time.zone,
                lifecycle_days=self.engine.config.time.lifecycle_days,
            ),
        )


__all__ = ["DecisionServicer", "status_of"]
