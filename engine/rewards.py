"""Rewards of decisions: attribution window, default reward when nothing happened.

A purchase at time t is attributed to every open decision of the customer whose window
[decision time, decision time + window) contains t; the reward of a decision is

    reward = margin_rate * attributed value      (no_outcome_reward if nothing was attributed)
             - cost of the action
             - unsubscribe_penalty * unsubscribes from the action's channel inside the window

Each decision asks "what is the next `window` worth if I do this now?", the question a
contextual bandit with delayed feedback can learn. A decision closes when event time (the
watermark: the latest time any request or event carried) passes its window end plus the allowed
lateness of events; an explicitly reported reward closes it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.timeutil import DAY


@dataclass(frozen=True)
class RewardRule:
    window_days: float = 10.0
    lateness_hours: float = 24.0
    margin_rate: float = 0.3
    no_outcome_reward: float = 0.0
    unsubscribe_penalty: float = 2.0

    @property
    def window_seconds(self) -> int:
        return round(self.window_days * DAY)

    @property
    def lateness_seconds(self) -> int:
        return round(self.lateness_hours * 3600)

    def rewards(
        self,
        attributed_value: np.ndarray,
        attributed_count: np.ndarray,
        cost: np.ndarray,
        unsubscribes: np.ndarray,
    ) -> np.ndarray:
        value_term = np.where(
            attributed_count > 0, self.margin_rate * attributed_value, self.no_outcome_reward
        )
        return value_term - cost - self.unsubscribe_penalty * unsubscribes
