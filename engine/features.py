"""Customer context and state -> model features: the one place serving, training and the
simulator build features, so a model trained on logs serves without translation.

Features are named; numeric ones are float, categorical ones strings (empty = missing). Extra
context features from the request keep their names behind an ``extra.`` prefix. A row's features
are logged as one flat JSON object (numbers for numeric, strings for categorical).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.requests import NO_OCCASION, DecideBatch
from engine.state import NO_TIME, CustomerStates
from engine.timeutil import DAY

NUMERIC_FEATURES = (
    "known",  # 1 when the first purchase is known
    "lifecycle_day_log",  # log1p(days since first purchase)
    "first_order_value_log",
    "repeat_purchases",
    "purchase_value_log",
    "days_since_last_purchase_log",
    "contacts_7d",
    "contacts_30d",
    "days_since_last_contact_log",
    "first_order_items_log",
    "occasion_due",
)
CATEGORICAL_FEATURES = (
    "stage",  # lifecycle stage: the timing of a touch matters most (day 2 >> day 60)
    "value_band",  # first order value band
    "acquisition_channel",
    "first_order_category",
    "region",
)
EXTRA_PREFIX = "extra."

_STAGE_EDGES = np.array([1, 4, 11, 31, 91, 181, 366])
_STAGE_LABELS = np.array(["d0", "d1_3", "d4_10", "d11_30", "d31_90", "d91_180", "d181_365", "y2"])
_VALUE_EDGES = np.array([30.0, 60.0, 120.0])
_VALUE_LABELS = np.array(["lt30", "30_60", "60_120", "ge120"])
_NO_CONTACT_DAYS = 31.0  # "no contact in the kept 30-day history"
FEATURE_BOUND = 1e12


@dataclass
class FeatureBatch:
    numeric: np.ndarray  # (n, len(NUMERIC_FEATURES)) float64
    categorical: np.ndarray  # (n, len(CATEGORICAL_FEATURES)) object (str)
    extra_numeric: list[dict[str, float]] | None = None
    extra_categorical: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.numeric)

    def rows(self, index: np.ndarray) -> FeatureBatch:
        def pick(extra: list[Any] | None) -> list[Any] | None:
            return None if extra is None else [extra[i] for i in index]

        return FeatureBatch(
            self.numeric[index],
            self.categorical[index],
            pick(self.extra_numeric),
            pick(self.extra_categorical),
        )

    def record(self, i: int) -> dict[str, float | str]:
        """Row i as the flat dict that goes into the decision log."""
        out: dict[str, float | str] = dict(
            zip(NUMERIC_FEATURES, self.numeric[i].tolist(), strict=True)
        )
        for name, value in zip(CATEGORICAL_FEATURES, self.categorical[i], strict=True):
            if value:
                out[name] = value
        if self.extra_numeric is not None:
            for name, num in self.extra_numeric[i].items():
                out[EXTRA_PREFIX + name] = num
        if self.extra_categorical is not None:
            for name, text in self.extra_categorical[i].items():
                out[EXTRA_PREFIX + name] = text
        return out

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> FeatureBatch:
        """Inverse of `record` (for learning from and evaluating on logged decisions)."""
        n = len(records)
        numeric = np.array(
            [[float(rec.get(name, 0.0)) for name in NUMERIC_FEATURES] for rec in records],
            dtype=np.float64,
        ).reshape(n, len(NUMERIC_FEATURES))
        categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
        if n:
            categorical[:] = [[rec.get(n_, "") for n_ in CATEGORICAL_FEATURES] for rec in records]
        extra_num: list[dict[str, float]] = [{} for _ in range(n)]
        extra_cat: list[dict[str, str]] = [{} for _ in range(n)]
        has_num = has_cat = False
        for i, rec in enumerate(records):
            known = len(NUMERIC_FEATURES) + sum(1 for value in categorical[i] if value)
            if len(rec) == known:
                continue  # no extra features (the common case): skip the key scan
            for name, value in rec.items():
                if name.startswith(EXTRA_PREFIX):
                    key = name[len(EXTRA_PREFIX) :]
                    if isinstance(value, str):
                        extra_cat[i][key] = value
                        has_cat = True
                    else:
                        extra_num[i][key] = float(value)
                        has_num = True
        return cls(
            numeric, categorical, extra_num if has_num else None, extra_cat if has_cat else None
        )


def build_features(
    states: CustomerStates, batch: DecideBatch, occasion_lead_days: int
) -> FeatureBatch:
    """Vectorised feature construction for a batch of decide requests."""
    n = len(batch)
    t = states.times
    known = states.known
    days = states.days_since_first_purchase()
    since_last_purchase = np.where(
        states.last_purchase_time != NO_TIME, (t - states.last_purchase_time) / DAY, 0.0
    )
    last_contact = states.last_contact_time.max(axis=1, initial=NO_TIME)
    since_contact = np.where(
        last_contact != NO_TIME,
        np.minimum((t - last_contact) / DAY, _NO_CONTACT_DAYS),
        _NO_CONTACT_DAYS,
    )
    items = batch.first_order_items if batch.first_order_items is not None else np.full(n, np.nan)
    occasion = batch.days_to_occasion
    occasion_due = (
        np.zeros(n)
        if occasion is None
        else ((occasion != NO_OCCASION) & (occasion >= 0) & (occasion <= occasion_lead_days))
    )
    numeric = np.column_stack(
        [
            known.astype(np.float64),
            np.log1p(np.maximum(days, 0)),
            np.log1p(states.first_order_value),
            np.maximum(states.purchases - 1, 0).astype(np.float64),
            np.log1p(states.purchase_value),
            np.log1p(np.maximum(since_last_purchase, 0.0)),
            states.contacts_7d.sum(axis=1).astype(np.float64),
            states.contacts_30d.sum(axis=1).astype(np.float64),
            np.log1p(np.maximum(since_contact, 0.0)),
            np.log1p(np.nan_to_num(np.maximum(items, 0.0), nan=0.0)),
            np.asarray(occasion_due, dtype=np.float64),
        ]
    )
    # Whatever a stored state holds (say a total that a legacy row let grow to inf), a feature
    # stays a finite number the model and the JSON log can take.
    np.clip(np.nan_to_num(numeric, copy=False), -FEATURE_BOUND, FEATURE_BOUND, out=numeric)
    categorical = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=object)
    categorical[:, 0] = np.where(
        known, _STAGE_LABELS[np.searchsorted(_STAGE_EDGES, days, "right")], "unknown"
    )
    categorical[:, 1] = np.where(
        known, _VALUE_LABELS[np.searchsorted(_VALUE_EDGES, states.first_order_value, "right")], ""
    )
    categorical[:, 2] = batch.strings(batch.acquisition_channel)
    categorical[:, 3] = batch.strings(batch.first_order_category)
    categorical[:, 4] = batch.strings(batch.region)
    return FeatureBatch(numeric, categorical, batch.extra_numeric, batch.extra_categorical)
