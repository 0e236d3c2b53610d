"""Policies that do not learn: the fixed contact chain, uniform random, and no contact at all."""

from __future__ import annotations

import numpy as np

from engine.catalog import Catalog
from engine.features import FeatureBatch
from engine.policy.base import StaticPolicy
from engine.state import CustomerStates


class ChainPolicy(StaticPolicy):
    """The fixed contact chain: each step's touchpoint over the first eligible of its channels,
    once. Deterministic: the chosen action has probability 1.

    A step is due from its lifecycle day through `Catalog.chain_catch_up_days` days later, so a
    customer first asked after a step's day, or asked on a day none of its channels was
    eligible, still gets it; the span ends early where the next step with the same touchpoint
    begins (the chain reuses touchpoints: a voucher on days 7, 30 and 90), so that step takes
    over. A step counts as fired once the customer got a contact with its touchpoint on a
    lifecycle day at or after the step's day, so it never fires twice. Of the steps due and not
    fired, the earliest with an eligible channel fires: one contact per decision.

    >>> from engine.catalog import load_catalog
    >>> ChainPolicy(load_catalog()).spans[:4]
    [('welcome', 0, 0), ('welcome', 1, 8), ('cross_sell', 3, 10), ('voucher', 7, 14)]
    """

    kind = "chain"

    def __init__(self, catalog: Catalog) -> None:
        steps = catalog.chain  # sorted by day
        self._day = np.array([s.day for s in steps], dtype=np.int64)
        self._touchpoint = np.array(
            [catalog.touchpoint_index[s.touchpoint] for s in steps], dtype=np.int64
        )
        last = self._day + catalog.chain_catch_up_days
        for i, step in enumerate(steps):
            following = [s.day for s in steps[i + 1 :] if s.touchpoint == step.touchpoint]
            if following:
                last[i] = min(last[i], following[0] - 1)
        self._last = last
        by_day = catalog.chain_actions()  # in channel preference
        width = max((len(s.channels) for s in steps), default=1)
        self._actions = np.zeros((len(steps), width), dtype=np.int64)  # 0 pads: never chosen
        for i, step in enumerate(steps):
            self._actions[i, : len(by_day[step.day])] = by_day[step.day]
        self.spans = [
            (s.touchpoint, int(first), int(until))
            for s, first, until in zip(steps, self._day, self._last, strict=True)
        ]

    def due(self, states: CustomerStates) -> np.ndarray:
        """(n, steps): the steps due and not fired yet at each row's decision."""
        day = states.lifecycle_day[:, None]
        fired = states.last_touchpoint_day[:, self._touchpoint] >= self._day
        return (day >= self._day) & (day <= self._last) & ~fired

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        n = len(states)
        rows = np.arange(n)
        probs = np.zeros(allowed.shape)
        if len(self._day) == 0:
            probs[:, 0] = 1.0
            return probs
        usable = allowed[:, self._actions] & (self._actions > 0)  # (n, steps, channels)
        ready = self.due(states) & usable.any(axis=2)
        step = ready.argmax(axis=1)  # the earliest step ready
        channel = usable[rows, step].argmax(axis=1)  # its first eligible channel
        chosen = np.where(ready[rows, step], self._actions[step, channel], 0)
        probs[rows, chosen] = 1.0
        return probs


class RandomPolicy(StaticPolicy):
    """Uniform over the eligible actions, "no contact" included."""

    kind = "random"

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        weights = allowed.astype(np.float64)
        return weights / weights.sum(axis=1, keepdims=True)


class NoContactPolicy(StaticPolicy):
    """Never contact: the control group that shows what customers do on their own."""

    kind = "none"

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        probs = np.zeros(allowed.shape)
        probs[:, 0] = 1.0
        return probs
