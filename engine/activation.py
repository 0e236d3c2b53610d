"""Events about one decision (DELIVERED, OPENED, CLICKED, NOT_EXECUTED): the checks and the
changes, as one rule both stores apply.

A decision counts as a contact (caps, gaps, touchpoint limits) from its `contact_time`: its own
time when activated immediately, the time of its first delivery when deferred. A response
(delivered, opened or clicked; an open or a click implies the message arrived) activates a
deferred decision; NOT_EXECUTED takes a decision back before it was delivered: no contact, never
learned from. The store reads a `DecisionState` per decision an event names, the rule checks and
changes it in event order, and the store writes back the states that changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.decisions import ACTIVATION_ACTIVE, ACTIVATION_NOT_EXECUTED, ACTIVATION_PENDING
from engine.errors import AnstossError, InvalidRequest, OutcomeRejected, shown
from engine.requests import EventType
from engine.state import NO_TIME
from engine.timeutil import iso

_FIRST_TIME = {
    EventType.DELIVERED: "delivered_time",
    EventType.OPENED: "opened_time",
    EventType.CLICKED: "clicked_time",
}


@dataclass
class DecisionState:
    """One decision as the rule sees it; times are NO_TIME where there is none."""

    decision_id: str
    customer_id: str
    time: int
    contacts: bool  # False for "no contact"
    deferred: bool
    activation: int
    closed: bool  # closed, or due at the event time before the call (counts as closed)
    contact_time: int
    delivered_time: int = NO_TIME
    opened_time: int = NO_TIME
    clicked_time: int = NO_TIME
    not_executed_time: int = NO_TIME
    changed: bool = False


def apply_decision_event(
    state: DecisionState, kind: int, customer_id: str, time: int
) -> AnstossError | None:
    """Check one event against its decision and apply it to `state`; an error leaves the state
    as it was (fields are relative to the event: "customer_id", "time", "decision_id")."""
    name = shown(state.decision_id)
    if customer_id != state.customer_id:
        return InvalidRequest(
            "customer_id",
            f"decision {name} was made for another customer, not {shown(customer_id)}",
        )
    if not state.contacts:
        return InvalidRequest(
            "decision_id", f"decision {name} made no contact: nothing was sent that could be "
            "delivered, opened, clicked or taken back",
        )  # fmt: skip
    if time < state.time:
        return InvalidRequest("time", f"{iso(time)} is before decision {name} ({iso(state.time)})")
    if kind == EventType.NOT_EXECUTED:
        return _take_back(state, time)
    if state.activation == ACTIVATION_NOT_EXECUTED:
        return OutcomeRejected(
            "decision_id", f"decision {name} was taken back (not executed) at "
            f"{iso(state.not_executed_time)}; it cannot be delivered, opened or clicked",
        )  # fmt: skip
    if state.activation == ACTIVATION_PENDING:
        if state.closed:
            return OutcomeRejected(
                "decision_id", f"decision {name} is closed without activation (deferred and not "
                "delivered before its attribution window closed)",
            )  # fmt: skip
        state.activation = ACTIVATION_ACTIVE
        state.contact_time = time
        state.changed = True
    elif state.deferred and time < state.contact_time:  # an earlier delivery arrived later
        state.contact_time = time
        state.changed = True
    field = _FIRST_TIME[EventType(kind)]
    current = getattr(state, field)
    if current == NO_TIME or time < current:
        setattr(state, field, time)
        state.changed = True
    return None


def _take_back(state: DecisionState, time: int) -> AnstossError | None:
    name = shown(state.decision_id)
    if state.activation == ACTIVATION_NOT_EXECUTED:
        return None  # taken back already
    if state.delivered_time != NO_TIME or (
        state.deferred and state.activation == ACTIVATION_ACTIVE
    ):
        return OutcomeRejected(
            "decision_id", f"decision {name} was delivered; it cannot be taken back"
        )
    if state.closed:
        return OutcomeRejected(
            "decision_id", f"decision {name} is closed; it can no longer be taken back"
        )
    state.activation = ACTIVATION_NOT_EXECUTED
    state.contact_time = NO_TIME
    state.not_executed_time = time
    state.changed = True
    return None
