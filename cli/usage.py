"""Checks of what the user asked for, so a mistake reads as one line and exit status 2.

Numbers are checked while parsing (argparse types: the usage and the option in the message);
paths to write to and the server of `--via` before any work starts (`UsageError`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


class UsageError(Exception):
    """An argument the command cannot use (a file where a directory belongs, a dead --via)."""


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def output_dir(path: str | Path, option: str) -> Path:
    """The directory `path` (created if missing), or a UsageError naming it and the option."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{option} {path}: is a file, not a directory") from None
    except NotADirectoryError:
        raise UsageError(f"{option} {path}: part of the path is a file, not a directory") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create the directory: {exc.strerror}") from None
    return path


def output_file(path: str | Path, option: str) -> Path:
    """`path` as a file to write: its directory must exist, and it must not be a directory."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, not a file")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: {path.parent} is not a directory")
    return path


def reachable(target: str, timeout: float = 3.0) -> None:
    """Fail fast, naming `target`, when no gRPC server answers there within `timeout` s."""
    import grpc

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise UsageError(
            f"--via {target}: no server answers there (within {timeout:g} s); start one with"
            " `anstoss serve --replay` and pass its host:port"
        ) from None
    finally:
        channel.close()
