"""Domain exceptions of the engine; the gRPC layer maps them to status codes in one place."""

from __future__ import annotations


class AnstossError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(AnstossError):
    """A configuration file is unreadable or invalid; the message names file, key and problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class InvalidRequest(AnstossError):
    """A request field is invalid (gRPC INVALID_ARGUMENT); `field` is its path in the request."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class LimitExceeded(InvalidRequest):
    """A request is over a configured size limit (gRPC RESOURCE_EXHAUSTED)."""


class UnknownDecision(AnstossError):
    """No decision with this id is in the log (gRPC NOT_FOUND)."""

    def __init__(self, decision_id: str, field: str = "decision_id") -> None:
        self.decision_id = decision_id
        self.field = field
        super().__init__(f"{field}: no decision with id {decision_id!r}")


class OutcomeRejected(AnstossError):
    """An outcome can no longer be applied, e.g. its decision is closed (FAILED_PRECONDITION)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ModelError(AnstossError):
    """A model cannot be loaded or does not fit the catalog."""
