"""The figures of a simulation run, under stable snake_case keys (summary.json).

Money per customer in euros; revenue counts the purchases after the first one (the first order
is the same under every policy); net value = margin_rate * revenue - contact cost. Rates that
need a longer horizon than the run are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.catalog import Catalog


def metrics(
    customers: pd.DataFrame, horizon: int, catalog: Catalog, margin_rate: float
) -> dict[str, Any]:
    n = len(customers)
    out: dict[str, Any] = {"customers": n, "horizon_days": horizon}
    if n == 0:
        return out
    second = customers["days_to_second_purchase"]
    # "Within d days" counts days 1..d after the first purchase; the first year is days 1..364.
    for days in (10, 30, 90, 365):
        last = min(days, 364)
        if horizon > last:
            out[f"second_purchase_rate_{days}d"] = float((second <= last).mean())
    within_year = (second <= min(364, horizon - 1)).sum()
    if within_year:
        out["share_of_second_purchases_within_10d"] = float((second <= 10).sum() / within_year)
    out["disversion_rate"] = float((customers["repeat_purchases"] >= 2).mean())
    if horizon >= 730:
        active2 = customers["purchases_year_2"] > 0
        out["active_year2_share"] = float(active2.mean())
        if horizon >= 1095 and active2.any():
            out["year3_retention_of_year2_active"] = float(
                (active2 & (customers["purchases_year_3"] > 0)).sum() / active2.sum()
            )
    revenue = customers["repeat_revenue"].mean()
    cost = customers["contact_cost"].mean()
    out.update(
        revenue_per_customer=float(revenue),
        margin_per_customer=float(margin_rate * revenue),
        contact_cost_per_customer=float(cost),
        net_value_per_customer=float(customers["net_value"].mean()),
        net_value_per_customer_se=float(customers["net_value"].std(ddof=1) / np.sqrt(n))
        if n > 1
        else 0.0,
    )
    for column, per_channel, total in (
        ("contacts", "contacts_per_customer", "contacts_per_customer"),
        ("unsubscribed", "unsubscribe_rate", "unsubscribes_per_customer"),
    ):
        shares = {c.name: float(customers[f"{column}_{c.name}"].mean()) for c in catalog.channels}
        out.update({f"{per_channel}_{name}": share for name, share in shares.items()})
        out[total] = sum(shares.values())
    return out


def summarize(
    customers: pd.DataFrame,
    horizon: int,
    catalog: Catalog,
    margin_rate: float,
    truth: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Overall figures, plus the same per experiment arm under "arms"."""
    summary = metrics(customers, horizon, catalog, margin_rate)
    if truth is not None and len(customers):
        summary.update(_truth_metrics(truth, len(customers)))
    arms = {}
    for arm, group in customers.groupby("arm", sort=True):
        arms[str(arm)] = metrics(group, horizon, catalog, margin_rate)
        if truth is not None and len(group):
            arms[str(arm)].update(_truth_metrics(truth[truth["arm"] == arm], len(group)))
    summary["arms"] = arms
    return summary


def _truth_metrics(truth: pd.DataFrame, customers: int) -> dict[str, float]:
    """From the world's true action values: what the decisions added over leaving customers
    alone (incremental value), and what they left on the table against the best eligible
    action (regret). Both sum myopic values (each action alone, no later touches)."""
    incremental = truth["value_chosen"] - truth["value.no_contact"]
    return {
        "incremental_value_per_customer": float(incremental.sum() / customers),
        "regret_per_customer": float(truth["regret"].sum() / customers),
    }
