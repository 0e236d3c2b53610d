"""What the engine knows about a batch of customers at their decision times (struct of arrays).

Both stores produce this snapshot: the SQLite store from its rows, the memory store from its
arrays. Everything downstream (features, contact rules, policies) reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.lifecycle import LifecycleDays

# Per channel, two registers, each set by the latest event by time (the later to arrive on the
# same time): consent (granted / withdrawn, e.g. a CRM's consent sync) and subscription (an
# unsubscribe, undone only by an explicit re-subscription). A consent event never reopens a
# channel the customer unsubscribed from.
PERMISSION_NONE = 0  # nothing reported: the channel's default consent applies
PERMISSION_GRANTED = 1
PERMISSION_WITHDRAWN = 2

NO_TIME = -1  # "never" in time arrays

# EventType values: 5 unsubscribed, 6 consent granted, 7 consent withdrawn, 8 re-subscribed.
PERMISSION_OF_EVENT = {6: PERMISSION_GRANTED, 7: PERMISSION_WITHDRAWN, 8: PERMISSION_GRANTED}
UNSUBSCRIBED_OF_EVENT = {5: True, 8: False}


@dataclass
class CustomerStates:
    """Snapshot of n customers; time columns are epoch seconds, NO_TIME where there is none.

    The stores fill the columns up to `last_touchpoint_time`; the lifecycle days are counted
    from them by `count_days` (the engine does, with the configured zone and counting)."""

    customer_ids: list[str]
    times: np.ndarray  # (n,) decision time of each row
    known: np.ndarray  # (n,) bool: first purchase known
    first_purchase_time: np.ndarray  # (n,) int64
    first_order_value: np.ndarray  # (n,) float64
    purchases: np.ndarray  # (n,) int64, the first one included
    purchase_value: np.ndarray  # (n,) float64, all purchases
    last_purchase_time: np.ndarray  # (n,) int64
    permission: np.ndarray  # (n, C) int8, PERMISSION_* (consent)
    unsubscribed: np.ndarray  # (n, C) bool
    contacts_7d: np.ndarray  # (n, C) int64, contacts in (t - 7 days, t]
    contacts_30d: np.ndarray  # (n, C) int64, contacts in (t - 30 days, t]
    last_contact_time: np.ndarray  # (n, C) int64
    touchpoint_sent: np.ndarray  # (n, T) int64, contacts per touchpoint up to t (all time)
    last_touchpoint_time: np.ndarray  # (n, T) int64, latest contact per touchpoint up to t
    # Lifecycle days (engine/lifecycle.py; 0 is the first purchase's day), -1 where unknown:
    # of the decision time, and of each touchpoint's latest contact.
    lifecycle_day: np.ndarray  # (n,) int64
    last_touchpoint_day: np.ndarray  # (n, T) int64

    @classmethod
    def empty(
        cls, customer_ids: list[str], times: np.ndarray, n_channels: int, n_touchpoints: int
    ) -> CustomerStates:
        n = len(times)
        return cls(
            customer_ids=list(customer_ids),
            times=np.asarray(times, dtype=np.int64),
            known=np.zeros(n, dtype=bool),
            first_purchase_time=np.full(n, NO_TIME, dtype=np.int64),
            first_order_value=np.zeros(n),
            purchases=np.zeros(n, dtype=np.int64),
            purchase_value=np.zeros(n),
            last_purchase_time=np.full(n, NO_TIME, dtype=np.int64),
            permission=np.zeros((n, n_channels), dtype=np.int8),
            unsubscribed=np.zeros((n, n_channels), dtype=bool),
            contacts_7d=np.zeros((n, n_channels), dtype=np.int64),
            contacts_30d=np.zeros((n, n_channels), dtype=np.int64),
            last_contact_time=np.full((n, n_channels), NO_TIME, dtype=np.int64),
            touchpoint_sent=np.zeros((n, n_touchpoints), dtype=np.int64),
            last_touchpoint_time=np.full((n, n_touchpoints), NO_TIME, dtype=np.int64),
            lifecycle_day=np.full(n, -1, dtype=np.int64),
            last_touchpoint_day=np.full((n, n_touchpoints), -1, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.times)

    def count_days(self, days: LifecycleDays) -> None:
        """Count the lifecycle days from the first purchase the way `days` counts them.

        A moment before the first purchase (a decision logged before its customer's first
        purchase arrived) counts as day 0, so a contact it made has the decision's day."""
        moments = np.concatenate([self.times[:, None], self.last_touchpoint_time], axis=1)
        valid = self.known[:, None] & (moments != NO_TIME)
        counted = np.where(
            valid, np.maximum(days.days_after(self.first_purchase_time, moments), 0), -1
        )
        self.lifecycle_day = counted[:, 0]
        self.last_touchpoint_day = counted[:, 1:]

    def days_since_first_purchase(self) -> np.ndarray:
        """The lifecycle day of each decision (see `count_days`); -1 where no purchase is
        known, 0 for a decision before the first purchase."""
        return self.lifecycle_day

    def rows(self, index: np.ndarray) -> CustomerStates:
        picked = {k: v[index] for k, v in self.__dict__.items() if k != "customer_ids"}
        return CustomerStates(customer_ids=[self.customer_ids[i] for i in index], **picked)
