"""A user's mistake on the `anstoss` command line: one clear line naming the thing, exit status 2,
never a traceback. Every case runs the real command in a subprocess."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import DEFAULT_LOG_LEVEL, build_parser
from engine.server.client import DecisionClient
from tests.conftest import T0
from tests.fault.serve_process import REPO, start_serve

ANSTOSS = [sys.executable, "-m", "cli.main"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only keeps a regression (a server that starts instead of failing) from
    # hanging the suite; nothing here depends on how fast the command is.
    return subprocess.run(
        [*ANSTOSS, *args], capture_output=True, text=True, check=False, cwd=REPO, timeout=120
    )


def _usage_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """An argparse error: usage, then one line `anstoss ...: error: argument --x: ...`."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error: argument" in last, result.stderr
    for text in expected:
        assert text in last, last
    return last


def _one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A runtime error with --log-level error: stderr is exactly one line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# Numbers: refused while parsing.


@pytest.mark.parametrize(
    ("args", "option", "value"),
    [
        (["simulate", "--customers", "0"], "--customers", "0"),
        (["simulate", "--customers", "-5"], "--customers", "-5"),
        (["simulate", "--customers", "many"], "--customers", "'many'"),
        (["simulate", "--days", "0"], "--days", "0"),
        (["simulate", "--days", "-1"], "--days", "-1"),
        (["simulate", "--seed", "-1"], "--seed", "-1"),
        (["serve", "--port", "70000"], "--port", "70000"),
        (["serve", "--port", "-1"], "--port", "-1"),
        (["serve", "--workers", "0"], "--workers", "0"),
        (["simulate", "calibrate", "--transactions", "t.csv", "--out", "o",
          "--calibration-weeks", "0"], "--calibration-weeks", "0"),
    ],
)  # fmt: skip
def test_an_impossible_number_is_refused_while_parsing(
    tmp_path: Path, args: list[str], option: str, value: str
) -> None:
    if args[0] == "serve":  # should it start after all, not in the repo's data dir
        args = [*args, "--data-dir", str(tmp_path / "d")]
    _usage_error(_run(*args), f"argument {option}:", value)


# Paths a command writes to: checked before any work starts.


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


def test_simulate_out_that_is_a_file_fails_before_simulating(a_file: Path) -> None:
    # The default size would simulate 10,000 customers for a year first: nothing is printed.
    result = _run("--log-level", "error", "simulate", "--out", str(a_file), "--quiet")
    _one_line_error(result, "anstoss simulate:", f"--out {a_file}", "not a directory")
    assert result.stdout == ""


def test_simulate_out_below_a_file_is_a_clear_error(a_file: Path) -> None:
    result = _run("--log-level", "error", "simulate", "--out", str(a_file / "run"), "--quiet")
    _one_line_error(result, f"--out {a_file / 'run'}", "is a file")


def test_calibrate_out_that_is_a_file_is_a_clear_error(a_file: Path, tmp_path: Path) -> None:
    from tests.unit.test_calibration import write_log

    write_log(tmp_path / "purchases.txt", customers=200, weeks=10, seed=5)
    result = _run(
        "--log-level", "error", "simulate", "calibrate",
        "--transactions", str(tmp_path / "purchases.txt"), "--calibration-weeks", "5",
        "--columns", "customer=1,date=2,amount=4", "--out", str(a_file), "--quiet",
    )  # fmt: skip
    _one_line_error(result, "anstoss simulate calibrate:", f"--out {a_file}", "not a directory")


def test_demo_out_that_is_a_file_is_a_clear_error(a_file: Path) -> None:
    _one_line_error(
        _run("--log-level", "error", "demo", "--out", str(a_file)), f"--out {a_file}", "a file"
    )


