"""Fuzzing every RPC of anstoss.v1.DecisionService over the wire, on a real loopback server.

Two kinds of input: messages built by hypothesis strategies (nasty strings, non-finite and
extreme floats, int32 extremes, Timestamps anywhere in their int64/int32 ranges, unknown enum
values, bad candidates and feature maps, decision ids that exist, don't, or are very long), and
raw bytes sent as the request of each method through a generic channel call. One test plays a
few customers over weeks in time order, so that windows close and the bandit learns.

Every call must end in one of the statuses a client can act on, never UNKNOWN, INTERNAL or a
timeout; its details never carry a stack trace, stay short, and an INVALID_ARGUMENT names the
field it is about (batch items: their own item). A request whose time is impossible (unset,
nanos out of range, before 2000-01-01 or after now: the server's default wall-clock guard) or
which carries a non-finite number must be refused. After every example the server still
serves: health SERVING, new customers decided at a sane time, event time still moving (a
purchase two days after a decision is attributed to it), and it stops when asked.

Each hypothesis example gets a fresh server on a fresh SQLite file, so what one example does to
the server's state (its event time, its model) cannot make another fail, and the minimal
example hypothesis reports reproduces on its own; the checks after an example are the checks at
the end of the test for its last example. Engines are built like the `make_engine` fixture
does, but freed after each example (that fixture keeps every engine, ~10 MB each, until
teardown).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from engine.catalog import load_catalog
from engine.config import EngineConfig
from engine.decide import DecisionEngine
from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.server.app import SERVICE_NAME, start_server
from engine.store.sqlite import SQLiteStore
from engine.timeutil import DAY, iso

pytestmark = pytest.mark.slow

NOW = int(time.time())
Y2000 = 946_684_800  # 2000-01-01T00:00:00Z, the earliest sane time
CALL_TIMEOUT = 10.0  # a call that takes longer hangs
MAX_DETAILS = 2000
STOP_TIMEOUT = 10.0
# Our client accepts trailers of any size, so that over-long details reach the checks below
# whole instead of as a random RESOURCE_EXHAUSTED "received metadata size exceeds soft limit"
# (what a client with gRPC's default 8 KiB limit sees, on some calls only).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_metadata_size", 16 * 1024 * 1024),
    ("grpc.absolute_max_metadata_size", 16 * 1024 * 1024),
]
# Probe customers of the checks after each example: new ones on both arms of the default
# experiment (bandit, chain), and one whose purchases must be attributed.
PROBE_CUSTOMERS = ("probe-new-2", "probe-new-3")
PROBE_BUYER = "probe-buyer-1"
SERVING = health_pb2.HealthCheckResponse.SERVING

Code = grpc.StatusCode
ALLOWED = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.FAILED_PRECONDITION,
        Code.RESOURCE_EXHAUSTED,
        Code.ALREADY_EXISTS,
        Code.UNAVAILABLE,
    }
)
ALLOWED_ITEM_CODES = {c.value[0]: c for c in ALLOWED if c != Code.OK}

REQUEST_TYPES: dict[str, type[Message]] = {
    "Decide": pb.DecideRequest,
    "DecideStream": pb.DecideBatchRequest,
    "ReportOutcome": pb.ReportOutcomeRequest,
    "ReportEvent": pb.ReportEventRequest,
    "ReportEvents": pb.ReportEventsRequest,
    "GetDecision": pb.GetDecisionRequest,
    "GetCatalog": pb.GetCatalogRequest,
}
RESPONSE_TYPES: dict[str, type[Message]] = {
    "Decide": pb.DecideResponse,
    "DecideStream": pb.DecideBatchResponse,
    "ReportOutcome": pb.ReportOutcomeResponse,
    "ReportEvent": pb.ReportEventResponse,
    "ReportEvents": pb.ReportEventsResponse,
    "GetDecision": pb.GetDecisionResponse,
    "GetCatalog": pb.GetCatalogResponse,
}
UNARY_METHODS = [m for m in REQUEST_TYPES if m != "DecideStream"]

CATALOG = load_catalog()
PAIRS = [(a.touchpoint, a.channel) for a in CATALOG.actions]  # ("", "") = no contact
TOUCHPOINTS = [t.name for t in CATALOG.touchpoints]
CHANNELS = [c.name for c in CATALOG.channels]
KNOWN = "\ue000known#"  # placeholder: the k-th decision id this example got back


def _fuzz(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run, so CI is reproducible
        database=None,
        # no explain phase: it replays the failing example many times over (4x the run time)
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # each example starts its own server
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# -- strategies -----------------------------------------------------------------------------


def _repeat(unit: str, n: int) -> str:
    return (unit * n)[:n]


NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r",
    "\u202eevil",
    "\ufeff",
    "😀",
    "\U0010ffff",
    "ÄÖÜß",
    "'",
    '"',
    "\\",
    "%s%n{}",
    "reward",
    "welcome",
    "email",
    "a" * 64,
    "a" * 65,
    "b" * 128,
    "b" * 129,
]
LONG_TEXT = st.builds(
    _repeat,
    st.text(min_size=1, max_size=3),
    st.one_of(st.sampled_from([129, 2001, 20 * 1024]), st.integers(100, 20 * 1024)),
)
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=20), LONG_TEXT)
SHORT_TEXT = st.one_of(
    st.sampled_from(["", "web", "app", "ÄÖÜß", "😀", "a\x00b"]), st.text(max_size=20)
)

GOOD_CUSTOMER = st.sampled_from(["c1", "c2", "c3", "Kundin-Ä", "a\x00b", "😀"])  # reused
CUSTOMER = st.one_of(GOOD_CUSTOMER, st.just(" "), TEXT)
PLAIN_CUSTOMER = st.sampled_from(["c1", "c2", "c3"])

SPECIAL_FLOATS = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    1.7976931348623157e308,
    5e-324,
    -5e-324,
    0.0,
    -0.0,
    1.0,
    -1.0,
    2.0**53,
]
FLOATS = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(), st.floats(0, 1e4))
FINITE = st.one_of(
    st.sampled_from([1e308, -1e308, 5e-324, 0.0, 1.0]),
    st.floats(allow_nan=False, allow_infinity=False),
)
VALUE = st.one_of(st.sampled_from([0.0, 5e-324, 1e308, 1.7976931348623157e308]), st.floats(0, 1e4))
INT32 = st.one_of(
    st.sampled_from([-(2**31), -1, 0, 1, 366, 367, 2**31 - 1]), st.integers(-(2**31), 2**31 - 1)
)

SANE_SECONDS = st.one_of(
    st.integers(NOW - 90 * DAY, NOW - DAY), st.integers(NOW - 20 * DAY, NOW - DAY)
)
INSANE_SECONDS = st.one_of(
    st.sampled_from(
        [
            -(2**63),
            -62_135_596_801,  # just before 0001-01-01, the Timestamp minimum
            -62_135_596_800,
            -1,
            0,
            Y2000 - 1,
            2**31 - 1,
            2**31,
            2**32,
            NOW + 2 * DAY,
            NOW + 31 * DAY,
            253_402_300_799,  # 9999-12-31T23:59:59Z, the Timestamp maximum
            253_402_300_800,
            2**63 - 1,
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(NOW + 2 * DAY, NOW + 60 * DAY),  # within the server's time-jump limit
    st.integers(-62_135_596_800, Y2000 - 1),
)
NANOS = st.one_of(
    st.integers(0, 999_999_999),
    st.sampled_from([-1, 1_000_000_000, -(2**31), 2**31 - 1]),
    st.integers(-(2**31), 2**31 - 1),
)


def _timestamp(seconds: int, nanos: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


SANE_TIME = st.builds(_timestamp, SANE_SECONDS, st.integers(0, 999_999_999))
ANY_TIME = st.one_of(
    st.none(),
    SANE_TIME,
    st.builds(_timestamp, st.one_of(SANE_SECONDS, INSANE_SECONDS), NANOS),
)
# For requests valid in every other field: mostly sane, sometimes anything.
TIME = st.one_of(SANE_TIME, SANE_TIME, ANY_TIME)

FEATURE_NAME = st.one_of(
    st.sampled_from(["age", "tier", "score", "x", "", "a" * 64, "a" * 65, "😀", "a\x00b"]),
    st.text(max_size=12),
    LONG_TEXT,
)


def _many(n: int, value: Any, prefix: str) -> dict[str, Any]:
    return {f"{prefix}{i}": value for i in range(n)}


MANY_PREFIX = st.sampled_from(["f", "😀", "a" * 60, "b" * 200])
NUMERIC = st.one_of(
    st.dictionaries(FEATURE_NAME, FLOATS, max_size=4),
    st.builds(_many, st.integers(60, 80), FLOATS, MANY_PREFIX),
)
CATEGORICAL = st.one_of(
    st.dictionaries(FEATURE_NAME, TEXT, max_size=4),
    st.builds(_many, st.integers(60, 80), TEXT, MANY_PREFIX),
)


def _context(
    acquisition: str,
    category: str,
    region: str,
    items: int | None,
    occasion: int | None,
    numeric: dict[str, float],
    categorical: dict[str, str],
) -> pb.CustomerContext:
    ctx = pb.CustomerContext(
        acquisition_channel=acquisition,
        first_order_category=category,
        region=region,
        numeric=numeric,
        categorical=categorical,
    )
    if items is not None:
        ctx.first_order_items = items
    if occasion is not None:
        ctx.days_to_occasion = occasion
    return ctx


ANY_CONTEXT = st.builds(
    _context,
    TEXT,
    TEXT,
    TEXT,
    st.none() | INT32,
    st.none() | INT32,
    NUMERIC,
    CATEGORICAL,
)
SANE_CONTEXT = st.builds(
    _context,
    SHORT_TEXT,
    SHORT_TEXT,
    SHORT_TEXT,
    st.none() | st.integers(0, 2**31 - 1),
    st.none() | st.integers(0, 366),
    st.dictionaries(st.sampled_from(["age", "score", "f1"]), FINITE, max_size=3),
    st.dictionaries(st.sampled_from(["tier", "segment"]), SHORT_TEXT, max_size=2),
)

ACTION = st.one_of(
    st.sampled_from(PAIRS),
    st.tuples(st.sampled_from(TOUCHPOINTS), st.sampled_from(CHANNELS)),  # maybe not in catalog
    st.tuples(st.sampled_from(["", *TOUCHPOINTS]) | TEXT, st.sampled_from(["", *CHANNELS]) | TEXT),
)


def _times(item: Any, n: int) -> list[Any]:
    return [item] * n


ANY_CANDIDATES = st.one_of(
    st.lists(ACTION, max_size=6),  # duplicates included
    st.builds(_times, st.sampled_from(PAIRS), st.sampled_from([2, 256, 257, 300])),
)
SANE_CANDIDATES = st.lists(st.sampled_from(PAIRS), unique=True, max_size=8)


def _decide(
    customer_id: str,
    when: Timestamp | None,
    context: pb.CustomerContext | None,
    candidates: Sequence[tuple[str, str]],
    request_id: str = "",
    defer: bool = False,
) -> pb.DecideRequest:
    request = pb.DecideRequest(
        customer_id=customer_id,
        time=when,
        context=context,
        request_id=request_id,
        defer_activation=defer,
    )
    for touchpoint, channel in candidates:
        request.candidates.add(touchpoint=touchpoint, channel=channel)
    return request


REQUEST_ID = st.one_of(st.sampled_from(["", "", "job-1", "job-2", "r" * 128, "r" * 129]), TEXT)
SANE_DECIDE = st.builds(
    _decide, GOOD_CUSTOMER, TIME, st.none() | SANE_CONTEXT, SANE_CANDIDATES,
    st.sampled_from(["", "job-1", "job-2"]), st.booleans(),
)  # fmt: skip
ANY_DECIDE = st.builds(
    _decide, CUSTOMER, ANY_TIME, st.none() | ANY_CONTEXT, ANY_CANDIDATES, REQUEST_ID, st.booleans()
)
DECIDE = st.one_of(SANE_DECIDE, ANY_DECIDE)
# Plain decisions at the start of an example, so that there are decision ids to refer to.
PRELUDE_DECIDE = st.builds(
    _decide,
    PLAIN_CUSTOMER,
    st.builds(_timestamp, st.integers(NOW - 20 * DAY, NOW - DAY), st.just(0)),
    st.none(),
    st.just([]),
)


def _known(k: int) -> str:
    return f"{KNOWN}{k}"


KNOWN_ID = st.builds(_known, st.integers(0, 9))
DECISION_ID = st.one_of(
    KNOWN_ID,
    st.sampled_from(["", " ", "no-such-decision", "\x00", "d" * 128, "d" * 129]),
    TEXT,
)
OUTCOME_ID = st.one_of(st.sampled_from(["", "reward", "order-1", "order-2", "o" * 129]), TEXT)


def _outcome(
    decision_id: str, outcome_id: str, when: Timestamp | None, kind: str | None, number: float
) -> pb.ReportOutcomeRequest:
    request = pb.ReportOutcomeRequest(decision_id=decision_id, outcome_id=outcome_id, time=when)
    if kind == "reward":
        request.reward = number
    elif kind == "value":
        request.value = number
    return request


ANY_OUTCOME = st.builds(
    _outcome, DECISION_ID, OUTCOME_ID, ANY_TIME, st.sampled_from(["reward", "value", None]), FLOATS
)
SANE_OUTCOME = st.one_of(
    st.builds(_outcome, KNOWN_ID, st.just(""), TIME, st.just("reward"), FINITE),
    st.builds(
        _outcome,
        KNOWN_ID,
        st.sampled_from(["order-1", "order-2"]),
        TIME,
        st.just("value"),
        VALUE,
    ),
)
OUTCOME = st.one_of(SANE_OUTCOME, ANY_OUTCOME)

EVENT_ID = st.one_of(st.sampled_from(["", "order-1", "order-2", "e" * 128, "e" * 129]), TEXT)
EVENT_TYPE = st.one_of(st.integers(0, 9), INT32)
CHANNEL = st.one_of(st.sampled_from(["", *CHANNELS]), TEXT)


def _event(
    event_id: str,
    customer_id: str,
    when: Timestamp | None,
    kind: int,
    value: float,
    channel: str,
    decision_id: str,
) -> pb.Event:
    return pb.Event(
        event_id=event_id,
        customer_id=customer_id,
        time=when,
        type=kind,  # type: ignore[arg-type]  # unknown enum values are kept in proto3
        value=value,
        channel=channel,
        decision_id=decision_id,
    )


ANY_EVENT = st.builds(
    _event, EVENT_ID, CUSTOMER, ANY_TIME, EVENT_TYPE, FLOATS | st.just(0.0), CHANNEL, DECISION_ID
)
PERMISSIONS = [
    EventType.UNSUBSCRIBED,
    EventType.CONSENT_GRANTED,
    EventType.CONSENT_WITHDRAWN,
    EventType.RESUBSCRIBED,
]
RESPONSES = [EventType.DELIVERED, EventType.OPENED, EventType.CLICKED, EventType.NOT_EXECUTED]
SANE_EVENT = st.one_of(
    st.builds(
        _event,
        EVENT_ID,
        GOOD_CUSTOMER,
        TIME,
        st.just(int(EventType.PURCHASE)),
        VALUE,
        st.just(""),
        st.just("") | KNOWN_ID,
    ),
    st.builds(
        _event,
        EVENT_ID,
        GOOD_CUSTOMER,
        TIME,
        st.sampled_from([int(t) for t in RESPONSES]),
        st.just(0.0),
        st.just(""),
        KNOWN_ID,
    ),
    st.builds(
        _event,
        EVENT_ID,
        GOOD_CUSTOMER,
        TIME,
        st.sampled_from([int(t) for t in PERMISSIONS]),
        st.just(0.0),
        st.sampled_from(CHANNELS),
        st.just(""),
    ),
)
EVENT = st.one_of(SANE_EVENT, ANY_EVENT)


def _event_request(event: pb.Event | None) -> pb.ReportEventRequest:
    return pb.ReportEventRequest(event=event)


def _events_request(events: list[pb.Event]) -> pb.ReportEventsRequest:
    return pb.ReportEventsRequest(events=events)


def _batch(requests: list[pb.DecideRequest]) -> pb.DecideBatchRequest:
    return pb.DecideBatchRequest(requests=requests)


BATCH = st.builds(
    _batch,
    st.one_of(
        st.lists(DECIDE, max_size=6),
        st.builds(_times, SANE_DECIDE, st.sampled_from([1000, 1001])),  # the batch limit
    ),
)
EVENTS = st.builds(
    _events_request,
    st.one_of(
        st.lists(EVENT, max_size=8),
        st.builds(_times, SANE_EVENT, st.sampled_from([500, 10_001])),  # the events limit
    ),
)


def _show_text(value: str) -> str:
    return value if len(value) <= 40 else f"{value[:20]}...<{len(value)} chars>"


def _shorten(message: Message) -> None:
    """Long strings (and map keys) cut to a readable length, in place."""
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            for key in list(value):
                item = value[key]
                if isinstance(item, str):
                    item = _show_text(item)
                del value[key]
                value[_show_text(key) if isinstance(key, str) else key] = item
        elif fd.message_type is not None:
            for sub in value if fd.is_repeated else [value]:
                _shorten(sub)
        elif fd.type == fd.TYPE_STRING and not fd.is_repeated:
            setattr(message, fd.name, _show_text(value))


def show(message: Message) -> str:
    copy = type(message)()
    copy.CopyFrom(message)
    _shorten(copy)
    text = text_format.MessageToString(copy, as_one_line=True, as_utf8=True)
    return text if len(text) <= 1500 else f"{text[:1500]}...<{len(text)} chars>"


def _show_bytes(data: bytes) -> str:
    return repr(data) if len(data) <= 300 else f"{data[:300]!r}...<{len(data)} bytes>"


class Later:
    """A note rendered only when hypothesis reports it (the failing example)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render

    def __repr__(self) -> str:
        return self.render()


