"""Stable hashing: customer keys, experiment buckets and reproducible per-decision draws.

A customer id is hashed once (blake2b, cached); everything after is integer mixing in numpy, so a
whole batch costs a few vector operations. The draw that samples a decision's action depends only
on (seed, customer, decision time): the same request gets the same draw whether it arrives alone,
in a stream batch, or from the in-process simulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@lru_cache(maxsize=1 << 20)
def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def string_keys(texts: Sequence[str]) -> np.ndarray:
    """64-bit stable keys of strings (uint64)."""
    return np.fromiter((_key(t) for t in texts), dtype=np.uint64, count=len(texts))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def to_unit(x: np.ndarray) -> np.ndarray:
    """uint64 -> float64 in [0, 1) from the top 53 bits."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def decision_draws(customer_keys: np.ndarray, times: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) draws keyed by (seed, customer, time)."""
    mixed = splitmix64(times.astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
    return to_unit(splitmix64(customer_keys ^ mixed))


def bucket_units(customer_keys: np.ndarray, salt: str) -> np.ndarray:
    """Uniform [0, 1) per customer for a salt: the experiment bucket."""
    return to_unit(splitmix64(customer_keys ^ np.uint64(_key("salt:" + salt))))
