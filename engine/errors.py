"""Domain exceptions of the engine; the gRPC layer maps them to status codes in one place."""

from __future__ import annotations

import math


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

    @classmethod
    def closed(cls, decision_id: str, reward: float | None) -> OutcomeRejected:
        fixed = "no reward" if reward is None or math.isnan(reward) else f"reward {reward:g}"
        return cls(
            "decision_id", f"decision {decision_id} is closed ({fixed}); it takes no more outcomes"
        )

    @classmethod
    def inactive(cls, decision_id: str, activation: int) -> OutcomeRejected:
        state = (
            "deferred and not delivered yet: report DELIVERED first"
            if activation == 2
            else "taken back (not executed)"
        )
        return cls("decision_id", f"decision {decision_id} is {state}; it takes no reward")


class Conflict(AnstossError):
    """An idempotency key (event_id, request_id) was used before with a different content
    (gRPC ALREADY_EXISTS); nothing was applied."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def located(exc: AnstossError, prefix: str) -> AnstossError:
    """The same error with its field placed inside a request ("time" -> "events[3].time")."""
    field = getattr(exc, "field", None)
    if not prefix or field is None:
        return exc
    if isinstance(exc, UnknownDecision):
        return UnknownDecision(exc.decision_id, prefix + field)
    if isinstance(exc, InvalidRequest | OutcomeRejected | Conflict):
        return type(exc)(prefix + field, exc.problem)
    return exc


class ModelError(AnstossError):
    """A model cannot be loaded or does not fit the catalog."""


class StorageError(AnstossError):
    """The store's file cannot be used; the message names the file and the problem."""


class StorageUnavailable(StorageError):
    """The store cannot write or read right now (disk full, I/O error, locked, read-only): gRPC
    UNAVAILABLE, since a retry after the operator frees space or fixes permissions succeeds.
    Nothing of the failed call was committed."""


class StorageCorrupt(StorageError):
    """The store's file is damaged or not an anstoss database (gRPC DATA_LOSS)."""


class Overloaded(AnstossError):
    """The server sheds this call to stay fair to other callers (gRPC UNAVAILABLE, retryable)."""


def shown(value: object, limit: int = 48) -> str:
    """`value` for an error message: ASCII repr (control and non-ASCII characters escaped), cut
    to about `limit` characters, so an error never echoes unbounded input back to the caller.

    >>> shown("fax")
    "'fax'"
    >>> shown("x" * 100, limit=10)
    "'xxxxxxxx...' (100 characters)"
    >>> shown("a\\x00b\\u00e9")
    "'a\\\\x00b\\\\xe9'"
    """
    text = ascii(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return f"{text[: limit - 1]}...' ({len(value)} characters)"
    return text[: limit - 1] + "..."


class PartialUpdate(AnstossError):
    """An online update failed at row `applied` of its batch; the rows before it are learned,
    that row and the rest are not."""

    def __init__(self, applied: int, cause: BaseException) -> None:
        self.applied = applied
        self.cause = cause
        super().__init__(f"update failed at row {applied}: {cause!r}"[:300])
