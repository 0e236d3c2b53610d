"""`anstoss serve` as a separate process, for the tests that kill, signal or starve it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_serve(
    data_dir: Path,
    port_file: Path,
    log_level: str = "warning",
    stderr: Path | int | None = None,
    timeout: float = 60.0,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free port and wait for its port file. `stderr`: a log file to
    append to (its tail is shown if the server dies during start), subprocess.PIPE, or None."""
    port_file.unlink(missing_ok=True)
    log = stderr if isinstance(stderr, Path) else None
    err = log.open("ab") if log is not None else stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", log_level, "serve", "--port", "0",
         "--data-dir", str(data_dir), "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
    )  # fmt: skip
    if log is not None:
        err.close()  # type: ignore[union-attr]  # the child has its own copy
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        assert process.poll() is None, f"server exited during start{_tail(log)}"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return process, int(port_file.read_text())


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "; server log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