def test_demo_never_removes_a_file_where_its_data_dir_goes(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("someone's file\n")
    result = _run("--log-level", "error", "demo", "--out", str(tmp_path))
    _one_line_error(result, str(tmp_path / "data"), "not a directory")
    assert (tmp_path / "data").read_text() == "someone's file\n"


def test_serve_data_dir_that_is_a_file_is_a_clear_error(a_file: Path) -> None:
    result = _run("--log-level", "error", "serve", "--port", "0", "--data-dir", str(a_file))
    _one_line_error(result, "anstoss serve:", str(a_file), "not a directory")


@pytest.mark.parametrize("where", ["below a file", "a directory"])
def test_serve_port_file_it_cannot_write_is_a_clear_error(
    a_file: Path, tmp_path: Path, where: str
) -> None:
    port_file = a_file / "port" if where == "below a file" else tmp_path
    result = _run(
        "--log-level", "error", "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
        "--port-file", str(port_file),
    )  # fmt: skip
    _one_line_error(result, "anstoss serve:", f"--port-file {port_file}")


# Model files.


@pytest.mark.parametrize("kind", ["missing", "a directory", "not a model"])
def test_serve_model_it_cannot_use_names_the_file(tmp_path: Path, kind: str) -> None:
    model = tmp_path / "model.vw"
    if kind == "a directory":
        model.mkdir()
    elif kind == "not a model":
        model.write_bytes(b"these bytes are no Vowpal Wabbit model\n" * 4)
    result = _run(
        "--log-level", "error", "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
        "--model", str(model),
    )  # fmt: skip
    _one_line_error(result, f"anstoss serve: {model}: ")


# --via: fail fast when nobody answers.


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A loopback port that is bound but never listens: connections are refused, and no other
    process can take the port while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_simulate_via_a_dead_address_names_it_and_says_what_to_start(dead_address: str) -> None:
    result = _run(
        "--log-level", "error", "simulate", "--via", dead_address, "--customers", "5",
        "--days", "2", "--quiet",
    )  # fmt: skip
    _one_line_error(result, "anstoss simulate:", dead_address, "anstoss serve --replay")
    assert result.stdout == ""


def test_simulate_via_a_running_server_still_runs(tmp_path: Path) -> None:
    process, port = start_serve(tmp_path / "d", tmp_path / "port")
    try:
        result = _run(
            "simulate", "--via", f"127.0.0.1:{port}", "--policy", "experiment",
            "--customers", "20", "--days", "5", "--quiet",
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "net value per customer" in result.stdout


# --log-level: before or after the subcommand, one default.


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["simulate"],
        ["simulate", "calibrate", "--transactions", "t", "--calibration-weeks", "1", "--out", "o"],
        ["demo"],
    ],
)
def test_log_level_is_taken_before_and_after_the_subcommand(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).log_level == DEFAULT_LOG_LEVEL
    assert parser.parse_args(["--log-level", "debug", *argv]).log_level == "debug"
    assert parser.parse_args([*argv, "--log-level", "debug"]).log_level == "debug"
    # The later one wins, as with any repeated option.
    after = [*argv, "--log-level", "error"]
    assert parser.parse_args(["--log-level", "debug", *after]).log_level == "error"


def _serve_log(tmp_path: Path, before: list[str], after: list[str]) -> str:
    """Start `anstoss [before] serve [after]`, wait until it serves, stop it, return stderr."""
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [*ANSTOSS, *before, "serve", *after, "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


@pytest.mark.parametrize("position", ["before", "after"])
def test_serve_log_level_works_after_the_subcommand_as_before_it(
    tmp_path: Path, position: str
) -> None:
    option = ["--log-level", "warning"]
    before, after = (option, []) if position == "before" else ([], option)
    err = _serve_log(tmp_path, before, after)
    assert " INFO " not in err, err


def test_serve_logs_info_by_default(tmp_path: Path) -> None:
    assert " INFO anstoss.server serving anstoss.v1.DecisionService" in _serve_log(tmp_path, [], [])


# Signals.


def test_sighup_without_a_model_leaves_the_server_serving(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process, port = start_serve(tmp_path / "d", tmp_path / "port", log_level="info", stderr=log)
    try:
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "SIGHUP ignored" not in log.read_text():  # the handler ran
            assert process.poll() is None, f"SIGHUP ended the server:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert process.poll() is None
        with DecisionClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_ready(10)
            assert client.decide("after-sighup", T0).decision_id
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