class Call:
    """One RPC of an example: `request` is a message, or the messages of a stream."""

    __slots__ = ("method", "request")

    def __init__(self, method: str, request: Message | tuple[Message, ...]) -> None:
        self.method = method
        self.request = request

    def __repr__(self) -> str:
        if isinstance(self.request, tuple):
            return f"{self.method}[{', '.join(f'<{show(m)}>' for m in self.request)}]"
        return f"{self.method}<{show(self.request)}>"


class Raw:
    """Raw bytes as the request (or, for the stream, the messages) of a method."""

    __slots__ = ("data", "method")

    def __init__(self, method: str, data: tuple[bytes, ...]) -> None:
        self.method = method
        self.data = data

    def __repr__(self) -> str:
        return f"raw {self.method}[{', '.join(_show_bytes(d) for d in self.data)}]"


def _call(method: str, request: Any) -> Call:
    return Call(method, tuple(request) if isinstance(request, list) else request)


def calls(method: str, requests: st.SearchStrategy[Any]) -> st.SearchStrategy[Call]:
    return st.builds(_call, st.just(method), requests)


DECIDE_CALL = calls("Decide", DECIDE)
STREAM_CALL = calls("DecideStream", st.lists(BATCH, max_size=3))
OUTCOME_CALL = calls("ReportOutcome", OUTCOME)
EVENT_CALL = calls("ReportEvent", st.builds(_event_request, st.none() | EVENT))
EVENTS_CALL = calls("ReportEvents", EVENTS)
GET_DECISION_CALL = calls("GetDecision", st.builds(pb.GetDecisionRequest, decision_id=DECISION_ID))
CATALOG_CALL = calls("GetCatalog", st.just(pb.GetCatalogRequest()))
ANY_CALL = st.one_of(
    DECIDE_CALL,
    STREAM_CALL,
    OUTCOME_CALL,
    EVENT_CALL,
    EVENTS_CALL,
    GET_DECISION_CALL,
    CATALOG_CALL,
)
PRELUDE = st.lists(calls("Decide", PRELUDE_DECIDE), max_size=3)

