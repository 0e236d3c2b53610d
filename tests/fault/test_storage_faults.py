"""Storage faults are named, answered UNAVAILABLE while they last, and heal by themselves
(issue 10, item 9).

Reproducers: a corrupt, truncated or non-database file, or a read-only data dir, made the server
exit with a Python traceback that did not name the file; a full disk answered INTERNAL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.config import EngineConfig
from engine.decide import DecisionEngine
from engine.requests import DecideBatch, EventType
from engine.store.sqlite import SQLiteStore
from tests.conftest import DAY, T0, ServeFactory, purchases

pytestmark = pytest.mark.slow


def _serve_fails(data_dir: Path, *words: str) -> str:
    """`anstoss serve` on this data dir exits with status 2 and a message naming the problem."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--log-level", "warning", "serve", "--port", "0",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in result.stderr, result.stderr[-2000:]
    return result.stderr


def _a_database(path: Path, config: EngineConfig, decisions: int = 3000) -> None:
    engine = DecisionEngine(config, SQLiteStore(path, config.catalog))
    ids = [f"c{i}" for i in range(decisions)]
    engine.report_events(purchases(ids, [T0 - DAY] * decisions, [30.0] * decisions))
    engine.decide(DecideBatch(customer_ids=ids, times=np.full(decisions, T0)))
    engine.close()


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("not a directory")
    _serve_fails(target, str(target), "not a directory")


def test_a_file_that_is_no_database_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "anstoss.db").write_bytes(b"these are not the bytes of a database " * 100)
    _serve_fails(data, str(data / "anstoss.db"), "not a SQLite database")


def test_a_truncated_database_is_named(tmp_path: Path, config: EngineConfig) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "anstoss.db"
    _a_database(db, config)
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.truncate(size // 3)
    _serve_fails(data, str(db), "damaged")


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[None]:
    """The directory cannot be written, also by root (a read-only tmpfs mounted over it)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    staged = directory.parent / (directory.name + ".staged")
    shutil.copytree(directory, staged)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"root cannot make a read-only directory here: {mounted.stderr.decode()}")
    try:
        for item in staged.iterdir():
            shutil.copy2(item, directory / item.name)
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_read_only_data_dir_is_named(tmp_path: Path, config: EngineConfig) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _a_database(data / "anstoss.db", config, decisions=10)
    with _read_only(data):
        _serve_fails(data, str(data), "read-only")


def test_a_full_disk_answers_unavailable_and_recovers_by_itself(serve: ServeFactory) -> None:
    running, client = serve()
    store = running.engine.store
    before = client.decide("early", T0)
    # SQLite's own page limit gives the very error a full disk gives (SQLITE_FULL).
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    failures = []
    for i in range(200):  # until the file would have to grow
        try:
            client.decide(f"c{i}", T0 + i)
            client.event(f"c{i}", T0 + i, EventType.PURCHASE, value=9.0, event_id=f"e{i}")
        except grpc.RpcError as exc:
            failures.append(exc)
            break
    assert failures, "the page limit was never reached"
    error = failures[0]
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert str(store.path) in error.details()
    assert "disk is full" in error.details()
    with pytest.raises(grpc.RpcError) as again:  # still full: still refused, not wedged
        client.decide("while-full", T0 + 500)
    assert again.value.code() == grpc.StatusCode.UNAVAILABLE
    assert client.get_decision(before.decision_id).decision.decision_id  # reads still work
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    after = client.decide("later", T0 + 1000)
    assert client.outcome(before.decision_id, T0 + 1001, value=3.0, outcome_id="after").status
    assert client.get_decision(after.decision_id).decision.customer_id == "later"
    assert client.get_decision(before.decision_id).attributed_value == 3.0
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
