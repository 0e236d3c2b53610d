"""Common random numbers: each draw is keyed by (seed, stream, day, customer).

Two policies run on one seed see the same customers with the same luck: a customer who would
buy on day 12 without a touch still buys on day 12 under any policy that leaves her alone. The
difference between policies then carries far less noise. Draws are counter-based (a splitmix64
hash), so they cost a few vector operations for the customers that need them, and nothing for
the rest.
"""

from __future__ import annotations

import numpy as np

from engine.hashing import splitmix64, to_unit

PURCHASE, DROPOUT, SPEND, OPTOUT = 1, 2, 3, 4
_MASK = (1 << 64) - 1


def uniforms(seed: int, stream: int, day: int, customers: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws for the given customer indices on one day of one stream."""
    key = (
        seed * 0x9E3779B97F4A7C15 ^ stream * 0xC2B2AE3D27D4EB4F ^ day * 0x165667B19E3779F9
    ) & _MASK
    mixed = splitmix64(np.array([key], dtype=np.uint64))[0]
    return to_unit(splitmix64(customers.astype(np.uint64) ^ mixed))
