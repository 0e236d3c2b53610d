"""Experiments: arms with traffic shares; a customer's arm is a stable hash of id and salt."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.hashing import bucket_units

POLICY_KINDS = ("bandit", "chain", "random", "none")


@dataclass(frozen=True)
class Arm:
    name: str
    policy: str  # one of POLICY_KINDS (the simulator adds "oracle")
    share: float


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: tuple[Arm, ...]

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("an experiment needs at least one arm")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"arm shares sum to {total:g}, not 1")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def assign(self, customer_keys: np.ndarray) -> np.ndarray:
        """Arm index per customer (stable for a customer as long as salt and shares stay)."""
        if len(self.arms) == 1:
            return np.zeros(len(customer_keys), dtype=np.int64)
        edges = np.cumsum([a.share for a in self.arms])[:-1]
        return np.searchsorted(edges, bucket_units(customer_keys, self.salt), side="right")

    @classmethod
    def single(cls, policy: str, name: str = "") -> Experiment:
        return cls(name=name or policy, salt=name or policy, arms=(Arm(policy, policy, 1.0),))
