"""Stores behind one interface: SQLite (server default) and memory (simulator)."""

from engine.store.base import Checkpoint, LogContext, OutcomeApplied, Store
from engine.store.memory import MemoryStore
from engine.store.sqlite import SQLiteStore

__all__ = ["Checkpoint", "LogContext", "MemoryStore", "OutcomeApplied", "SQLiteStore", "Store"]
