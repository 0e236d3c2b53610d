"""The world's true expected value of every action for every customer, now.

    V(a) = margin_rate * E[order value] * E[purchases in the next H days | a now, no more touches]
           - cost(a) - unsubscribe_cost * P(unsubscribe | a)

computed exactly from the world's own equations by propagating expectations day by day (the
alive probability, each channel's lift, fatigue and bond) without drawing anything. It is the
myopic value of a touch: the effect of later touches and of purchases on the bond are left out.
The oracle policy maximises it; every decision's regret is measured against it.
"""

from __future__ import annotations

import numpy as np

from simulator.world import World


def action_values(world: World, idx: np.ndarray, day: int) -> np.ndarray:
    """(len(idx), A) true expected net value of each catalog action, in euros."""
    scenario = world.scenario
    r = world.response
    pop = world.population
    horizon = scenario.value.horizon_days
    cost = r.action_cost[None, :]
    values = np.broadcast_to(-cost, (len(idx), cost.shape[1])).copy()
    alive = world.alive[idx]
    idx = idx[alive]  # dead customers buy nothing whatever we send: V = -cost
    if len(idx) == 0:
        return values
    channel = np.maximum(r.action_channel, 0)  # (A,); no contact uses channel 0 with zero lift
    touchpoint = np.maximum(r.action_touchpoint, 0)
    contact = (r.action_channel >= 0)[None, :]
    t0 = day - pop.arrival[idx]
    relevance = np.where(
        contact,
        r.relevance(
            touchpoint[None, :],
            pop.segment[idx][:, None],
            t0[:, None],
            (day - world.last_purchase[idx])[:, None],
        ),
        0.0,
    )
    fatigue0 = world.fatigue[idx][:, None]
    lift = np.where(
        contact, r.lift(channel[None, :], relevance, pop.affinity[idx][:, channel], fatigue0), 0.0
    )
    fatigue = fatigue0 + np.where(contact, r.fatigue_weight[channel][None, :], 0.0)
    optout = np.where(contact, r.optout_probability(channel[None, :], relevance, fatigue), 0.0)
    bond = world.bond[idx][:, None] + r.bond_boost[touchpoint][None, :] * contact * (
        1.0 - world.bond[idx][:, None]
    )
    bond = np.where(contact, r.eroded_bond(bond, fatigue), bond)  # only a touch erodes the bond

    base_lift = _lift_path(world, idx, day, horizon)  # (m, H) lift already under way
    delay = r.delay[channel]
    decay = r.decay[channel]
    steps = np.arange(horizon)[:, None]
    extra_path = np.where(steps >= delay, decay ** np.maximum(steps - delay, 0), 0.0)  # (H, A)
    rate = pop.purchase_rate[idx][:, None]
    kappa = pop.burst_kappa[idx]
    mu = pop.dropout[idx][:, None]
    survive = np.ones_like(lift)
    purchases = np.zeros_like(lift)
    for tau in range(horizon):
        t = t0 + tau
        burst = r.burst(t, kappa)[:, None]
        hazard = (rate * r.rate_multiplier(bond) + burst) * (
            1.0 + base_lift[:, tau : tau + 1] + lift * extra_path[tau]
        )
        buys = -np.expm1(-hazard) * (t >= 1)[:, None]
        purchases += survive * buys
        survive *= np.exp(-mu * r.dropout_multiplier(bond, fatigue))
        bond = bond * r.bond_decay
        fatigue = fatigue * r.fatigue_decay
    margin = scenario.margin_rate * pop.mean_order_value[idx][:, None]
    values[alive] = margin * purchases - cost - scenario.value.unsubscribe_cost * optout
    return values


def _lift_path(world: World, idx: np.ndarray, day: int, horizon: int) -> np.ndarray:
    """Sum over channels of the lift each customer already has, for the next `horizon` days."""
    r = world.response
    steps = np.arange(horizon)
    path = (world.lift[idx][:, :, None] * r.decay[None, :, None] ** steps).sum(axis=1)
    slots = len(world.pending)
    for k in range(slots if slots > 1 else 0):  # lift arriving in k days (k = 0: today)
        arriving = world.pending[(day + k) % slots, idx]  # (m, C)
        grow = np.where(steps >= k, r.decay[:, None] ** np.maximum(steps - k, 0), 0.0)  # (C, H)
        path += arriving @ grow
    return path
