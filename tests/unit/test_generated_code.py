"""The committed protobuf/gRPC code and type stubs match proto/ (regenerate: `make proto`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "engine" / "server" / "_generated"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in written}
    committed = {
        p.relative_to(COMMITTED): p.read_text()
        for p in COMMITTED.rglob("*")
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }
    assert sorted(fresh) == sorted(committed), "generated files differ: run `make proto`"
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert stale == [], f"stale generated code, run `make proto`: {stale}"
    assert any(name.suffix == ".pyi" for name in fresh)  # type stubs are part of it
