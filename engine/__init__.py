"""anstoss engine: catalog, features, contact policy, policies, decisions, rewards, stores.

The runtime core. It imports nothing of the simulator, training or CLI packages.
"""

from engine.catalog import Catalog, load_catalog
from engine.config import EngineConfig, load_config
from engine.decide import DecisionEngine
from engine.errors import (
    AnstossError,
    ConfigError,
    InvalidRequest,
    LimitExceeded,
    ModelError,
    OutcomeRejected,
    UnknownDecision,
)
from engine.requests import DecideBatch, EventBatch, EventType, Outcome
from engine.store import SQLiteStore

__all__ = [
    "AnstossError",
    "Catalog",
    "ConfigError",
    "DecideBatch",
    "DecisionEngine",
    "EngineConfig",
    "EventBatch",
    "EventType",
    "InvalidRequest",
    "LimitExceeded",
    "ModelError",
    "Outcome",
    "OutcomeRejected",
    "SQLiteStore",
    "UnknownDecision",
    "load_catalog",
    "load_config",
]
