"""Generate the Python gRPC code and type stubs from proto/ into a package directory.

Used by `make proto` (into engine/server/_generated) and by the test that checks the committed
code still matches the .proto (into a temporary directory).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTOS = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
PACKAGE = "engine.server._generated"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with mypy-protobuf stubs; rewrite imports to the package path."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins sit beside the interpreter
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = []
    for path in sorted(out_dir.rglob("*.py*")):
        text = path.read_text()
        # protoc emits absolute imports rooted at the proto path ("from anstoss.v1 import ...");
        # the code lives inside our package, so root them there.
        fixed = re.sub(r"^from anstoss\.", f"from {PACKAGE}.anstoss.", text, flags=re.M)
        fixed = re.sub(r"^import anstoss\.", f"import {PACKAGE}.anstoss.", fixed, flags=re.M)
        path.write_text(fixed)
        written.append(path)
    for directory in {p.parent for p in written} | {out_dir}:
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text("")
            written.append(init)
    return written


if __name__ == "__main__":
    target = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT.parent / "engine/server/_generated"
    )
    for path in generate(target):
        print(path)