LIFE_CUSTOMERS = ["c1", "c2", "probe-new-3"]  # two on the bandit arm, one on the chain
GAPS = st.one_of(st.sampled_from([0, 60, 3600, DAY, 11 * DAY, 12 * DAY]), st.integers(0, 15 * DAY))
LIFE_STEPS = [
    "decide",
    "stream",
    "purchase",
    "purchase",
    "events",
    "reward",
    "value",
    "response",
    "permission",
    "get",
]


@st.composite
def lifecycles(draw: st.DrawFn) -> list[Call]:
    """A few customers over weeks, in time order: decisions, purchases, rewards and values,
    responses and permission events, with extreme (and some non-finite) numbers, so that
    windows close, rewards are computed and the bandit learns from them."""
    t = draw(st.integers(NOW - 80 * DAY, NOW - 40 * DAY))
    out: list[Call] = []
    for _ in range(draw(st.integers(1, 14))):
        t = min(t + draw(GAPS), NOW - DAY)
        when = Timestamp(seconds=t)
        customer = draw(st.sampled_from(LIFE_CUSTOMERS))
        step = draw(st.sampled_from(LIFE_STEPS))
        if step == "decide":
            context = draw(st.none() | SANE_CONTEXT)
            out.append(Call("Decide", _decide(customer, when, context, draw(SANE_CANDIDATES))))
        elif step == "stream":
            batch = [_decide(c, when, None, []) for c in LIFE_CUSTOMERS]
            out.append(Call("DecideStream", (pb.DecideBatchRequest(requests=batch),)))
        elif step in ("purchase", "events"):
            purchases = [
                _event(
                    draw(st.sampled_from(["", "order-1", "order-2"])),
                    customer,
                    when,
                    int(EventType.PURCHASE),
                    draw(st.one_of(VALUE, FLOATS)),
                    "",
                    "",
                )
                for _ in range(1 if step == "purchase" else draw(st.integers(1, 3)))
            ]
            if step == "purchase":
                out.append(Call("ReportEvent", pb.ReportEventRequest(event=purchases[0])))
            else:
                out.append(Call("ReportEvents", pb.ReportEventsRequest(events=purchases)))
        elif step == "reward":
            number = draw(st.one_of(FINITE, FLOATS))
            out.append(Call("ReportOutcome", _outcome(draw(KNOWN_ID), "", when, "reward", number)))
        elif step == "value":
            order = draw(st.sampled_from(["order-1", "order-2"]))
            number = draw(st.one_of(VALUE, FLOATS))
            out.append(
                Call("ReportOutcome", _outcome(draw(KNOWN_ID), order, when, "value", number))
            )
        elif step == "response":
            kind = int(draw(st.sampled_from(RESPONSES)))
            event = _event("", customer, when, kind, 0.0, "", draw(KNOWN_ID))
            out.append(Call("ReportEvent", pb.ReportEventRequest(event=event)))
        elif step == "permission":
            kind = int(draw(st.sampled_from(PERMISSIONS)))
            event = _event("", customer, when, kind, 0.0, draw(st.sampled_from(CHANNELS)), "")
            out.append(Call("ReportEvent", pb.ReportEventRequest(event=event)))
        else:
            out.append(Call("GetDecision", pb.GetDecisionRequest(decision_id=draw(KNOWN_ID))))
    return out


