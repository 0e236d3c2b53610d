"""New customers: who they are at their first purchase (struct of arrays, drawn once per seed).

Per customer: the day of the first purchase, a segment (loyal-prone or one-off by default; a
larger first basket and some first-order attributes make loyalty more likely), a latent purchase
rate and dropout hazard (gamma-distributed within the segment), a spend rate (gamma-gamma), the
first basket, channel affinities and consents, and the first-order attributes the engine sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from simulator.scenario import ATTRIBUTES, Scenario


@dataclass
class Population:
    arrival: np.ndarray  # (n,) calendar day of the first purchase
    segment: np.ndarray  # (n,) segment index
    purchase_rate: np.ndarray  # (n,) per day
    dropout: np.ndarray  # (n,) hazard per day
    spend_rate: np.ndarray  # (n,) nu of the gamma-gamma model
    first_value: np.ndarray  # (n,) first basket in euros
    burst_kappa: np.ndarray  # (n,) burst intensity scale
    attributes: dict[str, np.ndarray]  # name -> (n,) level index
    items: np.ndarray  # (n,) items in the first order
    occasion_day: np.ndarray  # (n,) day of year of the name day, -1 unknown
    affinity: np.ndarray  # (n, C) multiplier of a channel's effect, mean 1
    consent: np.ndarray  # (n, C) bool: consent at the first purchase
    spend_shape: float  # p of the gamma-gamma model

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def mean_order_value(self) -> np.ndarray:
        """Each customer's true expected order value."""
        return self.spend_shape / self.spend_rate


def burst_kappa(probability: float, tau: float, days: int) -> float:
    """Burst intensity scale whose purchase probability over `days` is `probability`."""
    weight = np.exp(-np.arange(days) / tau).sum()
    return float(-np.log1p(-probability) / weight)


def draw_population(
    scenario: Scenario, n: int, seed: int, arrival: np.ndarray | None = None
) -> Population:
    """n customers, reproducible from the seed, independent of any policy. `arrival` gives the
    first-purchase days (sorted) instead of spreading them over the scenario's arrival_days."""
    rng = np.random.default_rng([seed, 0x504F50])
    catalog = scenario.catalog
    spend = scenario.spend
    drawn = np.sort(rng.integers(0, scenario.arrival_days, n))
    arrival = drawn if arrival is None else np.asarray(arrival, dtype=np.int64)
    if len(arrival) != n or np.any(np.diff(arrival) < 0):
        raise ValueError("arrival must hold n sorted days")
    spend_rate = rng.gamma(spend.q, 1.0 / spend.gamma, n)
    first_value = np.round(rng.gamma(spend.p, 1.0 / spend_rate), 2)
    # Standardise the log first basket with its exact moments under the gamma-gamma model:
    # log z = log G_p - log G_q + log gamma with G_k ~ Gamma(k, 1).
    mean = special.digamma(spend.p) - special.digamma(spend.q) + np.log(spend.gamma)
    sd = np.sqrt(special.polygamma(1, spend.p) + special.polygamma(1, spend.q))
    z = (np.log(np.maximum(first_value, 0.01)) - mean) / sd

    attributes = {}
    shift = np.zeros(n)
    for name in ATTRIBUTES:
        levels = scenario.attributes[name]
        index = rng.choice(len(levels), size=n, p=[lv.share for lv in levels])
        attributes[name] = index
        shift += np.array([lv.loyalty_logit for lv in levels])[index]
    segments = scenario.segments
    logits = np.zeros((n, len(segments)))
    for k, s in enumerate(segments[:-1]):
        logits[:, k] = s.logit_intercept + s.logit_first_basket * z + shift
    probs = special.softmax(logits, axis=1)
    segment = (probs.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)

    rate_mean = np.array([s.purchase_rate_per_year for s in segments])[segment] / 365.0
    rate_shape = np.array([s.purchase_rate_shape for s in segments])[segment]
    drop_mean = np.array([s.dropout_per_year for s in segments])[segment] / 365.0
    drop_shape = np.array([s.dropout_shape for s in segments])[segment]
    kappa = np.array(
        [
            burst_kappa(s.burst_probability, scenario.burst.tau, scenario.burst.days)
            for s in segments
        ]
    )[segment]
    channels = [scenario.channels[c.name] for c in catalog.channels]
    sd_aff = np.array([c.affinity_sd for c in channels])
    # Log-normal with mean 1: some customers respond to a channel more than others.
    affinity = np.exp(rng.normal(0.0, 1.0, (n, len(channels))) * sd_aff - sd_aff**2 / 2)
    consent = rng.random((n, len(channels))) < np.array([c.consent_share for c in channels])
    known = rng.random(n) < scenario.name_known_share
    population = Population(
        arrival=arrival,
        segment=segment,
        purchase_rate=rng.gamma(rate_shape, rate_mean / rate_shape),
        dropout=rng.gamma(drop_shape, drop_mean / drop_shape),
        spend_rate=spend_rate,
        first_value=first_value,
        burst_kappa=kappa,
        attributes=attributes,
        items=1 + rng.poisson(scenario.extra_items_mean, n),
        occasion_day=np.where(known, rng.integers(0, 365, n), -1),
        affinity=affinity,
        consent=consent,
        spend_shape=spend.p,
    )
    return population
