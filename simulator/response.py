"""How customers respond: touch relevance, the lift a touch gives, fatigue, opt-outs, the bond.

Pure functions of the scenario over arrays, shared by the world's step (what happens) and the
true action values (what is expected to happen), so the oracle and the world never disagree.

A touch of channel c with relevance r on a customer with fatigue F adds
``peak_uplift_c * r * affinity * exp(-damping F)`` to her lift on channel c (after the channel's
delay); lifts decay daily by ``daily_decay_c`` and multiply the purchase hazard by
``1 + sum of lifts``. The hazard is ``(rate * bond multiplier + burst(t)) * (1 + lift)``.
"""

from __future__ import annotations

import numpy as np

from simulator.scenario import Scenario


class ResponseModel:
    def __init__(self, scenario: Scenario) -> None:
        catalog = scenario.catalog
        channels = [scenario.channels[c.name] for c in catalog.channels]
        touchpoints = [scenario.touchpoints[t.name] for t in catalog.touchpoints]
        self.scenario = scenario
        self.peak = np.array([c.peak_uplift for c in channels])
        self.decay = np.array([c.daily_decay for c in channels])
        self.delay = np.array([c.delay_days for c in channels], dtype=np.int64)
        self.fatigue_weight = np.array([c.fatigue_weight for c in channels])
        self.optout = np.array([c.optout_per_touch for c in channels])
        self.base = np.array([t.relevance for t in touchpoints])
        self.early = np.array(
            [t.relevance if t.early_relevance is None else t.early_relevance for t in touchpoints]
        )
        self.early_days = np.array(
            [t.early_days if t.early_relevance is not None else -1 for t in touchpoints]
        )
        self.lapsed = np.array(
            [t.relevance if t.lapsed_relevance is None else t.lapsed_relevance for t in touchpoints]
        )
        self.lapsed_days = np.array(
            [
                t.lapsed_days if t.lapsed_relevance is not None else np.iinfo(np.int64).max
                for t in touchpoints
            ]
        )
        self.bond_boost = np.array([t.bond_boost for t in touchpoints])
        self.segment_factor = np.array(
            [[s.response.get(t.name, 1.0) for t in catalog.touchpoints] for s in scenario.segments]
        )
        self.action_channel = catalog.action_channel
        self.action_touchpoint = catalog.action_touchpoint
        self.action_cost = catalog.action_cost
        f = scenario.fatigue
        self.fatigue_decay = np.exp(-1.0 / f.decay_days)
        b = scenario.bond
        self.bond_decay = np.exp(-1.0 / b.decay_days)
        self._rate_norm = 1.0 + b.rate_gain * b.initial
        self._drop_norm = 1.0 + b.dropout_gain * b.initial
        burst = scenario.burst
        self.burst_shape = np.r_[0.0, np.exp(-np.arange(burst.days) / burst.tau)]  # index = day t

    def relevance(
        self,
        touchpoint: np.ndarray,
        segment: np.ndarray,
        days_since_first: np.ndarray,
        days_since_purchase: np.ndarray,
    ) -> np.ndarray:
        rel = np.where(
            days_since_first <= self.early_days[touchpoint],
            self.early[touchpoint],
            self.base[touchpoint],
        )
        rel = np.where(
            days_since_purchase >= self.lapsed_days[touchpoint], self.lapsed[touchpoint], rel
        )
        return rel * self.segment_factor[segment, touchpoint]

    def lift(
        self, channel: np.ndarray, relevance: np.ndarray, affinity: np.ndarray, fatigue: np.ndarray
    ) -> np.ndarray:
        damping = self.scenario.fatigue.uplift_damping
        return self.peak[channel] * relevance * affinity * np.exp(-damping * fatigue)

    def optout_probability(
        self, channel: np.ndarray, relevance: np.ndarray, fatigue: np.ndarray
    ) -> np.ndarray:
        gain = self.scenario.fatigue.optout_gain
        return np.minimum(
            self.optout[channel]
            * (1.0 + gain * fatigue)
            * np.clip(1.5 - 0.5 * relevance, 0.5, 1.5),
            1.0,
        )

    def rate_multiplier(self, bond: np.ndarray) -> np.ndarray:
        return (1.0 + self.scenario.bond.rate_gain * bond) / self._rate_norm

    def dropout_multiplier(self, bond: np.ndarray, fatigue: np.ndarray) -> np.ndarray:
        f = self.scenario.fatigue
        annoyance = 1.0 + f.annoyance_dropout * np.maximum(fatigue - f.annoyance_threshold, 0.0)
        return self._drop_norm / (1.0 + self.scenario.bond.dropout_gain * bond) * annoyance

    def burst(self, days_since_first: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        inside = (days_since_first >= 1) & (days_since_first < len(self.burst_shape))
        shape = self.burst_shape[np.where(inside, days_since_first, 0)]
        return kappa * shape

    def eroded_bond(self, bond: np.ndarray, fatigue: np.ndarray) -> np.ndarray:
        f = self.scenario.fatigue
        excess = np.maximum(fatigue - f.annoyance_threshold, 0.0)
        return bond * np.maximum(1.0 - f.bond_erosion * excess, 0.0)
