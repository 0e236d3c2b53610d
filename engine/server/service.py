"""The gRPC servicer: a thin adapter that validates, converts, calls the core, maps errors.

No business logic lives here. Domain errors map to status codes in `status_of`, the one place
that does it; anything unexpected becomes INTERNAL with a reference to the server log, never a
stack trace on the wire.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import NoReturn

import grpc

from engine.decide import DecisionEngine
from engine.decisions import STATUS_CLOSED
from engine.errors import (
    InvalidRequest,
    LimitExceeded,
    OutcomeRejected,
    UnknownDecision,
)
from engine.requests import EventResult
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.server.batching import Combiner
from engine.server.convert import Converter

log = logging.getLogger("anstoss.server")
_UNSET = AssertionError("request was neither decided nor rejected")


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message of an error."""
    if isinstance(exc, LimitExceeded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, UnknownDecision):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, OutcomeRejected):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    reference = uuid.uuid4().hex[:12]
    log.error("internal error, reference %s", reference, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (reference {reference} in the server log)"


def _item_error(exc: Exception, field: str = "") -> pb.ItemError:
    code, message = status_of(exc)
    return pb.ItemError(
        code=code.value[0], field=getattr(exc, "field", field) or field, message=message
    )


class DecisionServicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine
        self.limits = engine.config.limits
        self.convert = Converter(
            engine.catalog, self.limits, engine.contact, lambda: engine.store.watermark
        )
        self.unary = Combiner(self._decide_many, self.limits.max_batch)

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

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        try:
            return pb.DecideResponse(decision=self.unary.submit(request))
        except Exception as exc:
            self._abort(context, exc)

    def DecideStream(
        self, request_iterator: Iterator[pb.DecideBatchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DecideBatchResponse]:
        for message in request_iterator:
            n = len(message.requests)
            if n > self.limits.max_batch:
                self._abort(
                    context,
                    LimitExceeded(
                        "requests",
                        f"{n} requests exceed the batch limit of {self.limits.max_batch}",
                    ),
                )
            try:
                batch, converted = self.convert.decide_batch(message.requests, "requests")
                reply = pb.DecideBatchResponse()
                results = [reply.results.add() for _ in range(n)]
                if len(batch):
                    self.convert.decisions(
                        self.engine.decide(batch),
                        self.engine.experiment,
                        into=[results[pos].decision for pos in converted.positions],
                    )
                for pos, exc in converted.errors.items():
                    results[pos].error.CopyFrom(_item_error(exc))
            except Exception as exc:
                self._abort(context, exc)
            yield reply

    def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        try:
            applied = self.engine.report_outcome(self.convert.outcome(request))
        except Exception as exc:
            self._abort(context, exc)
        response = pb.ReportOutcomeResponse(
            duplicate=applied.duplicate, status=pb.DecisionStatus.ValueType(applied.status)
        )
        if applied.status == STATUS_CLOSED and applied.reward is not None:
            response.reward = applied.reward
        return response

    def ReportEvent(
        self, request: pb.ReportEventRequest, context: grpc.ServicerContext
    ) -> pb.ReportEventResponse:
        try:
            batch, converted = self.convert.event_batch([request.event], "event", single=True)
            if converted.errors:
                raise converted.errors[0]
            result = self.engine.report_events(batch)[0]
            if isinstance(result, UnknownDecision):
                raise UnknownDecision(result.decision_id, "event.decision_id")
            if not isinstance(result, EventResult):
                raise result
        except Exception as exc:
            self._abort(context, exc)
        return pb.ReportEventResponse(
            duplicate=result.duplicate, decisions_attributed=result.decisions_attributed
        )

    def ReportEvents(
        self, request: pb.ReportEventsRequest, context: grpc.ServicerContext
    ) -> pb.ReportEventsResponse:
        n = len(request.events)
        if n > self.limits.max_events:
            self._abort(
                context,
                LimitExceeded("events", f"{n} events exceed the limit of {self.limits.max_events}"),
            )
        try:
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
        except Exception as exc:
            self._abort(context, exc)
        return pb.ReportEventsResponse(results=results)

    def GetDecision(
        self, request: pb.GetDecisionRequest, context: grpc.ServicerContext
    ) -> pb.GetDecisionResponse:
        try:
            if not request.decision_id:
                raise InvalidRequest("decision_id", "must not be empty")
            record, learned = self.engine.get_decision(request.decision_id)
            if record is None:
                raise UnknownDecision(request.decision_id)
        except Exception as exc:
            self._abort(context, exc)
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
        )


__all__ = ["DecisionServicer", "status_of"]
