"""Outputs of the decision core: a batch of logged decisions, closed decisions to learn from,
and one decision read back from the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.features import FeatureBatch

STATUS_OPEN = 1
STATUS_CLOSED = 2
# Whether a decision counts as a contact (protobuf Activation): active from its time (or from
# its delivery when deferred); pending until a deferred decision is delivered; not executed
# when taken back or never delivered before its window closed (never learned from).
ACTIVATION_ACTIVE = 1
ACTIVATION_PENDING = 2
ACTIVATION_NOT_EXECUTED = 3
NOT_CANDIDATE = 255  # engine.contact.Rule.NOT_CANDIDATE: not offered by the caller


def occurrence_rounds(keys: np.ndarray) -> list[np.ndarray]:
    """Split row positions into rounds in which every key appears at most once, keeping order
    (a customer with two decisions in one batch gets them applied one after the other)."""
    if len(keys) == 0:
        return []
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    occurrence = np.empty(len(keys), dtype=np.int64)
    occurrence[order] = np.arange(len(keys)) - group_start
    return [np.flatnonzero(occurrence == k) for k in range(int(occurrence.max()) + 1)]


def format_decision_id(prefix: str, seq: int) -> str:
    """A decision's id: the store's instance prefix and its place in the log."""
    return f"{prefix}-{seq:010d}"


def _by_row(nonzero: tuple[np.ndarray, ...], n: int) -> list[list[int]]:
    """Column indices of a 2-d np.nonzero result, grouped by row."""
    rows, cols = nonzero
    bounds = np.searchsorted(rows, np.arange(n + 1)).tolist()
    columns = cols.tolist()
    return [columns[bounds[i] : bounds[i + 1]] for i in range(n)]


@dataclass
class DecisionBatch:
    """n decisions, columnar; the store assigns `seq` and `id_prefix` when it logs them, and
    `decision_ids` are formatted from those on first use."""

    customer_ids: list[str]
    times: np.ndarray  # (n,) int64
    arm: np.ndarray  # (n,) int64, index into the experiment's arms
    model_version: list[str]  # per row
    features: FeatureBatch
    rule: np.ndarray  # (n, A) uint8 contact rule per action (0 = eligible)
    probabilities: np.ndarray  # (n, A) float64, 0 outside the eligible set
    chosen: np.ndarray  # (n,) int64 action index
    window_end: np.ndarray  # (n,) int64
    request_ids: list[str] | None = None  # per row, "" = none; None = no row has one
    fingerprints: list[str] | None = None  # per row when request_ids is set
    deferred: np.ndarray | None = None  # (n,) bool; None = none deferred
    seq: np.ndarray | None = None
    id_prefix: str | None = None
    _ids: list[str] | None = field(default=None, repr=False)
    _patterns: list[bytes] | None = field(default=None, repr=False)
    _eligible: list[list[int]] | None = field(default=None, repr=False)
    _removed: list[list[int]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.customer_ids)

    @property
    def allowed(self) -> np.ndarray:
        return self.rule == 0

    @property
    def decision_ids(self) -> list[str] | None:
        if self._ids is None and self.seq is not None and self.id_prefix is not None:
            self._ids = [format_decision_id(self.id_prefix, s) for s in self.seq.tolist()]
        return self._ids

    def patterns(self) -> list[bytes]:
        """Per row, a key of its contact rules and probabilities: rows with equal keys have
        equal eligible/removed lists, so whatever is derived from those can be shared."""
        if self._patterns is None:
            raw = np.hstack([self.rule, self.probabilities.view(np.uint8)])
            self._patterns = [row.tobytes() for row in raw]
        return self._patterns

    def eligible_actions(self) -> list[list[int]]:
        """Per row, the eligible action indices (ascending)."""
        if self._eligible is None:
            self._eligible = _by_row(np.nonzero(self.rule == 0), len(self))
        return self._eligible

    def removed_actions(self) -> list[list[int]]:
        """Per row, the actions removed by a contact rule (non-candidates excluded)."""
        if self._removed is None:
            removed = (self.rule != 0) & (self.rule != NOT_CANDIDATE)
            self._removed = _by_row(np.nonzero(removed), len(self))
        return self._removed

    @property
    def probability(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self)), self.chosen]

    def deferred_rows(self) -> np.ndarray:
        """(n,) bool: deferred activation."""
        if self.deferred is None:
            return np.zeros(len(self), dtype=bool)
        return self.deferred

    def activation(self) -> np.ndarray:
        """(n,) int8: the activation each row is logged with (pending: deferred contacts)."""
        pending = self.deferred_rows() & (self.chosen != 0)
        return np.where(pending, ACTIVATION_PENDING, ACTIVATION_ACTIVE).astype(np.int8)

    @staticmethod
    def merge(parts: list[tuple[np.ndarray, DecisionBatch]], n: int) -> DecisionBatch:
        """One batch of n rows from parts that hold the rows at the given positions."""
        first = parts[0][1]

        def place(get: Any) -> np.ndarray:
            template = get(first)
            out = np.empty((n, *template.shape[1:]), dtype=template.dtype)
            for rows, part in parts:
                out[rows] = get(part)
            return out

        def column(name: str) -> np.ndarray:
            return place(lambda p: getattr(p, name))

        def listed(get: Any) -> list[Any]:
            out: list[Any] = [None] * n
            for rows, part in parts:
                for i, value in zip(rows.tolist(), get(part), strict=True):
                    out[i] = value
            return out

        has_extra_num = any(p.features.extra_numeric is not None for _, p in parts)
        has_extra_cat = any(p.features.extra_categorical is not None for _, p in parts)
        features = FeatureBatch(
            numeric=place(lambda p: p.features.numeric),
            categorical=place(lambda p: p.features.categorical),
            extra_numeric=listed(lambda p: p.features.extra_numeric or [{}] * len(p))
            if has_extra_num
            else None,
            extra_categorical=listed(lambda p: p.features.extra_categorical or [{}] * len(p))
            if has_extra_cat
            else None,
        )
        has_requests = any(p.request_ids is not None for _, p in parts)
        has_deferred = any(p.deferred is not None for _, p in parts)
        merged = DecisionBatch(
            customer_ids=listed(lambda p: p.customer_ids),
            times=column("times"),
            arm=column("arm"),
            model_version=listed(lambda p: p.model_version),
            features=features,
            rule=column("rule"),
            probabilities=column("probabilities"),
            chosen=column("chosen"),
            window_end=column("window_end"),
            request_ids=listed(lambda p: p.request_ids or [""] * len(p)) if has_requests else None,
            fingerprints=listed(lambda p: p.fingerprints or [""] * len(p))
            if has_requests
            else None,
            deferred=place(lambda p: p.deferred_rows()) if has_deferred else None,
            id_prefix=first.id_prefix,
        )
        if all(p.seq is not None for _, p in parts):
            merged.seq = column("seq")
        return merged


@dataclass
class ClosedDecisions:
    """Decisions whose reward is fixed, in close order: what a policy learns from."""

    seq: np.ndarray  # (n,) the decisions' seq in the log
    close_seq: np.ndarray  # (n,) int64
    arm: list[str]
    features: FeatureBatch
    allowed: np.ndarray  # (n, A) bool
    chosen: np.ndarray  # (n,) int64
    probability: np.ndarray  # (n,) float64
    reward: np.ndarray  # (n,) float64
    usable: np.ndarray | None = None  # (n,) bool: decoded intact; None = every row

    def __len__(self) -> int:
        return len(self.chosen)

    def rows(self, index: np.ndarray) -> ClosedDecisions:
        return ClosedDecisions(
            seq=self.seq[index],
            close_seq=self.close_seq[index],
            arm=[self.arm[i] for i in index],
            features=self.features.rows(index),
            allowed=self.allowed[index],
            chosen=self.chosen[index],
            probability=self.probability[index],
            reward=self.reward[index],
            usable=None if self.usable is None else self.usable[index],
        )

    def learnable(self) -> np.ndarray:
        """(n,) bool: rows a policy can learn from (intact, finite, a valid probability, the
        chosen action eligible)."""
        n = len(self)
        ok = np.ones(n, dtype=bool) if self.usable is None else self.usable.copy()
        ok &= np.isfinite(self.reward) & np.isfinite(self.probability)
        ok &= (self.probability > 0) & (self.probability <= 1)
        ok &= np.isfinite(self.features.numeric).all(axis=1)
        if n:
            ok &= self.allowed[np.arange(n), self.chosen]
        if self.features.extra_numeric is not None:
            ok &= np.array(
                [all(np.isfinite(list(x.values()))) for x in self.features.extra_numeric],
                dtype=bool,
            )
        return ok


@dataclass(frozen=True)
class DecisionRecord:
    """One logged decision with the state of its reward (for GetDecision and audits)."""

    decision_id: str
    seq: int
    customer_id: str
    time: int
    experiment: str
    arm: str
    policy: str
    model_version: str
    features: dict[str, float | str]
    eligible: tuple[str, ...]  # action keys
    probabilities: tuple[float, ...]
    removed: tuple[tuple[str, int], ...]  # (action key, rule)
    action: str
    probability: float
    cost: float
    window_end: int
    status: int
    attributed_value: float
    attributed_purchases: int
    unsubscribes: int
    reward: float | None
    close_seq: int | None
    closed_time: int | None
    unlearned: str | None = None  # why a learning arm could not learn from it
    request_id: str = ""
    deferred: bool = False
    activation: int = ACTIVATION_ACTIVE
    delivered_time: int | None = None
    opened_time: int | None = None
    clicked_time: int | None = None
    not_executed_time: int | None = None
    reported_values: int = 0  # values reported with ReportOutcome (in attributed_value)
    reported_value: float = 0.0
