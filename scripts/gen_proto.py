"""Regenerate node/transport/generated/ from proto/ (run via `make proto`).

The generated modules are committed; tests/node/test_proto_fresh.py fails when
they are stale. Imports are rewritten to be package-relative so the generated
code lives inside ``node``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT = ROOT / "node" / "transport" / "generated"


def generate(out: Path = OUT) -> list[Path]:
    """Run protoc for every .proto under proto/ into ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *protos])
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    written = []
    for py in out.rglob("*_pb2*.py"):
        text = py.read_text()
        # Make "from pcnode.v1 import node_pb2" relative to the generated package.
        text = re.sub(r"^from pcnode\.v1 import", "from . import", text, flags=re.M)
        py.write_text(text)
        written.append(py)
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
