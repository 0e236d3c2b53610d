"""The store interface: customer state, the decision log, events, outcomes, model checkpoints.

Two implementations: `SQLiteStore` (the server's default; one WAL file, durable before a reply)
and `MemoryStore` (vectorised arrays; the in-process simulator). A networked SQL database would
implement the same methods. Both must behave identically: tests/unit/test_store_contract.py runs
one suite against each.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from engine.decisions import ClosedDecisions, DecisionBatch, DecisionRecord
from engine.errors import AnstossError
from engine.requests import EventBatch, EventResult, Outcome
from engine.rewards import RewardRule
from engine.state import CustomerStates


@dataclass(frozen=True)
class Checkpoint:
    arm: str
    label: str
    updates: int
    close_seq: int  # every decision of the arm closed up to here is in the model
    model: bytes


@dataclass(frozen=True)
class OutcomeApplied:
    duplicate: bool
    status: int
    reward: float | None
    closed: ClosedDecisions | None  # the decision, when this outcome closed it


@dataclass(frozen=True)
class LogContext:
    """What the store needs beyond the batch to write decision rows."""

    experiment: str
    arm_names: tuple[str, ...]
    arm_policies: tuple[str, ...]


class Store(Protocol):
    instance_id: str

    def load_states(self, customer_ids: list[str], times: np.ndarray) -> CustomerStates: ...

    def log_decisions(self, batch: DecisionBatch, context: LogContext) -> None:
        """Assign seq and decision ids, write the decisions and their contacts; durable on
        return."""
        ...

    def apply_events(
        self, events: EventBatch, rule: RewardRule
    ) -> list[EventResult | AnstossError]:
        """Apply events in order in one write; decisions due at the event time before the
        call count as closed. Event ids are scoped to the customer (engine/eventkeys.py),
        events about a decision are checked and applied by engine/activation.py, consent and
        subscription are two registers (engine/state.py). Event time moves to the events'
        latest time if it commits."""
        ...

    def apply_outcome(self, outcome: Outcome, rule: RewardRule) -> OutcomeApplied:
        """Apply an outcome (FAILED_PRECONDITION for a closed or due decision); event time
        moves to its time if it commits."""
        ...

    def close_due(
        self, watermark: int, rule: RewardRule, learners: frozenset[str], limit: int | None = None
    ) -> ClosedDecisions:
        """Close the open decisions whose window end + lateness <= watermark (at most `limit`
        of them, the first), in order of (window end, seq); assign close_seq; return those of
        the `learners` arms (what the other arms' policies would not learn from is not read
        back)."""
        ...

    def has_due(self, rule: RewardRule) -> bool:
        """Whether open decisions are due at the current event time."""
        ...

    def closed_since(
        self, arm: str, after_close_seq: int, limit: int | None = None
    ) -> ClosedDecisions:
        """Closed decisions of the arm after a close_seq, in close order (the first `limit`),
        without those marked unlearned."""
        ...

    def mark_unlearned(self, arm: str, close_seqs: Sequence[int], reason: str) -> None:
        """Record closed decisions the arm's policy could not learn from (durable)."""
        ...

    def atomic(self) -> AbstractContextManager[None]:
        """A block whose writes are committed together or not at all."""
        ...

    def observe(self, time: int) -> None:
        """Event time reached `time`; a durable store persists it with its next write."""
        ...

    def get_decision(self, decision_id: str) -> DecisionRecord | None: ...

    def find_requests(
        self, customer_ids: Sequence[str], request_ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """Decisions logged for (customer, request id) pairs: pair -> (decision id, the
        request's fingerprint, engine/requests.py)."""
        ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def load_checkpoint(self, arm: str) -> Checkpoint | None: ...

    @property
    def watermark(self) -> int: ...

    def decisions_frame(self) -> pd.DataFrame: ...

    def events_frame(self) -> pd.DataFrame: ...

    def close(self) -> None: ...
