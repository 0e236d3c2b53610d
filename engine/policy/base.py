"""The policy protocol: probabilities over the eligible actions of a batch; learn from rewards."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from engine.decisions import ClosedDecisions
from engine.features import FeatureBatch
from engine.state import CustomerStates


@runtime_checkable
class Policy(Protocol):
    """A decision policy.

    `probabilities` returns an (n, A) matrix whose rows sum to 1 and are 0 wherever `allowed` is
    False (column 0, "no contact", is always allowed). Policies do not sample: the engine draws
    the action, so every decision is reproducible from the seed.
    """

    kind: str

    @property
    def version(self) -> str: ...

    @property
    def learns(self) -> bool: ...

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray: ...

    def learn(self, closed: ClosedDecisions) -> int:
        """Learn from closed decisions (in order); returns the number of updates applied.

        On a failure, raise `engine.errors.PartialUpdate(k)` when rows 0..k-1 were applied;
        any other exception means that nothing was applied. The engine replays the rest."""
        ...


class StaticPolicy:
    """Base for policies that do not learn."""

    kind = "static"

    @property
    def version(self) -> str:
        return self.kind

    @property
    def learns(self) -> bool:
        return False

    def learn(self, closed: ClosedDecisions) -> int:
        return 0
