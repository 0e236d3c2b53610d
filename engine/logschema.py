"""The decision log and event log as tables: one schema for real and simulated logs.

`decisions_frame` and `events_frame` of every store return exactly these columns, in this order,
so training, evaluation and reports read a server's SQLite log and a simulation's output the
same way. JSON columns hold what has no fixed width (features, eligible actions).
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from engine.requests import EventType

DECISION_COLUMNS: dict[str, str] = {
    "decision_id": "unique id",
    "seq": "order in the log",
    "time": "event time of the decision (UTC)",
    "customer_id": "customer",
    "experiment": "experiment name",
    "arm": "experiment arm",
    "policy": "policy kind that decided (bandit, chain, random, none, ...)",
    "model_version": "model version that decided",
    "action": "chosen action key, touchpoint@channel or no_contact",
    "touchpoint": "chosen touchpoint ('' = no contact)",
    "channel": "chosen channel ('' = no contact)",
    "probability": "probability of the chosen action",
    "cost": "cost of the chosen action",
    "features": "JSON object: the model features of the decision",
    "eligible": "JSON array: keys of the eligible actions",
    "probabilities": "JSON array: their probabilities, aligned with eligible",
    "removed": "JSON array of [action key, rule number]: actions removed by contact rules",
    "window_end": "end of the attribution window (UTC)",
    "status": "open or closed",
    "attributed_value": "purchase and reported values attributed so far",
    "attributed_purchases": "number of attributed purchases (PURCHASE events)",
    "reported_values": "number of values reported with ReportOutcome (part of attributed_value)",
    "reported_value": "sum of the values reported with ReportOutcome",
    "unsubscribes": "unsubscribes from the decision's channel inside the window",
    "reward": "reward once closed (NaN while open)",
    "reward_source": "window (closed by time) or reported (ReportOutcome reward)",
    "close_seq": "order in which rewards were fixed (-1 while open)",
    "closed_time": "event time at which the reward was fixed (UTC)",
    "request_id": "the request's idempotency key ('' = none)",
    "deferred": "deferred activation: a contact only once delivered",
    "activation": "active, pending (deferred, not delivered yet) or not_executed",
    "delivered_time": "first DELIVERED reported (UTC)",
    "opened_time": "first OPENED reported (UTC)",
    "clicked_time": "first CLICKED reported (UTC)",
    "not_executed_time": "when it was taken back or closed without activation (UTC)",
}

EVENT_COLUMNS: dict[str, str] = {
    "seq": "order of arrival",
    "event_id": "idempotency key ('' = none)",
    "customer_id": "customer",
    "time": "event time (UTC)",
    "type": "purchase, delivered, opened, clicked, unsubscribed, consent_granted,"
    " consent_withdrawn, resubscribed, not_executed",
    "value": "purchase value",
    "channel": "channel of unsubscribes and consent changes",
    "decision_id": "decision the event refers to ('' = none)",
}

EVENT_TYPE_NAMES = {int(t): t.name.lower() for t in EventType}
STATUS_NAMES = {1: "open", 2: "closed"}
ACTIVATION_NAMES = {1: "active", 2: "pending", 3: "not_executed"}
_NUMBERS = {
    "seq": "int64", "probability": "float64", "cost": "float64",
    "attributed_value": "float64", "attributed_purchases": "int64", "unsubscribes": "int64",
}  # fmt: skip
_TIMES = (
    "time", "window_end", "closed_time",
    "delivered_time", "opened_time", "clicked_time", "not_executed_time",
)  # fmt: skip


def to_json(value: object) -> str:
    """Compact JSON text for the log's JSON columns; floats round-trip exactly."""
    return orjson.dumps(value).decode()


def seconds_to_utc(values: np.ndarray | pd.Series) -> pd.Series:
    """Epoch seconds (NaN/-1 = missing) -> UTC timestamps."""
    series = pd.Series(values, dtype="float64")
    series[series < 0] = np.nan
    return pd.to_datetime(series, unit="s", utc=True)


def finish_decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """Types and column order of a decisions frame built from raw columns (times in seconds)."""
    frame = frame.copy()
    for column in _TIMES:
        frame[column] = seconds_to_utc(frame[column])
    frame["status"] = frame["status"].map(STATUS_NAMES).astype("string")
    frame["activation"] = frame["activation"].map(ACTIVATION_NAMES).astype("string")
    frame["request_id"] = frame["request_id"].fillna("")
    frame["deferred"] = frame["deferred"].astype(bool)
    frame["reported_values"] = frame["reported_values"].astype("int64")
    frame["reported_value"] = frame["reported_value"].astype("float64")
    frame["close_seq"] = frame["close_seq"].fillna(-1).astype("int64")
    for column, dtype in _NUMBERS.items():  # also when there are no rows
        frame[column] = frame[column].astype(dtype)
    frame["reward"] = frame["reward"].astype("float64")
    return frame[list(DECISION_COLUMNS)].reset_index(drop=True)


def finish_events(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["seq"] = frame["seq"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    for column in ("event_id", "customer_id", "channel", "decision_id"):
        frame[column] = frame[column].astype(object)  # whichever store built the frame
    frame["time"] = seconds_to_utc(frame["time"])
    frame["type"] = frame["type"].map(EVENT_TYPE_NAMES).astype("string")
    return frame[list(EVENT_COLUMNS)].reset_index(drop=True)
