"""Reply sizes: a batch reply always fits the message limit, checked once at start.

Decisions of a stream batch and events of a ReportEvents call are committed before the reply is
built. A reply over the message limit would then be lost on the wire after its work was done,
and a client retrying it would decide twice or count purchases twice. So the server refuses to
start with limits under which the largest possible reply of a full batch could exceed
``limits.max_message_bytes``: every field of a reply is bounded (ids by ``max_id_length``, item
errors by ``service.MAX_ITEM_MESSAGE`` ASCII characters, the actions by the catalog).
"""

from __future__ import annotations

import numpy as np

from engine.contact import Rule
from engine.decide import DecisionEngine
from engine.errors import ConfigError
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.convert import Converter
from engine.server.service import MAX_ITEM_FIELD, MAX_ITEM_MESSAGE

_MAX_INT64_DIGITS = 19


def largest_decision(engine: DecisionEngine, convert: Converter) -> pb.DecideResult:
    """A decision result at least as large as any the server can send."""
    cat = engine.catalog
    limits = engine.config.limits
    arms = engine.experiment.arms
    decision = pb.Decision(
        decision_id="x" * (len("ffffffffffff-") + _MAX_INT64_DIGITS),
        customer_id="x" * limits.max_id_length,
        experiment=engine.experiment.name,
        arm=max((a.name for a in arms), key=len),
        policy=max((a.policy for a in arms), key=len),
        model_version="x" * (64 + 1 + _MAX_INT64_DIGITS),
        no_contact=True,
        probability=0.123456789,
        cost=123456.789,
        customer_known=True,
    )
    decision.time.seconds = decision.attribution_window_end.seconds = 253_402_300_799
    longest = max(range(cat.n_actions), key=lambda a: len(cat.action_keys[a]))
    decision.action.CopyFrom(pb.Action(**_names(cat.actions[longest])))
    rules = [int(r) for r in Rule if r not in (Rule.NONE, Rule.NOT_CANDIDATE)]
    for a in range(cat.n_actions):  # every action both eligible and removed: an upper bound
        decision.eligible.add(
            action=pb.Action(**_names(cat.actions[a])), probability=0.123456789, cost=123456.789
        )
        if a == 0:
            continue
        detail = max(
            (convert.contact.describe(r, a, known) for r in rules for known in (True, False)),
            key=len,
        )
        decision.removed.add(
            action=pb.Action(**_names(cat.actions[a])),
            rule=pb.EligibilityRule.ValueType(max(rules)),
            detail=detail,
        )
    return pb.DecideResult(decision=decision)


def _names(action: object) -> dict[str, str]:
    return {"touchpoint": action.touchpoint, "channel": action.channel}  # type: ignore[attr-defined]


def largest_item_error() -> pb.ReportEventResult:
    return pb.ReportEventResult(
        error=pb.ItemError(code=16, field="x" * MAX_ITEM_FIELD, message="x" * MAX_ITEM_MESSAGE)
    )  # both ASCII (service._bounded): one byte per character


def check_reply_limits(engine: DecisionEngine, convert: Converter) -> None:
    """ConfigError naming the limit when a full batch's reply could exceed the message limit."""
    limits = engine.config.limits
    budget = limits.max_message_bytes - 1024
    decision = len(largest_decision(engine, convert).SerializeToString()) + 4  # repeated tag+len
    if decision * limits.max_batch > budget:
        raise ConfigError(
            engine.config.source,
            "limits.max_batch",
            f"a reply to {limits.max_batch} requests may take {decision * limits.max_batch:,}"
            f" bytes, over limits.max_message_bytes ({limits.max_message_bytes:,}); allow at"
            f" most {int(np.floor(budget / decision))} requests per batch",
        )
    item = len(largest_item_error().SerializeToString()) + 4
    if item * limits.max_events > budget:
        raise ConfigError(
            engine.config.source,
            "limits.max_events",
            f"a reply to {limits.max_events} events may take {item * limits.max_events:,}"
            f" bytes, over limits.max_message_bytes ({limits.max_message_bytes:,}); allow at"
            f" most {int(np.floor(budget / item))} events per call",
        )
