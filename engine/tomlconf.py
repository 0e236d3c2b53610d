"""Typed reading of TOML tables with errors that name the file and the key.

Every configuration file of anstoss (catalog, engine config, simulator scenarios) is read through
a `Table`, so a wrong type or value always reads like ``catalog.toml: channels.sms.cost: expected
a number >= 0, got -1``.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigError


def load_toml(path: str | Path) -> Table:
    """Parse a TOML file into a `Table`; syntax errors carry tomllib's line and column."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    return Table(data, source, "")


class Table:
    """A TOML table that remembers where it came from; getters validate and name the key."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str) -> None:
        self.data = data
        self.source = source
        self.prefix = prefix
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self._used.add(name)
        if name not in self.data:
            if required:
                close = difflib.get_close_matches(name, [k for k in self.data if k != name], n=1)
                hint = f" (is {close[0]!r} a typo?)" if close else ""
                raise self.error(name, "required key is missing" + hint)
            return default
        return self.data[name]

    def table(self, name: str, required: bool = False) -> Table:
        value = self._get(name, {}, required)
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table, got {_kind(value)}")
        return Table(value, self.source, self.key(name))

    def tables(self, name: str, required: bool = False) -> list[Table]:
        """An array of tables (``[[name]]``)."""
        value = self._get(name, [], required)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"expected an array of tables ([[{name}]]), got {_kind(value)}")
        return [Table(v, self.source, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def string(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self._get(name, default, default is None)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        if choices and value not in choices:
            raise self.error(name, f"expected one of {', '.join(choices)}; got {value!r}")
        return value

    def strings(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self._get(name, default, default is None)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"expected an array of strings, got {_kind(value)}")
        return list(value)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self._get(name, default, default is None)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_kind(value)}")
        return value

    def number(
        self,
        name: str,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        value = self._get(name, default, default is None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(name, f"expected a finite number, got {value}")
        if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
            op = ">" if exclusive_minimum else ">="
            raise self.error(name, f"expected a number {op} {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"expected a number <= {maximum:g}, got {value:g}")
        return value

    def integer(
        self,
        name: str,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._get(name, default, default is None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"expected an integer <= {maximum}, got {value}")
        return value

    def timestamp(self, name: str, default: int | None = None) -> int:
        """A TOML offset date-time (``2000-01-01T00:00:00Z``) as epoch seconds."""
        value = self._get(name, default, default is None)
        if isinstance(value, int) and not isinstance(value, bool) and value == default:
            return value
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.error(
                name,
                f"expected a date-time with offset such as 2000-01-01T00:00:00Z, got {_kind(value)}",
            )
        return int(value.timestamp())

    def numbers(self, name: str, default: list[float] | None = None) -> list[float]:
        value = self._get(name, default, default is None)
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise self.error(name, f"expected an array of numbers, got {_kind(value)}")
        return [float(v) for v in value]

    def reject_unknown(self) -> None:
        """Fail on keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key" + _suggest(unknown[0], self._used))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, date):
        return f"date-time {value.isoformat()}"
    return type(value).__name__


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
