"""The `anstoss` command: help texts, `serve` as a process, clear errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.server.client import DecisionClient
from tests.conftest import T0

ANSTOSS = [sys.executable, "-m", "cli.main"]


def test_help_lists_the_commands() -> None:
    out = subprocess.run([*ANSTOSS, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "demo"):
        assert command in out
    serve = subprocess.run([*ANSTOSS, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--port", "--data-dir", "--config", "--model"):
        assert option in serve


def test_serve_runs_until_sigterm_and_checkpoints(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [*ANSTOSS, "serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--port-file", str(port_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with DecisionClient(f"127.0.0.1:{port_file.read_text()}") as client:
            client.wait_ready()
            assert client.decide("c", T0).decision_id
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "serving on 127.0.0.1" in out
    assert (tmp_path / "d" / "anstoss.db").exists()


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[bandit]\nepsilon = 2\n")
    result = subprocess.run(
        [*ANSTOSS, "serve", "--config", str(config), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{config}: bandit.epsilon: expected a number <= 1, got 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_model_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ANSTOSS, "serve", "--model", str(tmp_path / "missing.vw"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "missing.vw: cannot read model" in result.stderr
