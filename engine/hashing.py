"""Stable hashing: customer keys, experiment buckets and reproducible per-decision draws.

A customer id is hashed once (blake2b, cached); everything after is integer mixing in numpy, so a
whole batch costs a few vector operations. The draw that samples a decision's action depends only
on (seed, customer, decision time): the same request gets the same draw whether it arrives alone,
in a stream batch, or from the in-process simulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_CACHE: dict[str, int] = {}
_CACHE_LIMIT = 1 << 21  # ids kept hashed; cleared beyond (a plain dict is faster than lru_cache)


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def string_keys(texts: Sequence[str]) -> np.ndarray:
    """64-bit stable keys of strings (uint64)."""
    cache = _CACHE
    get = cache.get
    keys = [get(t) for t in texts]
    if None in keys:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        for i, key in enumerate(keys):
            if key is None:
                keys[i] = cache[texts[i]] = _key(texts[i])
    return np.array(keys, dtype=np.uint64)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised (uint64 arrays in and out; arithmetic wraps)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def to_unit(x: np.ndarray) -> np.ndarray:
    """uint64 -> float64 in [0, 1) from the top 53 bits."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def decision_draws(customer_keys: np.ndarray, times: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) draws keyed by (seed, customer, time)."""
    mixed = splitmix64(times.astype(np.uint64) ^ np.uint64(seed % (1 << 64)))
    return to_unit(splitmix64(customer_keys ^ mixed))


def bucket_units(customer_keys: np.ndarray, salt: str) -> np.ndarray:
    """Uniform [0, 1) per customer for a salt: the experiment bucket."""
    return to_unit(splitmix64(customer_keys ^ np.uint64(_key("salt:" + salt))))
