"""The decision core: requests -> customer state -> eligible actions -> arm's policy -> logged
decisions; events and outcomes -> rewards -> online learning, exactly once.

Everything works on columnar batches: a unary call is a batch of one, a stream message a batch of
many, and the in-process simulator hands over a whole day at a time. One lock serialises calls
(the VW binding holds the GIL anyway), so the store and the models see one caller at a time.

Exactly-once learning: closing a decision assigns it a ``close_seq`` in the same transaction
that fixes its reward; a checkpoint stores a model together with the last close_seq it has
learned. On start, each learning arm loads its newest checkpoint and replays the decisions closed
after it, so a killed process neither loses nor repeats an update. Updates are applied row by
row and the last row applied is recorded: when the learner fails inside a batch, the rows before
the failure count as learned and the rest is replayed later, never twice. A row that cannot be
learned (damaged, or failing MAX_ATTEMPTS times) is recorded as unlearned and skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.config import EngineConfig
from engine.contact import ContactPolicy
from engine.decisions import (
    ACTIVATION_ACTIVE,
    ClosedDecisions,
    DecisionBatch,
    DecisionRecord,
    occurrence_rounds,
)
from engine.errors import AnstossError, Conflict, ModelError, PartialUpdate, UnknownDecision, shown
from engine.features import build_features
from engine.hashing import decision_draws, string_keys
from engine.lifecycle import LifecycleDays
from engine.policy import BanditPolicy, Policy, make_policy
from engine.requests import DecideBatch, EventBatch, EventResult, Outcome
from engine.store.base import Checkpoint, LogContext, OutcomeApplied, Store

log = logging.getLogger("anstoss.engine")
MAX_ATTEMPTS = 3  # a closed decision whose update fails this often is recorded as unlearned
REPLAY_BUDGETS = 5  # an arm behind replays at most this many close budgets of rows per call


@dataclass
class Decided:
    """The answer to a batch of decide requests, by request row: new decisions (logged now, in
    the order of `fresh`), decisions logged before for the same request id, refused rows."""

    decisions: DecisionBatch | None  # None when no row needed a new decision
    fresh: list[int]
    replayed: dict[int, DecisionRecord]
    refused: dict[int, AnstossError]


class PolicyError(AnstossError):
    """A policy returned probabilities outside the eligible actions or not summing to 1."""


class DecisionEngine:
    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        policies: Mapping[str, Policy] | None = None,
        close_budget: int | None = None,
    ) -> None:
        """`close_budget`: at most this many due decisions are closed per call (the server's
        `learning.closes_per_call`; `catch_up` closes the rest); None closes all at once."""
        self.config = config
        self.close_budget = close_budget or None
        self.catalog = config.catalog
        self.store = store
        self.experiment = config.experiment
        self.contact = ContactPolicy(self.catalog)
        self.lifecycle = LifecycleDays(config.time.zone, config.time.lifecycle_days)
        overrides = dict(policies or {})
        self.policies: list[Policy] = [
            overrides.pop(arm.name)
            if arm.name in overrides
            else make_policy(arm.policy, self.catalog, config.bandit)
            for arm in self.experiment.arms
        ]
        if overrides:
            raise ValueError(f"policies given for unknown arms: {sorted(overrides)}")
        self._log_context = LogContext(
            experiment=self.experiment.name,
            arm_names=self.experiment.names,
            arm_policies=tuple(p.kind for p in self.policies),
        )
        self._lock = threading.RLock()
        self._learned_seq = {arm: 0 for arm in self.experiment.names}
        self._since_checkpoint = {arm: 0 for arm in self.experiment.names}
        self._behind: set[str] = set()  # arms whose last online update failed
        self._failures: dict[tuple[str, int], int] = {}  # (arm, close_seq) -> failed updates
        self._learners = frozenset(
            arm for arm, p in zip(self.experiment.names, self.policies, strict=True) if p.learns
        )
        self.updates = 0
        self._restore()

    # -- deciding ---------------------------------------------------------------------------

    def decide(self, batch: DecideBatch) -> DecisionBatch:
        """Decide for every request of the batch; the decisions are logged when this returns.
        Requests with a request id a decision was logged for are answered by `decide_requests`
        only (this raises ValueError for them)."""
        decided = self.decide_requests(batch)
        if decided.replayed or decided.refused or decided.decisions is None:
            raise ValueError("requests repeat request ids: use decide_requests")
        return decided.decisions

    def decide_requests(self, batch: DecideBatch) -> Decided:
        """Decide, with idempotency: a request whose (customer, request id) was decided before
        (also earlier in the batch) gets that decision back and logs nothing; the same key
        with a different time, candidates or deferral is refused (Conflict)."""
        with self._lock:
            request_ids = batch.request_ids
            if not request_ids or not any(request_ids):
                return Decided(self._decide_all(batch), list(range(len(batch))), {}, {})
            fingerprints = batch.fingerprints()
            keyed = [i for i, r in enumerate(request_ids) if r]
            logged = self.store.find_requests(
                [batch.customer_ids[i] for i in keyed], [request_ids[i] for i in keyed]
            )
            fresh: list[int] = []
            earlier: dict[tuple[str, str], int] = {}
            again: dict[int, str | int] = {}  # row -> logged decision id, or earlier row
            refused: dict[int, AnstossError] = {}
            for i, request_id in enumerate(request_ids):
                if not request_id:
                    fresh.append(i)
                    continue
                key = (batch.customer_ids[i], request_id)
                previous: str | int
                if key in logged:
                    decision_id, fingerprint = logged[key]
                    same, previous = fingerprint == fingerprints[i], decision_id
                elif key in earlier:
                    j = earlier[key]
                    same, previous = fingerprints[j] == fingerprints[i], j
                else:
                    earlier[key] = i
                    fresh.append(i)
                    continue
                if same:
                    again[i] = previous
                else:
                    refused[i] = Conflict(
                        "request_id",
                        f"{shown(request_id)} was used for another request of this customer"
                        " (a different time, candidates or defer_activation); nothing was decided",
                    )
            decisions = self._decide_all(batch.take(np.array(fresh))) if fresh else None
            replayed: dict[int, DecisionRecord] = {}
            for i, earlier_row in again.items():
                if isinstance(earlier_row, int):
                    assert decisions is not None and decisions.decision_ids is not None
                    decision_id = decisions.decision_ids[fresh.index(earlier_row)]
                else:
                    decision_id = earlier_row
                record = self.store.get_decision(decision_id)
                if record is None:  # cannot happen: the store handed out the id
                    raise UnknownDecision(decision_id)
                replayed[i] = record
            return Decided(decisions, fresh, replayed, refused)

    def _decide_all(self, batch: DecideBatch) -> DecisionBatch:
        with self._lock:
            n = len(batch)
            if n:
                self._advance(int(batch.times.max()))
            keys = string_keys(batch.customer_ids)
            if len(np.unique(keys)) == n:
                return self._decide_once(batch, keys)
            # A customer asked about twice in one batch (e.g. two concurrent calls): decide in
            # rounds, each customer once per round, each round logged before the next loads
            # her state, so caps and gaps see the earlier decision; all rounds commit together.
            with self.store.atomic():
                parts = [
                    (rows, self._decide_once(batch.take(rows), keys[rows]))
                    for rows in occurrence_rounds(keys)
                ]
            return DecisionBatch.merge(parts, n)

    def _decide_once(self, batch: DecideBatch, keys: np.ndarray) -> DecisionBatch:
        """Decide a batch in which every customer appears once."""
        n = len(batch)
        states = self.store.load_states(batch.customer_ids, batch.times)
        states.count_days(self.lifecycle)  # one lifecycle day for rules, features and policies
        features = build_features(states, batch, self.catalog.occasion_lead_days)
        eligibility = self.contact.evaluate(states, batch.days_to_occasion, batch.candidates)
        allowed = eligibility.allowed
        arm = self.experiment.assign(keys)
        probabilities = np.zeros(allowed.shape)
        for a, policy in enumerate(self.policies):
            rows = np.flatnonzero(arm == a)
            if len(rows) == n:  # the whole batch (one arm): no copies
                probabilities = policy.probabilities(features, states, allowed)
            elif len(rows):
                probabilities[rows] = policy.probabilities(
                    features.rows(rows), states.rows(rows), allowed[rows]
                )
        arm_versions = [p.version for p in self.policies]
        versions = [arm_versions[a] for a in arm.tolist()]
        _check_probabilities(probabilities, allowed)
        chosen = _sample(probabilities, decision_draws(keys, batch.times, self.config.seed))
        decisions = DecisionBatch(
            customer_ids=batch.customer_ids,
            times=batch.times,
            arm=arm,
            model_version=versions,
            features=features,
            rule=eligibility.rule,
            probabilities=probabilities,
            chosen=chosen,
            window_end=batch.times + self.config.rewards.window_seconds,
            request_ids=batch.request_ids,
            fingerprints=batch.fingerprints() if batch.request_ids is not None else None,
            deferred=batch.defer,
        )
        self.store.log_decisions(decisions, self._log_context)
        return decisions

    # -- events, outcomes, learning ---------------------------------------------------------

    def report_events(self, events: EventBatch) -> list[EventResult | AnstossError]:
        """Apply events in order (idempotent per event id), then let event time advance."""
        with self._lock:
            results = self.store.apply_events(events, self.config.rewards)
            if len(events):
                self._advance_after_commit(int(events.times.max()))
            return results

    def report_outcome(self, outcome: Outcome) -> OutcomeApplied:
        with self._lock:
            applied = self.store.apply_outcome(outcome, self.config.rewards)
            if applied.closed is not None:
                self._learn(applied.closed)
            self._advance_after_commit(outcome.time)
            return applied

    def advance(self, time: int) -> int:
        """Let event time reach `time`: close due windows and learn; returns updates applied."""
        with self._lock:
            return self._advance(time)

    def _advance(self, time: int) -> int:
        # Always asked, even when time did not move: a decision logged at a time far behind
        # event time (a backfill) may be due already. The store answers from memory when
        # nothing is due.
        closed = self.store.close_due(time, self.config.rewards, self._learners, self.close_budget)
        return self._learn(closed) if len(closed) else 0

    def _advance_after_commit(self, time: int) -> None:
        """Advance once the call's own writes are committed: a failure to close windows now
        (a full disk, say) must not fail the call, or a client would send its events again.
        What is due stays due; the next call or the background closes it."""
        try:
            self._advance(time)
        except Exception as exc:
            log.warning("closing due decisions failed, left for later: %s", exc)

    @property
    def backlog(self) -> bool:
        """Due decisions wait to be closed (more than one call's budget came due at once)."""
        with self._lock:
            return self.store.has_due(self.config.rewards)

    def catch_up_step(self) -> bool:
        """Close one budget of due decisions, or replay one chunk for an arm behind; True
        when there was something to do."""
        with self._lock:
            if self.store.has_due(self.config.rewards):
                self._advance(self.store.watermark)
                return True
            behind = [a for a, name in enumerate(self.experiment.names) if name in self._behind]
            for a in behind:
                self._replay(a)
            return bool(behind)

    def _learn(self, closed: ClosedDecisions) -> int:
        """Learn closed rewards per arm; returns the updates applied. An arm whose learning
        fails (the learner, or saving its checkpoint) is left behind and replays everything
        closed since the last row it learned with its next learning; the other arms learn
        on, and the call that closed the rows still succeeds (they are committed)."""
        before = self.updates
        arms = np.array(closed.arm, dtype=object)
        for a, (name, policy) in enumerate(zip(self.experiment.names, self.policies, strict=True)):
            rows = np.flatnonzero(arms == name)
            if len(rows) == 0:
                continue
            if not policy.learns:
                latest = int(closed.close_seq[rows].max())
                self._learned_seq[name] = max(self._learned_seq[name], latest)
                continue
            if name in self._behind:
                self._replay(a)  # from the last row it learned: these rows are among them
            else:
                self._learn_safely(a, closed.rows(rows) if len(rows) < len(closed) else closed)
        return self.updates - before

    def _learn_safely(self, a: int, batch: ClosedDecisions) -> None:
        name = self.experiment.names[a]
        try:
            self._learn_arm(a, batch)
        except Exception:
            self._behind.add(name)
            log.exception("arm %s: learning failed; it is replayed with the next one", name)

    def _replay(self, a: int) -> None:
        """Learn what an arm that fell behind has not learned yet, at most a few budgets of
        rows per call when the engine has a close budget (it stays behind until done)."""
        name = self.experiment.names[a]
        limit = None if self.close_budget is None else REPLAY_BUDGETS * self.close_budget
        try:
            batch = self.store.closed_since(name, self._learned_seq[name], limit)
        except Exception:
            log.exception("arm %s: reading what to replay failed; tried again later", name)
            return
        self._learn_safely(a, batch)
        if limit is not None and len(batch) == limit:
            self._behind.add(name)

    def _learn_arm(self, a: int, batch: ClosedDecisions) -> int:
        """Learn one arm's closed decisions (in close order); returns the updates applied
        (also counted in `updates`)."""
        name, policy = self.experiment.names[a], self.policies[a]
        if len(batch) == 0:
            return 0
        batch = self._learnable(name, batch)
        applied = 0
        while len(batch):
            try:
                n = policy.learn(batch)
            except Exception as exc:  # the protocol: PartialUpdate, or nothing was applied
                failure = exc if isinstance(exc, PartialUpdate) else PartialUpdate(0, exc)
                applied += failure.applied
                self.updates += failure.applied
                failed = int(batch.close_seq[failure.applied])
                self._learned_seq[name] = max(self._learned_seq[name], failed - 1)
                attempts = self._failures.get((name, failed), 0) + 1
                self._failures[name, failed] = attempts
                log.error(
                    "arm %s: online update of close_seq %d failed (attempt %d of %d): %r",
                    name, failed, attempts, MAX_ATTEMPTS, failure.cause,
                )  # fmt: skip
                if attempts < MAX_ATTEMPTS:
                    self._behind.add(name)  # replayed from `failed` with the next learning
                    break
                self._behind.add(name)  # until the row is recorded
                self.store.mark_unlearned(name, [failed], f"update failed: {failure.cause!r}"[:200])
                self._failures.pop((name, failed), None)
                self._learned_seq[name] = failed
                batch = batch.rows(np.arange(failure.applied + 1, len(batch)))
                continue
            applied += n
            self.updates += n
            self._behind.discard(name)
            self._failures = {k: v for k, v in self._failures.items() if k[0] != name}
            self._learned_seq[name] = max(self._learned_seq[name], int(batch.close_seq.max()))
            break
        if not len(batch):
            self._behind.discard(name)
        self._since_checkpoint[name] += applied
        if self._since_checkpoint[name] >= self.config.checkpoint_every:
            self._checkpoint(a)
        return applied

    def _learnable(self, name: str, batch: ClosedDecisions) -> ClosedDecisions:
        """The rows a policy can learn from, rewards clipped to limits.max_abs_reward (what is
        logged stays as it was); the others are recorded as unlearned."""
        ok = batch.learnable()
        if not ok.all():
            bad = batch.close_seq[~ok].tolist()
            log.error("arm %s: %d closed decisions cannot be learned: %s", name, len(bad), bad[:10])
            self._behind.add(name)  # until they are recorded
            self.store.mark_unlearned(name, bad, "damaged or invalid row")
            self._behind.discard(name)
            latest = int(batch.close_seq.max())
            batch = batch.rows(np.flatnonzero(ok))
            if len(batch) == 0:
                self._learned_seq[name] = max(self._learned_seq[name], latest)
        bound = self.config.limits.max_abs_reward
        if len(batch) and np.abs(batch.reward).max() > bound:
            batch = dataclasses.replace(batch, reward=np.clip(batch.reward, -bound, bound))
        return batch

    # -- models -----------------------------------------------------------------------------

    def _restore(self) -> None:
        for a, (name, policy) in enumerate(zip(self.experiment.names, self.policies, strict=True)):
            if not isinstance(policy, BanditPolicy):
                continue
            after = 0
            checkpoint = self.store.load_checkpoint(name)
            if checkpoint is not None:
                try:
                    self.policies[a] = BanditPolicy(
                        self.config.bandit,
                        self.catalog,
                        checkpoint.model,
                        label=checkpoint.label,
                        updates=checkpoint.updates,
                    )
                    after = checkpoint.close_seq
                except ModelError:
                    log.exception("arm %s: checkpoint unusable; replaying from a fresh model", name)
            replay = self.store.closed_since(name, after)
            self._learned_seq[name] = after
            if len(replay):
                n = self._learn_arm(a, replay)
                log.info("arm %s: replayed %d updates after checkpoint %d", name, n, after)

    def _checkpoint(self, arm_index: int) -> None:
        name = self.experiment.names[arm_index]
        policy = self.policies[arm_index]
        if not isinstance(policy, BanditPolicy):
            return
        self.store.save_checkpoint(
            Checkpoint(
                name, policy.label, policy.updates, self._learned_seq[name], policy.serialize()
            )
        )
        self._since_checkpoint[name] = 0

    def checkpoint(self) -> None:
        """Checkpoint every learning arm now (e.g. at shutdown)."""
        with self._lock:
            for a in range(len(self.policies)):
                self._checkpoint(a)

    def swap_model(self, arm: str, model_data: bytes, label: str | None = None) -> str:
        """Serve a new model on a bandit arm, atomically; returns its version.

        The new model is built before the old one is replaced, so a bad model raises ModelError
        and the old one keeps serving. Decisions closed before the swap are not replayed into it.
        """
        with self._lock:
            a = self._arm_index(arm)
            policy = self.policies[a]
            if not isinstance(policy, BanditPolicy):
                raise ModelError(f"arm {arm!r} runs policy {policy.kind!r}, not a bandit")
            policy.swap(model_data, label)
            # The checkpoint records the arm's last closed decision, so a restart replays only
            # what closes after the swap into the new model.
            self._checkpoint(a)
            return policy.version

    def _arm_index(self, arm: str) -> int:
        try:
            return self.experiment.names.index(arm)
        except ValueError:
            raise ModelError(
                f"no arm named {arm!r} (arms: {', '.join(self.experiment.names)})"
            ) from None

    # -- reading ----------------------------------------------------------------------------

    def get_decision(self, decision_id: str) -> tuple[DecisionRecord | None, bool]:
        """The logged decision and whether its policy has learned from its reward."""
        with self._lock:
            record = self.store.get_decision(decision_id)
            if record is None or record.close_seq is None:
                return record, False
            if record.arm not in self._learned_seq:
                return record, False
            policy = self.policies[self._arm_index(record.arm)]
            learned = (
                record.close_seq <= self._learned_seq[record.arm]
                and not record.unlearned
                and record.activation == ACTIVATION_ACTIVE  # not executed: never learned
            )
            return record, policy.learns and learned

    def model_versions(self) -> dict[str, str]:
        with self._lock:
            return {
                arm: p.version for arm, p in zip(self.experiment.names, self.policies, strict=True)
            }

    def close(self) -> None:
        with self._lock:
            self.checkpoint()
            self.store.close()


def _sample(probabilities: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling per row; never picks an action of probability 0."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    return np.argmax(cumulative > draws[:, None], axis=1).astype(np.int64)


def _check_probabilities(probabilities: np.ndarray, allowed: np.ndarray) -> None:
    """The consent and cap guarantees rest on this: no mass outside the eligible actions."""
    if len(probabilities) == 0:
        return
    outside = np.where(allowed, 0.0, probabilities).any()
    if outside or np.abs(probabilities.sum(axis=1) - 1.0).max() > 1e-9:
        raise PolicyError("policy returned probabilities outside the eligible actions")
