"""benchmarks/results.json: one flat JSON object; each benchmark merges its own keys."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(figures: dict[str, float]) -> None:
    """Merge figures into results.json (keeps other benchmarks' keys)."""
    current = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current.update({k: round(float(v), 4) for k, v in figures.items()})
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
