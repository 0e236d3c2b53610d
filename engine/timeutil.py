"""Event time: epoch seconds (UTC) inside the engine, timezone-aware datetimes at the edges."""

from __future__ import annotations

from datetime import UTC, datetime

DAY = 86_400
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the end of the protobuf Timestamp range


def to_seconds(moment: datetime) -> int:
    """Epoch seconds of an aware datetime; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def iso(seconds: int) -> str:
    return to_datetime(seconds).isoformat().replace("+00:00", "Z")
