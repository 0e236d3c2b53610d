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

from collections.abc import Iterable, Iterator
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
        rewards = value_term - cost - self.unsubscribe_penalty * unsubscribes
        # Bounded inputs keep every reward finite; a row written before the bounds existed
        # might not. Such a reward is stored as missing (NULL) and never learned.
        return np.where(np.isfinite(rewards), rewards, np.nan)


def earlier_attribution(
    matches: Iterable[tuple[int, int, float, bool]],
) -> Iterator[tuple[int, float, int, int]]:
    """Sum events that arrived before their decision into (seq, value, purchases, unsubscribes).

    `matches` holds (decision seq, event type, value, same channel) in (seq, arrival) order, for
    purchases (type 1) and unsubscribes (type 5) inside the decision's window. Both stores call
    this, so their float sums agree to the last bit.
    """
    current: list[float | int] | None = None
    for seq, kind, value, same_channel in matches:
        if current is None or current[0] != seq:
            if current is not None:
                yield int(current[0]), float(current[1]), int(current[2]), int(current[3])
            current = [seq, 0.0, 0, 0]
        if kind == 1:
            current[1] += value
            current[2] += 1
        elif same_channel:
            current[3] += 1
    if current is not None:
        yield int(current[0]), float(current[1]), int(current[2]), int(current[3])
