"""A channel system in another language keeps to the contract: Node.js against a real server.

tests/interop/node_client/contract.mjs knows nothing of this repository but
proto/anstoss/v1/decision.proto: it loads the .proto with @grpc/proto-loader, drives a server
on loopback and prints one JSON line per check. Each scenario runs as its own test against its
own fresh server, so one broken promise does not hide the others.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ServeFactory

NODE_CLIENT = Path(__file__).resolve().parent / "node_client"
# The lock's hash, written once `npm ci` succeeded; inside node_modules, which `npm ci` removes.
STAMP = NODE_CLIENT / "node_modules" / ".anstoss-installed"
INSTALL_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0

# The scenarios of contract.mjs, in its order (test_the_script_runs_these_scenarios checks).
SCENARIOS = [
    "a.get_catalog",
    "b.request_ids",
    "c.deferred_activation",
    "d.delivery_checks",
    "e.event_ids",
    "f.unsubscribes",
    "g.decide_stream",
    "h.bad_input",
    "i.reflection",
]


def _lock_hash() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_CLIENT / name).read_bytes())
    return digest.hexdigest()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: the interop test needs Node.js (>= 18) and npm "
            "(e.g. apt-get install nodejs npm)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the client's locked packages installed (once per lock)."""
    node = _tool("node")
    npm = _tool("npm")
    wanted = _lock_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return node
    # --ignore-scripts: the two packages are plain JavaScript and need no install step.
    command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        done = subprocess.run(
            command,
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took over {INSTALL_TIMEOUT:.0f} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` in {NODE_CLIENT} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    STAMP.write_text(wanted + "\n")
    return node


def _run(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [node, "contract.mjs", *args],
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"node contract.mjs {' '.join(args)} took over {RUN_TIMEOUT:.0f} s:\n{out}")


def test_the_script_runs_these_scenarios(node: str) -> None:
    listed = _run(node, "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_node_channel_system_gets_what_the_proto_promises(
    scenario: str, node: str, serve: ServeFactory
) -> None:
    # The chain decides deterministically: a contact on day 1 after the first purchase.
    running, _ = serve(policy="chain")
    done = _run(node, f"127.0.0.1:{running.port}", scenario)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    failed = [line for line in lines if not line.get("ok")]
    if done.returncode != 0 or failed:
        first = json.dumps(failed[0]) if failed else "no failed check printed"
        # This scenario's lines (a's catalog checks are left out unless they failed), stderr.
        printed = "\n".join(json.dumps(line) for line in lines if line["scenario"] == scenario)
        pytest.fail(
            f"node contract.mjs exited {done.returncode}: {first}\n"
            f"{printed}\nstderr:\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    ran = {line["scenario"] for line in lines}
    assert {scenario, "summary"} <= ran, done.stdout
