"""Imports point one way: engine imports nothing of ours; simulator and training never import
each other; serving never loads MLflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = {
    "engine": {"simulator", "training", "cli"},
    "simulator": {"training", "cli"},
    "training": {"simulator", "cli"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_packages_import_only_downwards() -> None:
    offenders = []
    for package, forbidden in RULES.items():
        for path in (ROOT / package).rglob("*.py"):
            bad = _imports(path) & forbidden
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_serving_does_not_load_mlflow_simulator_or_training() -> None:
    code = (
        "import sys, engine, engine.server.app, cli.main; "
        "cli.main.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'mlflow', 'simulator', 'training', 'scipy'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
