"""Protobuf <-> engine batches, with validation that names the offending field.

Validation happens here, before anything reaches the core: a request that passes is one the
engine can decide without surprises. Batch conversions collect one error per bad item, so a
stream batch with one bad request still decides the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from engine.catalog import Catalog
from engine.config import Limits
from engine.contact import ContactPolicy
from engine.decisions import DecisionBatch, DecisionRecord
from engine.errors import InvalidRequest, LimitExceeded, shown
from engine.experiment import Experiment
from engine.features import NUMERIC_FEATURES
from engine.requests import (
    CHANNEL_EVENTS,
    DECISION_EVENTS,
    NO_OCCASION,
    DecideBatch,
    EventBatch,
    EventType,
    Outcome,
)
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.timeguard import TimeGuard

DEFAULT_OUTCOME_ID = "reward"  # the one final reward of a decision
# Distinct (rules, probabilities) rows whose eligible and removed lists are kept, serialised:
# about a kilobyte each. (Kept as messages they took some 60 KB of native memory each, and a
# server's RSS grew with every new pattern.)
_PATTERN_CACHE = 4096
_KNOWN = NUMERIC_FEATURES.index("known")  # 1 when the customer's first purchase is known


@dataclass
class Converted:
    """Valid items as a batch, plus the position of each in the request and the errors."""

    positions: list[int]
    errors: dict[int, InvalidRequest]


class Converter:
    def __init__(
        self,
        catalog: Catalog,
        limits: Limits,
        contact: ContactPolicy,
        guard: TimeGuard,
    ) -> None:
        self.catalog = catalog
        self.limits = limits
        self.contact = contact
        self.guard = guard
        self._actions = [
            pb.Action(touchpoint=a.touchpoint, channel=a.channel) for a in catalog.actions
        ]
        self._costs = catalog.action_cost.tolist()
        self._keys = catalog.action_keys
        self._removed_cache: dict[tuple[int, int, bool], pb.RemovedAction] = {}
        self._lists: dict[bytes, bytes] = {}

    # -- common fields ----------------------------------------------------------------------

    def _time(self, message: Message, name: str, field: str) -> int:
        if not message.HasField(name):
            raise InvalidRequest(field, "required (event time drives caps and attribution)")
        stamp = getattr(message, name)
        return self.guard.check(int(stamp.seconds), int(stamp.nanos), field)

    def _id(self, value: str, field: str, required: bool = True) -> str:
        if required and not value.strip():
            raise InvalidRequest(field, "must not be empty")
        if len(value) > self.limits.max_id_length:
            raise LimitExceeded(
                field, f"{len(value)} characters, longer than {self.limits.max_id_length}"
            )
        return value

    def decision_id(self, value: str, field: str = "decision_id") -> str:
        """A decision id given by the caller (GetDecision, outcomes, response events)."""
        return self._id(value, field)

    def _number(self, value: float, field: str, low: float, high: float, limit: str) -> float:
        """A finite number within [low, high]; `limit` names the configured bound."""
        if not math.isfinite(value):
            raise InvalidRequest(field, f"must be a finite number, got {value}")
        if not low <= value <= high:
            raise InvalidRequest(
                field, f"must be between {low:g} and {high:g} ({limit}), got {value:g}"
            )
        return float(value)

    def _text(self, value: str, field: str) -> str:
        if len(value) > self.limits.max_feature_value_length:
            raise LimitExceeded(
                field,
                f"{len(value)} characters, longer than {self.limits.max_feature_value_length}",
            )
        return value

    # -- decide -----------------------------------------------------------------------------

    def decide_batch(
        self, requests: Sequence[pb.DecideRequest], item_field: str | None = None
    ) -> tuple[DecideBatch, Converted]:
        """Convert requests; invalid ones are left out and reported by position.

        `item_field` names the repeated field in error paths ("requests" -> "requests[3].time");
        None for a unary request, whose fields are top-level.
        """
        ids: list[str] = []
        times: list[int] = []
        acquisition: list[str] = []
        category: list[str] = []
        region: list[str] = []
        items: list[float] = []
        occasion: list[int] = []
        numeric: list[dict[str, float]] = []
        categorical: list[dict[str, str]] = []
        candidates: list[np.ndarray | None] = []
        request_ids: list[str] = []
        defer: list[bool] = []
        converted = Converted([], {})
        for pos, request in enumerate(requests):
            at = f"{item_field}[{pos}]." if item_field else ""
            try:
                row = self._decide_row(request, at)
            except InvalidRequest as exc:
                converted.errors[pos] = exc
                continue
            converted.positions.append(pos)
            ids.append(row[0])
            times.append(row[1])
            ctx = request.context
            acquisition.append(ctx.acquisition_channel)
            category.append(ctx.first_order_category)
            region.append(ctx.region)
            items.append(
                float(ctx.first_order_items) if ctx.HasField("first_order_items") else math.nan
            )
            occasion.append(
                ctx.days_to_occasion if ctx.HasField("days_to_occasion") else NO_OCCASION
            )
            numeric.append(row[2])
            categorical.append(row[3])
            candidates.append(row[4])
            request_ids.append(row[5])
            defer.append(request.defer_activation)
        mask = None
        if any(c is not None for c in candidates):
            mask = np.ones((len(ids), self.catalog.n_actions), dtype=bool)
            for i, c in enumerate(candidates):
                if c is not None:
                    mask[i] = c
        batch = DecideBatch(
            customer_ids=ids,
            times=np.array(times, dtype=np.int64),
            acquisition_channel=acquisition,
            first_order_category=category,
            region=region,
            first_order_items=np.array(items, dtype=np.float64),
            days_to_occasion=np.array(occasion, dtype=np.int64),
            extra_numeric=numeric if any(numeric) else None,
            extra_categorical=categorical if any(categorical) else None,
            candidates=mask,
            request_ids=request_ids if any(request_ids) else None,
            defer=np.array(defer, dtype=bool) if any(defer) else None,
        )
        return batch, converted

    def _decide_row(
        self, request: pb.DecideRequest, at: str
    ) -> tuple[str, int, dict[str, float], dict[str, str], np.ndarray | None, str]:
        customer_id = request.customer_id
        if not customer_id.strip() or len(customer_id) > self.limits.max_id_length:
            self._id(customer_id, f"{at}customer_id")  # raises with the field's path
        time = self._time(request, "time", f"{at}time")
        ctx = request.context
        limit = self.limits.max_feature_value_length
        for name in ("acquisition_channel", "first_order_category", "region"):
            if len(getattr(ctx, name)) > limit:
                self._text(getattr(ctx, name), f"{at}context.{name}")
        if ctx.HasField("first_order_items") and ctx.first_order_items < 0:
            raise InvalidRequest(f"{at}context.first_order_items", "must be >= 0")
        if ctx.HasField("days_to_occasion") and not 0 <= ctx.days_to_occasion <= 366:
            raise InvalidRequest(f"{at}context.days_to_occasion", "must be between 0 and 366")
        numeric = self._features(ctx.numeric, f"{at}context.numeric", True) if ctx.numeric else {}
        categorical = (
            self._features(ctx.categorical, f"{at}context.categorical", False)
            if ctx.categorical
            else {}
        )
        for name in numeric.keys() & categorical.keys():
            raise InvalidRequest(
                f"{at}context.categorical[{name!r}]", "also given as a numeric feature"
            )
        if len(numeric) + len(categorical) > self.limits.max_features:
            raise LimitExceeded(
                f"{at}context",
                f"{len(numeric) + len(categorical)} extra features exceed the limit of "
                f"{self.limits.max_features}",
            )
        request_id = self._id(request.request_id, f"{at}request_id", required=False)
        candidates = self._candidates(request.candidates, at)
        return customer_id, time, numeric, categorical, candidates, request_id

    def _features(self, values: Mapping[str, Any], field: str, numeric: bool) -> dict[str, Any]:
        count = len(values)
        if count > self.limits.max_features:
            raise LimitExceeded(
                field, f"{count} entries exceed the limit of {self.limits.max_features}"
            )
        out = {}
        bound = self.limits.max_abs_feature
        for name, value in values.items():
            where = f"{field}[{shown(name)}]"
            if not name or len(name) > self.limits.max_feature_name_length:
                raise InvalidRequest(
                    where,
                    f"names must have 1 to {self.limits.max_feature_name_length} characters",
                )
            if numeric:
                self._number(value, where, -bound, bound, "limits.max_abs_feature")
            else:
                self._text(value, where)
            out[name] = value
        return out

    def _candidates(self, candidates: Sequence[pb.Action], at: str) -> np.ndarray | None:
        if not candidates:
            return None
        if len(candidates) > self.limits.max_candidates:
            raise LimitExceeded(
                f"{at}candidates",
                f"{len(candidates)} candidates exceed the limit of {self.limits.max_candidates}",
            )
        mask = np.zeros(self.catalog.n_actions, dtype=bool)
        mask[0] = True  # no contact is always eligible
        seen: dict[int, int] = {}
        for i, action in enumerate(candidates):
            index = self.action_index(action, f"{at}candidates[{i}]")
            if index in seen:
                raise InvalidRequest(
                    f"{at}candidates[{i}]",
                    f"duplicate of candidates[{seen[index]}] ({self._keys[index]})",
                )
            seen[index] = i
            mask[index] = True
        return mask

    def action_index(self, action: pb.Action, field: str) -> int:
        tp, ch = action.touchpoint, action.channel
        if not tp and not ch:
            return 0
        if not tp:
            raise InvalidRequest(f"{field}.touchpoint", "required when channel is set")
        if not ch:
            raise InvalidRequest(f"{field}.channel", "required when touchpoint is set")
        if tp not in self.catalog.touchpoint_index:
            raise InvalidRequest(f"{field}.touchpoint", f"unknown touchpoint {shown(tp)}")
        if ch not in self.catalog.channel_index:
            raise InvalidRequest(f"{field}.channel", f"unknown channel {shown(ch)}")
        index = self.catalog.action_index(tp, ch)
        if index is None:
            raise InvalidRequest(field, f"{tp}@{ch} is not an action of the catalog")
        return index

    def decisions(
        self,
        batch: DecisionBatch,
        experiment: Experiment,
        into: Sequence[pb.Decision] | None = None,
    ) -> list[pb.Decision]:
        """Logged decisions -> protobuf, one per row; `into` fills given (sub)messages in place,
        e.g. a stream reply's results, instead of building messages that would be copied."""
        assert batch.decision_ids is not None
        out = list(into) if into is not None else [pb.Decision() for _ in range(len(batch))]
        actions, costs = self._actions, self._costs
        arms = experiment.arms
        chosen = batch.chosen.tolist()
        window_end = batch.window_end.tolist()
        times = batch.times.tolist()
        request_ids = batch.request_ids or [""] * len(batch)
        deferred = batch.deferred_rows().tolist()
        eligible = batch.eligible_actions()
        removed = batch.removed_actions()
        probabilities = batch.probabilities.tolist()
        patterns = batch.patterns()
        known = (batch.features.numeric[:, _KNOWN] > 0).tolist()
        lists = self._lists
        for i in range(len(batch)):
            c = chosen[i]
            probs = probabilities[i]
            arm = arms[int(batch.arm[i])]
            decision = out[i]
            decision.decision_id = batch.decision_ids[i]
            decision.customer_id = batch.customer_ids[i]
            decision.action.CopyFrom(actions[c])
            decision.no_contact = c == 0
            decision.probability = probs[c]
            decision.cost = costs[c]
            decision.experiment = experiment.name
            decision.arm = arm.name
            decision.policy = arm.policy
            decision.model_version = batch.model_version[i]
            decision.time.seconds = times[i]
            decision.attribution_window_end.seconds = window_end[i]
            decision.request_id = request_ids[i]
            decision.defer_activation = deferred[i]
            decision.customer_known = known[i]
            # Rows repeat a few patterns (the chain is deterministic, epsilon-greedy has two
            # probability values): serialise the eligible and removed lists once per pattern
            # and merge the bytes into each decision (the wire format appends repeated fields).
            # The removed details also say whether the first purchase is known.
            pattern = patterns[i] if known[i] else b"unknown:" + patterns[i]
            shared = lists.get(pattern)
            if shared is None:
                rules = batch.rule[i]
                shared = pb.Decision(
                    eligible=[
                        pb.ActionProbability(action=actions[a], probability=probs[a], cost=costs[a])
                        for a in eligible[i]
                    ],
                    removed=[self._removed_message(int(rules[a]), a, known[i]) for a in removed[i]],
                ).SerializeToString()
                if len(lists) >= _PATTERN_CACHE:
                    lists.clear()
                lists[pattern] = shared
            decision.MergeFromString(shared)
        return out

    def _removed_message(self, rule: int, action: int, known: bool) -> pb.RemovedAction:
        key = (rule, action, known)
        message = self._removed_cache.get(key)
        if message is None:
            message = self._removed_cache[key] = pb.RemovedAction(
                action=self._actions[action],
                rule=pb.EligibilityRule.ValueType(rule),
                detail=self.contact.describe(rule, action, known),
            )
        return message

    def _detail(self, rule: int, key: str, known: bool) -> str:
        index = self.catalog.index_of_key(key)
        return self._removed_message(rule, index, known).detail if index else ""

    def record(self, record: DecisionRecord, experiment: Experiment) -> pb.Decision:
        """A decision read back from the log -> protobuf."""
        cat = self.catalog

        def action(key: str) -> pb.Action:
            index = cat.index_of_key(key)
            if index is not None:
                return self._actions[index]
            touchpoint, _, channel = key.partition("@")
            return pb.Action(touchpoint=touchpoint, channel=channel)

        def cost(key: str) -> float:
            index = cat.index_of_key(key)
            return self._costs[index] if index is not None else 0.0

        chosen = action(record.action)
        known = float(record.features.get("known", 0.0)) > 0
        return pb.Decision(
            decision_id=record.decision_id,
            customer_id=record.customer_id,
            time=Timestamp(seconds=record.time),
            action=chosen,
            no_contact=not chosen.touchpoint,
            probability=record.probability,
            cost=record.cost,
            eligible=[
                pb.ActionProbability(action=action(k), probability=p, cost=cost(k))
                for k, p in zip(record.eligible, record.probabilities, strict=True)
            ],
            removed=[
                pb.RemovedAction(
                    action=action(k),
                    rule=pb.EligibilityRule.ValueType(rule),
                    detail=self._detail(rule, k, known),
                )
                for k, rule in record.removed
            ],
            experiment=record.experiment,
            arm=record.arm,
            policy=record.policy,
            model_version=record.model_version,
            attribution_window_end=Timestamp(seconds=record.window_end),
            request_id=record.request_id,
            defer_activation=record.deferred,
            customer_known=known,
        )

    # -- events and outcomes ----------------------------------------------------------------

    def event_batch(
        self, events: Sequence[pb.Event], item_field: str = "events", single: bool = False
    ) -> tuple[EventBatch, Converted]:
        """Convert events (`single`: the one `event` field of ReportEvent)."""
        converted = Converted([], {})
        cols: dict[str, list[Any]] = {
            k: [] for k in ("eid", "cid", "t", "type", "value", "ch", "did")
        }
        for pos, event in enumerate(events):
            at = f"{item_field}." if single else f"{item_field}[{pos}]."
            try:
                row = self._event_row(event, at)
            except InvalidRequest as exc:
                converted.errors[pos] = exc
                continue
            converted.positions.append(pos)
            for key, value in zip(cols, row, strict=True):
                cols[key].append(value)
        batch = EventBatch(
            event_ids=cols["eid"],
            customer_ids=cols["cid"],
            times=np.array(cols["t"], dtype=np.int64),
            types=np.array(cols["type"], dtype=np.int8),
            values=np.array(cols["value"], dtype=np.float64),
            channels=np.array(cols["ch"], dtype=np.int64),
            decision_ids=cols["did"],
        )
        return batch, converted

    def _event_row(self, event: pb.Event, at: str) -> tuple[str, str, int, int, float, int, str]:
        event_id = self._id(event.event_id, f"{at}event_id", required=False)
        customer_id = self._id(event.customer_id, f"{at}customer_id")
        time = self._time(event, "time", f"{at}time")
        if event.type not in EventType._value2member_map_:
            raise InvalidRequest(f"{at}type", "required: one of PURCHASE, DELIVERED, OPENED, ...")
        etype = EventType(event.type)
        decision_id = self._id(event.decision_id, f"{at}decision_id", required=False)
        value = 0.0
        channel = -1
        if etype == EventType.PURCHASE:
            value = self._number(
                event.value, f"{at}value", 0.0, self.limits.max_value, "limits.max_value"
            )
        elif event.value != 0:
            raise InvalidRequest(
                f"{at}value", f"only PURCHASE events carry a value, not {etype.name}"
            )
        if etype in CHANNEL_EVENTS:
            if not event.channel:
                raise InvalidRequest(f"{at}channel", f"required for {etype.name}")
            if event.channel not in self.catalog.channel_index:
                raise InvalidRequest(f"{at}channel", f"unknown channel {shown(event.channel)}")
            channel = self.catalog.channel_index[event.channel]
        elif event.channel:
            raise InvalidRequest(f"{at}channel", f"{etype.name} events carry no channel")
        if etype in DECISION_EVENTS and not decision_id:
            raise InvalidRequest(f"{at}decision_id", f"required for {etype.name}")
        return event_id, customer_id, time, int(etype), value, channel, decision_id

    def outcome(self, request: pb.ReportOutcomeRequest) -> Outcome:
        decision_id = self._id(request.decision_id, "decision_id")
        time = self._time(request, "time", "time")
        kind = request.WhichOneof("outcome")
        if kind is None:
            raise InvalidRequest("outcome", "one of reward or value is required")
        if kind == "reward":
            bound = self.limits.max_abs_reward
            number = self._number(request.reward, "reward", -bound, bound, "limits.max_abs_reward")
        else:
            number = self._number(
                request.value, "value", 0.0, self.limits.max_value, "limits.max_value"
            )
        outcome_id = self._id(request.outcome_id, "outcome_id", required=kind == "value")
        if kind == "value" and outcome_id == DEFAULT_OUTCOME_ID:
            raise InvalidRequest("outcome_id", f"{DEFAULT_OUTCOME_ID!r} is reserved for rewards")
        return Outcome(
            decision_id=decision_id,
            outcome_id=outcome_id or DEFAULT_OUTCOME_ID,
            time=time,
            reward=number if kind == "reward" else None,
            value=number if kind == "value" else None,
        )