# -- raw bytes ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


@st.composite
def protoish(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Tag-length-value soup: known and unknown field numbers, every wire type (also the
    invalid 6 and 7), wrong lengths, invalid UTF-8, nested messages, groups."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        number = draw(st.one_of(st.integers(1, 12), st.integers(0, 2**29 - 1)))
        wire = draw(st.integers(0, 7))
        out += _varint((number << 3) | wire)
        if wire == 0:
            out += draw(
                st.one_of(
                    st.builds(_varint, st.integers(0, 2**64 - 1)),
                    st.sampled_from([b"\xff" * 10 + b"\x01", b"\x80" * 11, b"\xff"]),
                )
            )
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 2:
            body = draw(
                st.one_of(
                    st.binary(max_size=24),
                    st.sampled_from([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"a\x00b"]),
                    protoish(depth + 1) if depth < 2 else st.just(b""),
                )
            )
            length = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32)))
            out += _varint(length) + body
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
    return bytes(out)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, where, extra in edits:
        at = where % (len(buf) + 1)
        if kind == 0:
            del buf[at:]
        elif kind == 1 and at < len(buf):
            buf[at] ^= 1 << (where % 8)
        elif kind == 2:
            buf[at:at] = extra
        else:
            del buf[at : at + 1 + where % 4]
    return bytes(buf)


EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.binary(max_size=6)), max_size=4
)
NASTY_BYTES = [
    b"",
    b"\x00",
    b"\xff",
    b"\x08",  # a tag without its value
    b"\x80" * 11,  # a varint too long
    b"\x0a\xff\xff\xff\xff\x0f",  # a length of 4 GiB
    b"\x0a\x02\xff\xfe",  # field 1 (a string in most requests) not UTF-8
    b"\x12\x03\x08\x80\x80",  # field 2 (the time, mostly) truncated inside
    b"\x0b" * 200,  # 200 nested groups
    b"\x1a\x00" * 1000,
]
SERIALIZABLE: dict[str, st.SearchStrategy[Message]] = {
    "Decide": DECIDE,
    "DecideStream": BATCH,
    "ReportOutcome": OUTCOME,
    "ReportEvent": st.builds(_event_request, EVENT),
    "ReportEvents": EVENTS,
    "GetDecision": st.builds(pb.GetDecisionRequest, decision_id=DECISION_ID),
    "GetCatalog": st.just(pb.GetCatalogRequest()),
}


def _serialized(message: Message) -> bytes:
    return message.SerializeToString()


def raw_bytes(method: str) -> st.SearchStrategy[bytes]:
    valid = SERIALIZABLE[method].map(_serialized)
    return st.one_of(
        st.sampled_from(NASTY_BYTES),
        st.binary(max_size=64),
        st.binary(max_size=4096),
        protoish(),
        st.builds(_mutate, valid, EDITS),
        st.builds(bytes.__add__, valid, protoish()),  # a valid message plus unknown fields
    )


def _raw(method: str, data: bytes | list[bytes]) -> Raw:
    return Raw(method, tuple(data) if isinstance(data, list) else (data,))


def raw_calls(method: str) -> st.SearchStrategy[Raw]:
    data = raw_bytes(method)
    return st.builds(
        _raw, st.just(method), st.lists(data, max_size=3) if method == "DecideStream" else data
    )


# -- the properties of every call -----------------------------------------------------------

# name, then indexes: [3], or a map key as a quoted repr, maybe abbreviated: ['age'],
# ['xxxxxxxx...' (100 characters)]
_QUOTED = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
_SEGMENT = re.compile(rf"([a-z_][a-z0-9_]*)((?:\[(?:\d+|(?:{_QUOTED})[^\]\n]*)\])*)")


WHOLE_REQUEST = "request"  # the path of the request itself, e.g. when it does not decode


def path_problem(details: str, descriptor: Descriptor) -> str | None:
    """None if `details` starts with '<path>: ' and the path names a field of `descriptor`
    (or is "request", the whole request), e.g. "requests[3].context.numeric['age']: ..." for a
    DecideBatchRequest."""
    if details.startswith(f"{WHOLE_REQUEST}: "):
        return None
    pos = 0
    desc: Descriptor | None = descriptor
    while True:
        match = _SEGMENT.match(details, pos)
        if match is None:
            return "does not start with a field path"
        name = match.group(1)
        fd = desc.fields_by_name.get(name) if desc is not None else None
        if fd is None and (desc is None or name not in desc.oneofs_by_name):
            where = desc.full_name if desc is not None else "a scalar"
            return f"{details[: match.end()]!r}: {name!r} is not a field of {where}"
        pos = match.end()
        if details.startswith(": ", pos):
            return None
        if not details.startswith(".", pos):
            return "the field path is not followed by ': '"
        desc = fd.message_type if fd is not None else None
        pos += 1


def _status_problems(code: grpc.StatusCode, details: str, descriptor: Descriptor) -> None:
    shown = details if len(details) <= 300 else f"{details[:300]}...<{len(details)} chars>"
    assert code in ALLOWED, f"status {code.name}: {shown!r}"
    assert "Traceback" not in details, f"{code.name} details carry a stack trace: {shown!r}"
    assert len(details) <= MAX_DETAILS, (
        f"{code.name} details of {len(details)} characters: {shown!r}"
    )
    if code == Code.INVALID_ARGUMENT:
        problem = path_problem(details, descriptor)
        assert problem is None, f"INVALID_ARGUMENT {shown!r}: {problem}"


