"""The oracle: a policy that knows the world and picks the eligible action of highest true value.

It plugs into the engine like any policy (the contact rules still apply) but reads the world's
hidden state, so it runs in-process only. It is the yardstick for regret, not a deployable policy.
"""

from __future__ import annotations

import numpy as np

from engine.decisions import ClosedDecisions
from engine.features import FeatureBatch
from engine.policy.base import StaticPolicy
from engine.state import CustomerStates
from simulator.values import action_values
from simulator.world import World


class OraclePolicy(StaticPolicy):
    kind = "oracle"

    def __init__(self, world: World, index_of: dict[str, int]) -> None:
        self.world = world
        self.index_of = index_of
        self.day = 0

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        idx = np.array([self.index_of[c] for c in states.customer_ids], dtype=np.int64)
        values = np.where(allowed, action_values(self.world, idx, self.day), -np.inf)
        probs = np.zeros(allowed.shape)
        probs[np.arange(len(idx)), values.argmax(axis=1)] = 1.0
        return probs

    def learn(self, closed: ClosedDecisions) -> int:
        return 0
