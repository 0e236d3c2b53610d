"""The contextual bandit policy: VW `cb_explore_adf`, learning online from closed rewards."""

from __future__ import annotations

import numpy as np

from engine.catalog import Catalog
from engine.config import BanditConfig
from engine.decisions import ClosedDecisions
from engine.errors import PartialUpdate
from engine.features import FeatureBatch
from engine.policy.vw import VWModel
from engine.state import CustomerStates


class BanditPolicy:
    """Exploring policy over the eligible actions; its version is ``<model>+<online updates>``.

    `label` names the model it started from ("init" for a fresh one, else the fingerprint of the
    loaded bytes), so a logged version pins the exact weights that decided.
    """

    kind = "bandit"

    def __init__(
        self,
        config: BanditConfig,
        catalog: Catalog,
        model_data: bytes | None = None,
        label: str | None = None,
        updates: int = 0,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.model = VWModel(config, catalog, model_data)
        self.label = label or ("init" if model_data is None else self.model.fingerprint)
        self.updates = updates

    @property
    def version(self) -> str:
        return f"{self.label}+{self.updates}"

    @property
    def learns(self) -> bool:
        return True

    def probabilities(
        self, features: FeatureBatch, states: CustomerStates, allowed: np.ndarray
    ) -> np.ndarray:
        return self.model.predict(features, allowed)

    def learn(self, closed: ClosedDecisions) -> int:
        """One update per row, in order; on a failure the rows before it stay learned and
        count (PartialUpdate says how many), so the version never claims more or less."""
        try:
            applied = self.model.learn(
                closed.features, closed.allowed, closed.chosen, closed.probability, closed.reward
            )
        except PartialUpdate as failure:
            self.updates += failure.applied
            raise
        self.updates += applied
        return applied

    def serialize(self) -> bytes:
        return self.model.serialize()

    def swap(self, model_data: bytes, label: str | None = None) -> None:
        """Replace the model; builds the new one first, so a bad model leaves the old serving."""
        model = VWModel(self.config, self.catalog, model_data)
        self.model = model
        self.label = label or model.fingerprint
        self.updates = 0
