"""Decision policies behind one protocol."""

from __future__ import annotations

from engine.catalog import Catalog
from engine.config import BanditConfig
from engine.policy.bandit import BanditPolicy
from engine.policy.base import Policy, StaticPolicy
from engine.policy.static import ChainPolicy, NoContactPolicy, RandomPolicy


def make_policy(kind: str, catalog: Catalog, bandit: BanditConfig) -> Policy:
    """A fresh policy of a kind named in the configuration."""
    if kind == "bandit":
        return BanditPolicy(bandit, catalog)
    if kind == "chain":
        return ChainPolicy(catalog)
    if kind == "random":
        return RandomPolicy()
    if kind == "none":
        return NoContactPolicy()
    raise ValueError(f"unknown policy kind {kind!r}")


__all__ = [
    "BanditPolicy",
    "ChainPolicy",
    "NoContactPolicy",
    "Policy",
    "RandomPolicy",
    "StaticPolicy",
    "make_policy",
]
