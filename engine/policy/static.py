"""Policies that do not learn: the fixed contact chain, uniform random, and no contact at all."""

from __future__ import annotations

import numpy as np

from engine.catalog import Catalog
from engine.features import FeatureBatch
from engine.policy.base import StaticPolicy
from engine.state import CustomerStates


class ChainPolicy(StaticPolicy):
    """The fixed contact chain: on a step's day the step's touchpoint over its first eligible
    channel, otherwise no contact. Deterministic: the chosen action has probability 1.

    >>> from engine.catalog import load_catalog
    >>> chain = ChainPolicy(load_catalog())
    >>> chain.scheduled(np.array([0, 1, 2]))[:, 0] > 0
    array([ True,  True, False])
    """

    kind = "chain"

    def __init__(self, catalog: Catalog) -> None:
        steps = catalog.chain_actions()
        width = max((len(v) for v in steps.values()), default=1)
        last_day = max(steps, default=0)
        self._table = np.full((last_day + 2, width), -1, dtype=np.int64)  # last row: nothing due
        for day, actions in steps.items():
            self._table[day, : len(actions)] = actions

    def scheduled(self, days: np.ndarray) -> np.ndarray:
        """(n, width) actions due on each day (preference order; -1 = none)."""
        rows = np.where((days >= 0) & (days < len(self._table) - 1), days, len(self._table) - 1)
        return self._table[rows]

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        n = len(states)
        due = self.scheduled(states.days_since_first_purchase())
        ok = (due >= 0) & allowed[np.arange(n)[:, None], np.maximum(due, 0)]
        first = ok.argmax(axis=1)
        chosen = np.where(ok.any(axis=1), due[np.arange(n), first], 0)
        probs = np.zeros(allowed.shape)
        probs[np.arange(n), chosen] = 1.0
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