def _item_problems(
    error: pb.ItemError, position: int, repeated: str, descriptor: Descriptor
) -> None:
    """An ItemError of a batch: as a status, plus the path names its own item."""
    message = error.message
    shown = message if len(message) <= 300 else f"{message[:300]}...<{len(message)} chars>"
    assert error.code in ALLOWED_ITEM_CODES, f"{repeated}[{position}]: code {error.code}: {shown!r}"
    code = ALLOWED_ITEM_CODES[error.code]
    assert "Traceback" not in message, f"{repeated}[{position}]: stack trace: {shown!r}"
    assert len(message) <= MAX_DETAILS, (
        f"{repeated}[{position}]: {code.name} message of {len(message)} characters: {shown!r}"
    )
    if code == Code.INVALID_ARGUMENT:
        assert error.field.startswith(f"{repeated}[{position}]"), (
            f"{repeated}[{position}]: field {_show_text(error.field)!r} names another item"
        )
        assert message.startswith(f"{error.field}: "), (
            f"{repeated}[{position}]: message {shown!r} does not start with its field"
        )
        problem = path_problem(message, descriptor)
        assert problem is None, f"{repeated}[{position}]: {shown!r}: {problem}"


def bad_time(message: Message) -> str | None:
    """Why the message's `time` is not a time the server may accept, if it isn't."""
    if not message.HasField("time"):
        return "no time"
    seconds, nanos = message.time.seconds, message.time.nanos  # type: ignore[attr-defined]
    if not 0 <= nanos <= 999_999_999:
        return f"time.nanos {nanos} out of range"
    if seconds < Y2000:
        return f"time.seconds {seconds} before 2000-01-01"
    if seconds > time.time() + DAY:
        return f"time.seconds {seconds} in the future"
    return None


def must_refuse(message: Message) -> str | None:
    """Why the contract says this request (or batch item) must not succeed, if it does."""
    if isinstance(message, pb.ReportEventRequest):
        message = message.event
    if "time" not in message.DESCRIPTOR.fields_by_name:
        return None  # GetDecision, GetCatalog
    reason = bad_time(message)
    if reason:
        return reason
    if isinstance(message, pb.DecideRequest):
        for name, value in message.context.numeric.items():
            if not math.isfinite(value):
                return f"context.numeric[{_show_text(name)!r}] = {value}"
    elif isinstance(message, pb.ReportOutcomeRequest):
        kind = message.WhichOneof("outcome")
        if kind is None:
            return "neither reward nor value"
        number = getattr(message, kind)
        if not math.isfinite(number):
            return f"{kind} = {number}"
    elif isinstance(message, pb.Event) and message.type == EventType.PURCHASE:
        value = message.value
        return None if math.isfinite(value) and value >= 0 else f"purchase value {value}"
    return None


# -- a fresh server per example -------------------------------------------------------------


