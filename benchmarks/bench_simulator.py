"""Simulator speed: 100,000 new customers x 365 days, in-process, under the fixed chain and
under the learning bandit (targets on 2 cores: <= 10 s and <= 120 s)."""

from __future__ import annotations

import time

from simulator import simulate

CUSTOMERS, DAYS = 100_000, 365


def _run(policy: str) -> float:
    started = time.perf_counter()
    result = simulate(policy=policy, customers=CUSTOMERS, days=DAYS, seed=1)
    elapsed = time.perf_counter() - started
    rate = CUSTOMERS * DAYS / elapsed
    print(
        f"{policy:>6}: {CUSTOMERS:,} customers x {DAYS} days in {elapsed:6.1f} s ="
        f" {rate / 1e6:5.2f} M customer-days/s"
        f"  (net value {result.summary['net_value_per_customer']:.2f} EUR/customer)"
    )
    return rate


def run() -> dict[str, float]:
    return {
        "sim_chain_customer_days_per_s": _run("chain"),
        "sim_bandit_customer_days_per_s": _run("bandit"),
    }
