"""The committed generated gRPC code matches proto/ (run `make proto` if this fails)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path):
    gen = _load_generator()
    gen.generate(tmp_path)
    committed = REPO / "node" / "transport" / "generated"
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.py")}
    current = {p.relative_to(committed): p.read_text() for p in committed.rglob("*.py")}
    assert fresh.keys() == current.keys(), "generated file set differs: run `make proto`"
    stale = [str(k) for k in fresh if fresh[k] != current[k]]
    assert not stale, f"stale generated code {stale}: run `make proto` and commit"
