"""The new-customer world: state over all customers (struct of arrays), stepped day by day.

A day runs: first purchases of the day's arrivals; the channel systems' touches (`touch`);
purchases, dropouts and the decay of lifts, fatigue and bond (`step`). Customers are simulated
for `horizon` days from their first purchase; only customers inside their horizon and alive are
touched by `step` (dead customers neither buy nor change), so a day costs what its live
customers cost. Every draw is a common random number keyed by (seed, stream, day, customer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from engine.errors import AnstossError
from simulator import draws
from simulator.population import Population
from simulator.response import ResponseModel
from simulator.scenario import ATTRIBUTES, Scenario

NEVER = -1


class ConsentViolation(AnstossError):
    """A touch reached the world over a channel the customer did not allow."""


@dataclass
class Purchases:
    customers: np.ndarray
    values: np.ndarray


class World:
    def __init__(self, scenario: Scenario, population: Population, seed: int, horizon: int) -> None:
        self.scenario = scenario
        self.population = population
        self.seed = seed
        self.horizon = horizon
        self.response = ResponseModel(scenario)
        n, c = len(population), len(scenario.catalog.channels)
        self.alive = np.ones(n, dtype=bool)
        self.live = np.zeros(n, dtype=bool)  # arrived, alive, inside the horizon
        self.bond = np.full(n, scenario.bond.initial)
        self.fatigue = np.zeros(n)
        self.lift = np.zeros((n, c))
        # Lift in transit (postcards take days), one slot per due day: slot day % len, with the
        # customers that have something arriving in each slot.
        self.pending = np.zeros((int(self.response.delay.max()) + 1, n, c))
        self._arriving: list[list[np.ndarray]] = [[] for _ in range(len(self.pending))]
        self.last_purchase = population.arrival.copy()
        self.repeats = np.zeros(n, dtype=np.int64)
        self.first_repeat = np.full(n, NEVER, dtype=np.int64)  # days after the first purchase
        self.revenue = np.zeros(n)  # repeat purchases only
        self.cost = np.zeros(n)
        self.contacts = np.zeros((n, c), dtype=np.int64)
        self.unsubscribed = np.zeros((n, c), dtype=bool)
        self.alive_at = {365: np.zeros(n, dtype=bool), 730: np.zeros(n, dtype=bool)}
        self.year_purchases = {2: np.zeros(n, dtype=np.int64), 3: np.zeros(n, dtype=np.int64)}
        self.death_day = np.full(n, NEVER, dtype=np.int64)

    @property
    def calendar_days(self) -> int:
        """Days to simulate so every customer gets her whole horizon."""
        return int(self.population.arrival.max()) + self.horizon if len(self.population) else 0

    def days_since_first(self, day: int, idx: np.ndarray) -> np.ndarray:
        return day - self.population.arrival[idx]

    # -- the day ----------------------------------------------------------------------------

    def arrive(self, day: int) -> np.ndarray:
        """Customers whose first purchase is today (they become live)."""
        arrival = self.population.arrival
        lo, hi = np.searchsorted(arrival, [day, day + 1])
        idx = np.arange(lo, hi)
        self.live[idx] = True
        return idx

    def touch(
        self, day: int, idx: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply contact actions (catalog action indices, one per customer); returns the
        (customer, channel) pairs that unsubscribed."""
        contact = actions != 0
        idx, actions = idx[contact], actions[contact]
        if len(idx) == 0:
            return idx, idx
        r = self.response
        channel = r.action_channel[actions]
        touchpoint = r.action_touchpoint[actions]
        # Consent is a hard rule here too: a touch the customer never allowed, or sent after
        # she unsubscribed, means the engine broke its contact policy.
        forbidden = ~self.population.consent[idx, channel] | self.unsubscribed[idx, channel]
        if forbidden.any():
            i = int(np.flatnonzero(forbidden)[0])
            name = self.scenario.catalog.channels[channel[i]].name
            raise ConsentViolation(
                f"day {day}: customer {idx[i]} was touched over {name} without consent"
            )
        self.cost[idx] += r.action_cost[actions]
        np.add.at(self.contacts, (idx, channel), 1)
        reached = self.alive[idx]  # dead customers cost money and react no more
        idx, channel, touchpoint = idx[reached], channel[reached], touchpoint[reached]
        pop = self.population
        relevance = r.relevance(
            touchpoint,
            pop.segment[idx],
            self.days_since_first(day, idx),
            day - self.last_purchase[idx],
        )
        fatigue = self.fatigue[idx]
        lift = r.lift(channel, relevance, pop.affinity[idx, channel], fatigue)
        delay = r.delay[channel]
        now = delay == 0
        self.lift[idx[now], channel[now]] += lift[now]
        later = ~now
        slots = (day + delay[later]) % len(self.pending)
        self.pending[slots, idx[later], channel[later]] += lift[later]
        for slot in np.unique(slots).tolist():
            self._arriving[slot].append(idx[later][slots == slot])
        fatigue = fatigue + r.fatigue_weight[channel]
        self.fatigue[idx] = fatigue
        bond = self.bond[idx]
        bond = bond + r.bond_boost[touchpoint] * (1.0 - bond)
        self.bond[idx] = r.eroded_bond(bond, fatigue)
        optout = draws.uniforms(self.seed, draws.OPTOUT, day, idx) < r.optout_probability(
            channel, relevance, fatigue
        )
        self.unsubscribed[idx[optout], channel[optout]] = True
        return idx[optout], channel[optout]

    def step(self, day: int) -> Purchases:
        """Purchases and dropouts of the live customers today, then the daily decay."""
        idx = np.flatnonzero(self.live)
        pop, r = self.population, self.response
        t = self.days_since_first(day, idx)
        slot = day % len(self.pending)
        if self._arriving[slot]:
            rows = np.unique(np.concatenate(self._arriving[slot]))
            self._arriving[slot].clear()
            arrived = rows[self.live[rows]]  # the dead and the departed take no more lift
            self.lift[arrived] += self.pending[slot, arrived]
            self.pending[slot, rows] = 0.0
        lift = self.lift[idx]
        bond = self.bond[idx]
        hazard = (
            pop.purchase_rate[idx] * r.rate_multiplier(bond) + r.burst(t, pop.burst_kappa[idx])
        ) * (1.0 + lift.sum(axis=1))
        buys = (t >= 1) & (draws.uniforms(self.seed, draws.PURCHASE, day, idx) < -np.expm1(-hazard))
        buyers = idx[buys]
        u = draws.uniforms(self.seed, draws.SPEND, day, buyers)
        values = np.round(special.gammaincinv(pop.spend_shape, u) / pop.spend_rate[buyers], 2)
        self._record_purchases(day, buyers, t[buys], values)
        bond[buys] += self.scenario.bond.purchase_gain * (1.0 - bond[buys])

        fatigue = self.fatigue[idx]
        dropout = pop.dropout[idx] * r.dropout_multiplier(bond, fatigue)
        dies = draws.uniforms(self.seed, draws.DROPOUT, day, idx) < -np.expm1(-dropout)
        for mark, alive in self.alive_at.items():
            at = t == mark - 1  # alive at the end of the day before day `mark`
            alive[idx[at]] = ~dies[at]
        self.alive[idx[dies]] = False
        self.death_day[idx[dies]] = day
        ends = dies | (t >= self.horizon - 1)
        self.live[idx[ends]] = False

        self.lift[idx] = lift * r.decay
        self.fatigue[idx] = fatigue * r.fatigue_decay
        self.bond[idx] = bond * r.bond_decay
        return Purchases(buyers, values)

    def _record_purchases(
        self, day: int, buyers: np.ndarray, t: np.ndarray, values: np.ndarray
    ) -> None:
        first = self.first_repeat[buyers] == NEVER
        self.first_repeat[buyers[first]] = t[first]
        self.repeats[buyers] += 1
        self.revenue[buyers] += values
        self.last_purchase[buyers] = day
        for year, count in self.year_purchases.items():
            inside = (t >= 365 * (year - 1)) & (t < 365 * year)
            count[buyers[inside]] += 1

    # -- output -----------------------------------------------------------------------------

    def customers_frame(
        self, customer_ids: list[str], arms: np.ndarray | None = None
    ) -> pd.DataFrame:
        """One row per customer: who she is (the truth) and what happened."""
        pop = self.population
        scenario = self.scenario
        frame = pd.DataFrame(
            {
                "customer_id": customer_ids,
                "arm": arms if arms is not None else "",
                "segment": np.array([s.name for s in scenario.segments])[pop.segment],
                "first_purchase_day": pop.arrival,
                "first_order_value": pop.first_value,
                "mean_order_value": pop.mean_order_value,
                "purchase_rate_per_year": pop.purchase_rate * 365,
                "dropout_per_year": pop.dropout * 365,
            }
        )
        for name in ATTRIBUTES:
            levels = np.array([lv.name for lv in scenario.attributes[name]], dtype=object)
            frame[name] = levels[pop.attributes[name]]
        frame["repeat_purchases"] = self.repeats
        frame["days_to_second_purchase"] = np.where(
            self.first_repeat >= 0, self.first_repeat, np.nan
        )
        frame["repeat_revenue"] = self.revenue
        frame["contact_cost"] = self.cost
        frame["net_value"] = scenario.margin_rate * self.revenue - self.cost
        for c, channel in enumerate(scenario.catalog.channels):
            frame[f"contacts_{channel.name}"] = self.contacts[:, c]
            frame[f"unsubscribed_{channel.name}"] = self.unsubscribed[:, c]
        frame["alive_at_end"] = self.alive
        frame["alive_day_365"] = self.alive_at[365]
        frame["alive_day_730"] = self.alive_at[730]
        frame["purchases_year_2"] = self.year_purchases[2]
        frame["purchases_year_3"] = self.year_purchases[3]
        return frame
