"""The catalog CLI end to end on two real node homes (real ledger; the peer link is faked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node.cli import catalog_cmds, output
from node.cli.main import main
from node.services import NodeServices
from tests.federation import make_federation
from tests.node.catalog.fakes import FakePeerClient, residents_csv

META = """
classification = "社会保障"
provider = "Chengdu Tax Bureau"
summary = "residents"
update_cycle = "monthly"

[[columns]]
name = "si_months"
type = "integer"
description = "social-insurance months"
"""


@pytest.fixture
def fed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    f = make_federation(tmp_path, ["tax", "bank"])
    opened: list[NodeServices] = []

    def open_services(home: str) -> NodeServices:
        svc = NodeServices(home, user="tester")
        others = {n: h for n, h in f.homes.items() if Path(h).resolve() != Path(home).resolve()}

        def peer(name: str) -> FakePeerClient:
            other = NodeServices(others[name], user="remote")
            opened.append(other)
            return FakePeerClient(other.catalog, svc.name)

        svc.peer = peer  # type: ignore[method-assign]
        opened.append(svc)
        return svc

    monkeypatch.setattr(catalog_cmds, "open_services", open_services)
    monkeypatch.setattr(output.console, "width", 250)
    csv = residents_csv(tmp_path / "residents.csv")
    meta = tmp_path / "meta.toml"
    meta.write_text(META, encoding="utf-8")
    yield {"tax": str(f.homes["tax"]), "bank": str(f.homes["bank"]), "csv": str(csv),
           "meta": str(meta), "tmp": tmp_path}
    for svc in opened:
        svc.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> Any:
    """Run pcnode; return parsed JSON (with --json) or the text; check the exit code."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    if ok:
        assert code == 0, err
        return json.loads(out) if "--json" in argv else out
    assert code == 1 and out == "", (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def events(home: str) -> list[tuple[str, dict[str, Any]]]:
    svc = NodeServices(home)
    try:
        return [(e.event, e.to_dict()) for e in svc.ledger.entries()]
    finally:
        svc.close()


def register(capsys: pytest.CaptureFixture[str], fed: dict[str, Any], *extra: str,
             ok: bool = True) -> Any:
    args = ["dataset", "register", fed["tax"], "--code", "residents", "--name", "居民",
            "--file", fed["csv"], "--key", "id", "--level", "L3", "--share", "conditional"]
    return run(capsys, *args, *extra, ok=ok)


def test_demo_flow(fed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    tax, bank = fed["tax"], fed["bank"]
    d = register(capsys, fed, "--meta", fed["meta"], "--reason", "initial", "--json")
    assert d["meta"]["provider"] == "Chengdu Tax Bureau" and d["profile"]["rows"] == 6
    assert "registered residents2 v1: 6 rows" in register(
        capsys, fed, "--code", "residents2")
    listed = run(capsys, "dataset", "list", tax, "--json")
    assert [x["code"] for x in listed] == ["residents", "residents2"]
    shown = run(capsys, "dataset", "show", tax, "residents")
    for text in ("quality profile", "si_months", "social-insurance months", "Chengdu",
                 "83.33%", "type failures"):
        assert text in shown
    assert run(capsys, "dataset", "show", tax, "residents", "--check", "--json")["state"] == \
        "active"
    # partner browses and applies
    cat = run(capsys, "catalog", bank, "--peer", "tax", "--json")
    assert [x["code"] for x in cat] == ["residents", "residents2"]
    assert "residents" in run(capsys, "catalog", bank, "--peer", "tax")
    app = run(capsys, "apply", bank, "--peer", "tax", "--dataset", "residents", "--ops",
              "psi,stats", "--columns", "income,district", "--purpose", "credit scoring",
              "--days", "30", "--json")
    assert app["status"] == "pending"
    # provider reviews
    pending = run(capsys, "applications", tax, "--json")
    assert [a["id"] for a in pending] == [app["id"]] and pending[0]["requested_by"] == "tester"
    assert app["id"] in run(capsys, "applications", tax)
    grant = run(capsys, "approve", tax, app["id"], "--k", "15", "--quota", "5", "--psi-modes",
                "intersection,cardinality", "--epsilon", "1.5", "--reason", "ok", "--json")
    assert grant["psi_modes"] == ["intersection", "cardinality"] and grant["epsilon"] == 1.5
    out = run(capsys, "applications", bank, "--outgoing", "--json")
    assert out[0]["status"] == "approved" and out[0]["grant_id"] == grant["id"]
    assert "approved" in run(capsys, "applications", bank, "--outgoing", "--no-refresh")
    assert [g["id"] for g in run(capsys, "grants", tax, "--json")] == [grant["id"]]
    assert grant["id"] in run(capsys, "grants", tax)
    # enforcement on the provider, as the job code will call it
    svc = NodeServices(tax)
    svc.catalog.authorize("bank", "residents", "psi", [], "intersection")
    with pytest.raises(Exception, match="rule 'columns'"):
        svc.catalog.authorize("bank", "residents", "stats", ["tax_paid"], None)
    svc.close()
    revoked = run(capsys, "revoke", tax, grant["id"], "--reason", "pilot over", "--json")
    assert revoked["status"] == "revoked"
    # a second application, refused
    app2 = run(capsys, "apply", bank, "--peer", "tax", "--dataset", "residents", "--ops", "fl",
               "--columns", "income", "--purpose", "model", "--days", "10", "--json")
    assert "refused" in run(capsys, "refuse", tax, app2["id"], "--reason", "too broad")
    assert run(capsys, "applications", tax, "--status", "refused", "--json")[0]["id"] == app2["id"]
    assert [a["status"] for a in run(capsys, "applications", bank, "--outgoing", "--json")] == \
        ["refused", "approved"]
    # retire
    assert run(capsys, "dataset", "retire", tax, "residents2", "--json")["state"] == "retired"
    # both ledgers, with the acting user and reasons (the real ledger accepted every entry)
    tax_events = events(tax)
    assert [e for e, _ in tax_events] == [
        "dataset.registered", "dataset.registered", "application.filed", "grant.created",
        "application.approved", "grant.revoked", "application.filed", "application.refused",
        "dataset.retired"]
    created = dict(tax_events)["grant.created"]
    assert created["user"] == "tester" and created["authorised_by"] == "tester"
    assert created["extra"]["epsilon"] == "1.5"
    assert dict(tax_events)["grant.revoked"]["extra"]["reason"] == "pilot over"
    assert [e for e, _ in events(bank)] == ["application.filed", "application.approved",
                                            "application.filed", "application.refused"]


def test_errors_are_one_line(fed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown key column 'nope'" in register(capsys, fed, "--key", "nope", ok=False)
    assert "invalid level 'L9'" in register(capsys, fed, "--level", "L9", ok=False)
    assert "invalid share value" in register(capsys, fed, "--share", "maybe", ok=False)
    bad = Path(fed["tmp"]) / "bad.csv"
    bad.write_bytes(b"id,a\n1,2\n3\n")
    assert "Expected 2 columns, got 1" in register(capsys, fed, "--file", str(bad), ok=False)
    assert run(capsys, "dataset", "list", fed["tax"], "--json") == []
    register(capsys, fed)
    assert "registered already" in register(capsys, fed, ok=False)
    err = register(capsys, fed, "--json", ok=False)
    assert json.loads(err)["error"] == "AlreadyExists"
    assert "no dataset 'ghost'" in run(capsys, "dataset", "show", fed["tax"], "ghost", ok=False)
    assert "no application" in run(capsys, "approve", fed["tax"], "a-ghost", ok=False)
    assert "no grant" in run(capsys, "revoke", fed["tax"], "g-ghost", ok=False)
    assert "no peer named 'nobody'" in run(capsys, "catalog", fed["bank"], "--peer", "nobody",
                                           ok=False)
    err = run(capsys, "grant", fed["tax"], "--standing", "--peer", "bank", "--dataset",
              "residents", "--ops", "stats", "--purpose", "x", ok=False)
    assert "rule 'share'" in err
    assert [e for e, _ in events(fed["tax"])] == ["dataset.registered"]


def test_standing_grant_and_tokens(fed: dict[str, Any], capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    register(capsys, fed, "--share", "unconditional")
    g = run(capsys, "grant", fed["tax"], "--standing", "--peer", "bank", "--dataset",
            "residents", "--ops", "stats,psi", "--columns", "income", "--purpose", "open stats",
            "--json")
    assert g["standing"] and g["quota"] is None and g["columns"] == ["income"]
    assert "created standing grant" in run(
        capsys, "grant", fed["tax"], "--standing", "--peer", "bank", "--dataset", "residents",
        "--ops", "stats", "--purpose", "more")
    tok = run(capsys, "token", "create", fed["tax"], "--role", "regulator", "--name", "auditor",
              "--json")
    assert tok["token"].startswith("pcn_") and tok["role"] == "regulator"
    svc = NodeServices(fed["tax"])
    assert svc.catalog.verify_token(tok["token"]).name == "auditor"
    svc.close()
    text = run(capsys, "token", "create", fed["tax"], "--role", "partner")
    assert "shown only now" in text
    listed = run(capsys, "token", "list", fed["tax"], "--json")
    assert [t["role"] for t in listed] == ["regulator", "partner"]
    assert tok["token"] not in json.dumps(listed)
    assert "revoked token" in run(capsys, "token", "revoke", fed["tax"], tok["id"])
    assert "no active token" in run(capsys, "token", "revoke", fed["tax"], tok["id"], ok=False)