class Wire:
    """A real server on loopback for one example, and every call checked on its way back."""

    def __init__(self, config: EngineConfig, path: Path) -> None:
        self.engine = DecisionEngine(config, SQLiteStore(path, config.catalog))
        self.running = start_server(self.engine, port=0)
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.running.port}", options=CHANNEL_OPTIONS
        )
        self.stub = pb_grpc.DecisionServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.known: list[str] = []  # decision ids of this example's successful decisions
        self.stopped: bool | None = None

    def stop(self) -> bool:
        """Stop the server as `anstoss serve` does (cancel calls, checkpoint, close the store);
        False if that did not finish within STOP_TIMEOUT or the server says it did not
        confirm its gRPC shutdown."""
        if self.stopped is None:
            done: list[object] = []
            stopper = threading.Thread(target=lambda: done.append(self.running.stop(0)))
            stopper.daemon = True  # a server that never stops must not keep pytest alive
            stopper.start()
            stopper.join(STOP_TIMEOUT)
            self.stopped = bool(done) and done[0] is not False
            self.channel.close()
        return self.stopped

    def close(self) -> None:
        self.stop()
        # A failing example's traceback keeps this object alive: let the engine (and the
        # server's threads) go anyway.
        del self.engine, self.running, self.stub, self.health, self.channel

    # binding placeholders to the decision ids of this example

    def _resolve(self, value: str) -> str:
        if not value.startswith(KNOWN):
            return value
        if not self.known:
            return "no-decision-yet"
        return self.known[int(value[len(KNOWN) :]) % len(self.known)]

    def bind(self, message: Message) -> Message:
        out = type(message)()
        out.CopyFrom(message)
        if isinstance(out, pb.ReportOutcomeRequest | pb.GetDecisionRequest):
            out.decision_id = self._resolve(out.decision_id)
        elif isinstance(out, pb.ReportEventRequest):
            if out.event.decision_id.startswith(KNOWN):
                out.event.decision_id = self._resolve(out.event.decision_id)
        elif isinstance(out, pb.ReportEventsRequest):
            for event in out.events:
                event.decision_id = self._resolve(event.decision_id)
        return out

    # calls

    def run(self, call: Call | Raw) -> None:
        if isinstance(call, Raw):
            if call.method == "DecideStream":
                self.raw_stream(list(call.data))
            else:
                self.raw_unary(call.method, call.data[0])
        elif call.method == "DecideStream":
            assert isinstance(call.request, tuple)
            self.stream([self.bind(m) for m in call.request])
        else:
            assert isinstance(call.request, Message)
            self.unary(call.method, self.bind(call.request))

    def unary(self, method: str, request: Message, must_succeed: bool = False) -> Message | None:
        try:
            response = getattr(self.stub, method)(request, timeout=CALL_TIMEOUT)
            code, details = Code.OK, ""
        except grpc.RpcError as exc:
            response, code, details = None, exc.code(), exc.details() or ""
        note(Later(lambda: f"{method}<{show(request)}> -> {code.name} {_show_text(details)!r}"))
        self.check(method, request, code, details, response)
        assert code == Code.OK or not must_succeed, (
            f"{method} of a plain request failed: {code.name} {_show_text(details)!r}"
        )
        return response

    def stream(self, batches: list[Message]) -> None:
        replies: list[pb.DecideBatchResponse] = []
        code, details = Code.OK, ""
        try:
            replies.extend(self.stub.DecideStream(iter(batches), timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        note(
            Later(
                lambda: (
                    f"DecideStream[{', '.join(f'<{show(b)}>' for b in batches)}]"
                    f" -> {code.name} {_show_text(details)!r}"
                )
            )
        )
        _status_problems(code, details, pb.DecideBatchRequest.DESCRIPTOR)
        if code == Code.OK:
            assert len(replies) == len(batches), f"{len(replies)} replies to {len(batches)} batches"
        for batch, reply in zip(batches, replies, strict=False):
            self.check_batch(batch, reply)  # type: ignore[arg-type]

    def raw_unary(self, method: str, data: bytes) -> None:
        rpc = self.channel.unary_unary(
            f"/{SERVICE_NAME}/{method}", request_serializer=None, response_deserializer=None
        )
        try:
            answer = rpc(data, timeout=CALL_TIMEOUT)
            code, details = Code.OK, ""
        except grpc.RpcError as exc:
            answer, code, details = None, exc.code(), exc.details() or ""
        note(Later(lambda: f"raw {method} {_show_bytes(data)} -> {code.name} {details[:300]!r}"))
        request = _decoded(REQUEST_TYPES[method], data)
        _status_problems(code, details, REQUEST_TYPES[method].DESCRIPTOR)
        if code != Code.OK:
            return
        response = RESPONSE_TYPES[method].FromString(answer)
        assert request is not None, f"bytes that do not decode as a {method} request were accepted"
        self.check(method, request, code, details, response)

    def raw_stream(self, messages: list[bytes]) -> None:
        rpc = self.channel.stream_stream(
            f"/{SERVICE_NAME}/DecideStream", request_serializer=None, response_deserializer=None
        )
        answers: list[bytes] = []
        code, details = Code.OK, ""
        try:
            answers.extend(rpc(iter(messages), timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        note(
            Later(
                lambda: (
                    f"raw DecideStream [{', '.join(_show_bytes(m) for m in messages)}]"
                    f" -> {code.name} {details[:300]!r}"
                )
            )
        )
        _status_problems(code, details, pb.DecideBatchRequest.DESCRIPTOR)
        for data, answer in zip(messages, answers, strict=False):
            batch = _decoded(pb.DecideBatchRequest, data)
            assert batch is not None, (
                "bytes that do not decode as a DecideBatchRequest were answered"
            )
            assert isinstance(batch, pb.DecideBatchRequest)
            self.check_batch(batch, pb.DecideBatchResponse.FromString(answer))

    # the properties

    def check(
        self,
        method: str,
        request: Message,
        code: grpc.StatusCode,
        details: str,
        response: Message | None,
    ) -> None:
        _status_problems(code, details, request.DESCRIPTOR)
        if code != Code.OK:
            return
        if isinstance(request, pb.ReportEventsRequest):
            assert isinstance(response, pb.ReportEventsResponse)
            self.check_events(request, response)
            return
        reason = must_refuse(request)
        assert reason is None, f"{method} accepted a request with {reason}"
        if isinstance(response, pb.DecideResponse):
            assert response.decision.decision_id, "a decision without an id"
            self.known.append(response.decision.decision_id)
        elif isinstance(response, pb.GetCatalogResponse):
            actions = [(a.action.touchpoint, a.action.channel) for a in response.actions]
            assert actions == PAIRS, f"the catalog's actions changed: {actions}"

    def check_batch(self, batch: pb.DecideBatchRequest, reply: pb.DecideBatchResponse) -> None:
        if "error" in reply.DESCRIPTOR.fields_by_name and reply.HasField("error"):
            # The whole batch refused (over limits.max_batch), the stream goes on.
            error = reply.error  # type: ignore[attr-defined]
            assert not reply.results, "a refused batch with results"
            assert error.code in ALLOWED_ITEM_CODES, f"batch error code {error.code}"
            _status_problems(
                ALLOWED_ITEM_CODES[error.code], error.message, pb.DecideBatchRequest.DESCRIPTOR
            )
            return
        assert len(reply.results) == len(batch.requests), (
            f"{len(reply.results)} results for {len(batch.requests)} requests"
        )
        for i, (request, result) in enumerate(zip(batch.requests, reply.results, strict=True)):
            kind = result.WhichOneof("result")
            assert kind is not None, f"requests[{i}]: neither a decision nor an error"
            if kind == "error":
                _item_problems(result.error, i, "requests", pb.DecideBatchRequest.DESCRIPTOR)
                continue
            reason = must_refuse(request)
            assert reason is None, f"DecideStream decided requests[{i}] with {reason}"
            self.known.append(result.decision.decision_id)

    def check_events(self, request: pb.ReportEventsRequest, reply: pb.ReportEventsResponse) -> None:
        assert len(reply.results) == len(request.events), (
            f"{len(reply.results)} results for {len(request.events)} events"
        )
        for i, (event, result) in enumerate(zip(request.events, reply.results, strict=True)):
            kind = result.WhichOneof("result")
            assert kind is not None, f"events[{i}]: neither ok nor an error"
            if kind == "error":
                _item_problems(result.error, i, "events", pb.ReportEventsRequest.DESCRIPTOR)
                continue
            reason = must_refuse(event)
            assert reason is None, f"ReportEvents applied events[{i}] with {reason}"

    def _probe(self, what: str, method: str, request: Message) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            raise AssertionError(
                f"after the example, {what}: {exc.code().name} {_show_text(exc.details() or '')!r}"
            ) from None

    def still_serving(self) -> None:
        """Health SERVING, new customers decided at a sane time, event time still moving."""
        for service in ("", SERVICE_NAME):
            try:
                answer = self.health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT
                )
            except grpc.RpcError as exc:
                raise AssertionError(f"after the example, health: {exc.code().name}") from None
            assert answer.status == SERVING, f"after the example, health of {service!r}: {answer}"
        # A sane time the server's time-jump limit (if it has one) accepts too.
        watermark = self.engine.store.watermark
        now = int(time.time())
        t = min(watermark, now - 3 * DAY) if watermark >= Y2000 else now - 3 * DAY
        clock = iso(watermark) if 0 <= watermark <= 253_402_300_799 else str(watermark)
        for customer in PROBE_CUSTOMERS:
            request = pb.DecideRequest(customer_id=customer, time=Timestamp(seconds=t))
            decided = self._probe(
                f"Decide for new customer {customer} at {iso(t)}", "Decide", request
            )
            assert decided.decision.decision_id, "a decision without an id"

        def purchase(at: int, order: str) -> pb.ReportEventResponse:
            event = pb.Event(
                event_id=order,
                customer_id=PROBE_BUYER,
                time=Timestamp(seconds=at),
                type=pb.EVENT_TYPE_PURCHASE,
                value=20.0,
            )
            what = f"a purchase at {iso(at)}"
            return self._probe(what, "ReportEvent", pb.ReportEventRequest(event=event))

        purchase(t, "probe-order-1")
        request = pb.DecideRequest(customer_id=PROBE_BUYER, time=Timestamp(seconds=t + 60))
        self._probe(f"Decide at {iso(t + 60)}", "Decide", request)
        later = purchase(t + 2 * DAY, "probe-order-2")
        assert later.decisions_attributed == 1, (
            f"after the example (event time {clock}), a purchase two days after a decision at "
            f"{iso(t + 60)} was attributed to {later.decisions_attributed} decisions, not 1"
        )

    def assert_stops(self) -> None:
        assert self.stop(), f"the server did not stop within {STOP_TIMEOUT:g} s (stop(0) hangs)"


def _decoded(kind: type[Message], data: bytes) -> Message | None:
    try:
        return kind.FromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None


Wires = Callable[[], contextlib.AbstractContextManager[Wire]]


@pytest.fixture
def wires(tmp_path: Path, config: EngineConfig) -> Wires:
    """A fresh server per hypothesis example, on its own SQLite file in tmp_path."""
    counter = itertools.count()

    @contextlib.contextmanager
    def wire() -> Iterator[Wire]:
        w = Wire(config, tmp_path / f"fuzz-{next(counter)}.db")
        try:
            yield w
        finally:
            w.close()

    return wire


def play(wire: Wires, prelude: Sequence[Call], *steps: Sequence[Call | Raw]) -> None:
    """On a fresh server: the plain decisions of the prelude (which must succeed), the steps,
    then check that the server still serves."""
    with wire() as w:
        for call in prelude:
            assert isinstance(call.request, Message)
            w.unary(call.method, call.request, must_succeed=True)
        for call in itertools.chain(*steps):
            w.run(call)
        w.still_serving()
        w.assert_stops()


# -- the tests ------------------------------------------------------------------------------


@_fuzz(60)
@given(prelude=PRELUDE, steps=st.lists(DECIDE_CALL, min_size=1, max_size=8))
def test_decide(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(50)
@given(prelude=PRELUDE, steps=st.lists(STREAM_CALL, min_size=1, max_size=3))
def test_decide_stream(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(50)
@given(
    prelude=PRELUDE.filter(bool),
    steps=st.lists(st.one_of(OUTCOME_CALL, OUTCOME_CALL, DECIDE_CALL), min_size=1, max_size=10),
)
def test_report_outcome(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(50)
@given(
    prelude=PRELUDE,
    steps=st.lists(st.one_of(EVENT_CALL, EVENT_CALL, DECIDE_CALL), min_size=1, max_size=10),
)
def test_report_event(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(40)
@given(prelude=PRELUDE, steps=st.lists(st.one_of(EVENTS_CALL, DECIDE_CALL), min_size=1, max_size=5))
def test_report_events(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(40)
@given(
    prelude=PRELUDE.filter(bool),
    steps=st.lists(
        st.one_of(GET_DECISION_CALL, GET_DECISION_CALL, OUTCOME_CALL, EVENT_CALL),
        min_size=1,
        max_size=10,
    ),
)
def test_get_decision(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(25)
@given(steps=st.lists(st.one_of(CATALOG_CALL, ANY_CALL), min_size=1, max_size=6))
def test_get_catalog(wires, steps: list[Call]) -> None:
    play(wires, [], steps, [Call("GetCatalog", pb.GetCatalogRequest())])


@_fuzz(60)
@given(prelude=PRELUDE, steps=st.lists(ANY_CALL, min_size=1, max_size=14))
def test_every_rpc_interleaved(wires, prelude: list[Call], steps: list[Call]) -> None:
    play(wires, prelude, steps)


@_fuzz(60)
@given(steps=lifecycles())
def test_lifecycle(wires, steps: list[Call]) -> None:
    play(wires, [], steps)


@pytest.mark.parametrize("method", UNARY_METHODS)
@_fuzz(30)
@given(data=st.data())
def test_raw_bytes_unary(wires, method: str, data: st.DataObject) -> None:
    prelude = data.draw(PRELUDE, label="prelude")
    steps = data.draw(st.lists(raw_calls(method), min_size=1, max_size=5), label="steps")
    play(wires, prelude, steps)


@_fuzz(30)
@given(prelude=PRELUDE, steps=st.lists(raw_calls("DecideStream"), min_size=1, max_size=3))
def test_raw_bytes_decide_stream(wires, prelude: list[Call], steps: list[Raw]) -> None:
    play(wires, prelude, steps)
