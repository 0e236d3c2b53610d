"""The contact policy: which actions may be used for a customer now, before any policy runs.

Hard rules first (consent, unsubscribes), then the catalog's rules (first shipment, lifecycle
window, occasion, touchpoint limit), then frequency (minimum gap per channel, caps per channel and
over all channels in 7 and 30 days). "No contact" is always eligible. Each removed action carries
the first rule, in that order, that removed it.

Every touchpoint is bound to the first purchase: its window counts lifecycle days from it (see
engine/lifecycle.py), so for a customer with no known first purchase no touchpoint is in its
window and only "no contact" remains.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from engine.catalog import Catalog
from engine.decisions import NOT_CANDIDATE
from engine.requests import NO_OCCASION
from engine.state import (
    NO_TIME,
    PERMISSION_GRANTED,
    PERMISSION_NONE,
    CustomerStates,
)
from engine.timeutil import DAY


class Rule(enum.IntEnum):
    """Why an action was removed; values equal the protobuf EligibilityRule numbers."""

    NONE = 0
    NO_CONSENT = 1
    UNSUBSCRIBED = 2
    FIRST_SHIPMENT_ONLY = 3
    LIFECYCLE_WINDOW = 4
    OCCASION_NOT_DUE = 5
    TOUCHPOINT_LIMIT = 6
    MIN_GAP = 7
    CHANNEL_CAP_7D = 8
    CHANNEL_CAP_30D = 9
    CAP_7D = 10
    CAP_30D = 11
    NOT_CANDIDATE = NOT_CANDIDATE  # the caller did not offer it; not reported as removed


@dataclass
class Eligibility:
    allowed: np.ndarray  # (n, A) bool; column 0 (no contact) always True
    rule: np.ndarray  # (n, A) uint8, Rule per action (NONE where allowed)


class ContactPolicy:
    """Vectorised contact rules over a batch of customer states."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        ch = catalog.channels
        tp = catalog.touchpoints
        self._default_consent = np.array([c.default_consent for c in ch])
        self._first_shipment = np.array([c.first_shipment_only for c in ch])
        self._min_gap = np.array([round(c.min_gap_days * DAY) for c in ch], dtype=np.int64)
        self._cap7 = np.array([c.max_per_7d for c in ch])
        self._cap30 = np.array([c.max_per_30d for c in ch])
        self._tp_limit = np.array([t.max_per_customer for t in tp])
        self._tp_min = np.array([t.min_day for t in tp])
        self._tp_max = np.array(
            [t.max_day if t.max_day >= 0 else np.iinfo(np.int64).max for t in tp]
        )
        self._tp_occasion = np.array([t.requires_occasion for t in tp])
        self._a_ch = catalog.action_channel[1:]
        self._a_tp = catalog.action_touchpoint[1:]

    def evaluate(
        self,
        states: CustomerStates,
        days_to_occasion: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> Eligibility:
        n = len(states)
        t = states.times[:, None]
        perm = states.permission
        days = states.days_since_first_purchase()[:, None]

        # Channel-level checks, (n, C).
        consent = (perm == PERMISSION_GRANTED) | (
            (perm == PERMISSION_NONE) & self._default_consent[None, :]
        )
        unsubscribed = states.unsubscribed
        shipment_ok = (days == 0) & (states.last_contact_time == NO_TIME)
        first_shipment_bad = self._first_shipment[None, :] & ~shipment_ok
        gap_bad = (states.last_contact_time != NO_TIME) & (
            t - states.last_contact_time < self._min_gap[None, :]
        )
        cap7_bad = (self._cap7 > 0)[None, :] & (states.contacts_7d >= self._cap7[None, :])
        cap30_bad = (self._cap30 > 0)[None, :] & (states.contacts_30d >= self._cap30[None, :])

        # Touchpoint-level checks, (n, T).
        known = states.known[:, None]
        in_window = known & (days >= self._tp_min[None, :]) & (days <= self._tp_max[None, :])
        window_bad = ~in_window
        if days_to_occasion is None:
            due = np.zeros((n, 1), dtype=bool)
        else:
            occ = days_to_occasion[:, None]
            due = (occ != NO_OCCASION) & (occ >= 0) & (occ <= self.catalog.occasion_lead_days)
        occasion_bad = self._tp_occasion[None, :] & ~due
        limit_bad = (self._tp_limit > 0)[None, :] & (
            states.touchpoint_sent >= self._tp_limit[None, :]
        )

        # Customer-level caps over all channels, (n, 1).
        cap = self.catalog
        all7_bad = (cap.max_per_7d > 0) & (
            states.contacts_7d.sum(axis=1, keepdims=True) >= cap.max_per_7d
        )
        all30_bad = (cap.max_per_30d > 0) & (
            states.contacts_30d.sum(axis=1, keepdims=True) >= cap.max_per_30d
        )

        ch, tp = self._a_ch, self._a_tp
        checks = (
            (Rule.UNSUBSCRIBED, unsubscribed[:, ch]),
            (Rule.NO_CONSENT, ~consent[:, ch]),
            (Rule.FIRST_SHIPMENT_ONLY, first_shipment_bad[:, ch]),
            (Rule.LIFECYCLE_WINDOW, window_bad[:, tp]),
            (Rule.OCCASION_NOT_DUE, occasion_bad[:, tp]),
            (Rule.TOUCHPOINT_LIMIT, limit_bad[:, tp]),
            (Rule.MIN_GAP, gap_bad[:, ch]),
            (Rule.CHANNEL_CAP_7D, cap7_bad[:, ch]),
            (Rule.CHANNEL_CAP_30D, cap30_bad[:, ch]),
            (Rule.CAP_7D, np.broadcast_to(all7_bad, (n, len(ch)))),
            (Rule.CAP_30D, np.broadcast_to(all30_bad, (n, len(ch)))),
        )
        rule = np.zeros((n, len(ch)), dtype=np.uint8)
        # Apply in reverse precedence so the first failing rule in the list wins.
        for code, bad in reversed(checks):
            rule[bad] = code
        if candidates is not None:
            rule[~candidates[:, 1:]] = Rule.NOT_CANDIDATE
        rule = np.concatenate([np.zeros((n, 1), dtype=np.uint8), rule], axis=1)
        return Eligibility(allowed=rule == Rule.NONE, rule=rule)

    def describe(self, rule: int, action_index: int, known: bool = True) -> str:
        """A human-readable reason for a removed action (`known`: the customer's first
        purchase is known)."""
        a = self.catalog.actions[action_index]
        ch = self.catalog.channels[self.catalog.channel_index[a.channel]]
        tp = self.catalog.touchpoints[self.catalog.touchpoint_index[a.touchpoint]]
        window = f"{tp.min_day}.." + (str(tp.max_day) if tp.max_day >= 0 else "")
        texts = {
            Rule.NO_CONSENT: f"{ch.name}: no consent",
            Rule.UNSUBSCRIBED: f"{ch.name}: customer unsubscribed",
            Rule.FIRST_SHIPMENT_ONLY: f"{ch.name}: only with the first shipment (day 0, once)",
            Rule.LIFECYCLE_WINDOW: f"{tp.name}: only on days {window} after the first purchase"
            if known
            else f"{tp.name}: no first purchase known (only on days {window} after it)",
            Rule.OCCASION_NOT_DUE: f"{tp.name}: no occasion within "
            f"{self.catalog.occasion_lead_days} days",
            Rule.TOUCHPOINT_LIMIT: f"{tp.name}: sent {tp.max_per_customer} times already",
            Rule.MIN_GAP: f"{ch.name}: less than {ch.min_gap_days:g} days since its last contact",
            Rule.CHANNEL_CAP_7D: f"{ch.name}: cap of {ch.max_per_7d} contacts in 7 days reached",
            Rule.CHANNEL_CAP_30D: f"{ch.name}: cap of {ch.max_per_30d} contacts in 30 days reached",
            Rule.CAP_7D: f"cap of {self.catalog.max_per_7d} contacts in 7 days reached",
            Rule.CAP_30D: f"cap of {self.catalog.max_per_30d} contacts in 30 days reached",
        }
        return texts.get(Rule(rule), Rule(rule).name.lower())
