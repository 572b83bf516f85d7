"""Application -> review -> grant, standing grants, revocation, the partner's copy, the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.catalog import Catalog
from node.catalog.partner import file_application, refresh_outgoing
from pcnode.errors import InvalidInput, NotFound, PermissionDenied, QuotaExhausted
from tests.node.catalog.fakes import FakeLedger, FakePeerClient, register

BODY = {"dataset": "residents", "operations": "psi,stats", "columns": "income,district",
        "purpose": "credit scoring", "days": 30}


def test_application_approved_creates_grant_and_ledger_steps(
        catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", {**BODY, "requested_by": "carol"})
    assert app["status"] == "pending" and app["provider"] == "tax" and app["grant"] is None
    assert catalog.list_applications(status="pending")[0]["id"] == app["id"]
    grant = catalog.approve_application(app["id"], user="alice", k=20, quota=5,
                                        psi_modes=["intersection"], epsilon=2.0, reason="ok")
    assert (grant.peer, grant.dataset, grant.operations, grant.columns) == (
        "bank", "residents", ("psi", "stats"), ("income", "district"))
    assert (grant.k, grant.quota, grant.psi_modes, grant.epsilon) == (20, 5, ("intersection",), 2.0)
    assert grant.purpose == "credit scoring" and grant.application_id == app["id"]
    assert (grant.expires_at - grant.not_before).days == 30 and grant.status() == "active"
    assert grant.operator == "alice" and not grant.standing
    status = catalog.application_status("bank", app["id"])
    assert status["status"] == "approved" and status["grant"]["id"] == grant.id
    assert "operator" not in status["grant"]
    assert ledger.events() == ["dataset.registered", "application.filed", "grant.created",
                               "application.approved"]
    filed = ledger.last("application.filed").fields
    assert (filed["peer"], filed["user"], filed["purpose"]) == ("bank", "carol", "credit scoring")
    created = ledger.last("grant.created").fields
    assert created["grant_id"] == grant.id and created["user"] == "alice"
    assert created["extra"]["epsilon"] == "2.0" and created["extra"]["quota"] == 5
    approved = ledger.last("application.approved").fields
    assert approved["extra"]["reason"] == "ok" and approved["grant_id"] == grant.id
    with pytest.raises(InvalidInput, match="approved already"):
        catalog.approve_application(app["id"], user="alice")
    with pytest.raises(InvalidInput, match="approved already"):
        catalog.refuse_application(app["id"], user="alice", reason="late")


def test_refusal_needs_a_reason_and_is_recorded(catalog: Catalog, ledger: FakeLedger,
                                                residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", BODY)
    with pytest.raises(InvalidInput, match="reason"):
        catalog.refuse_application(app["id"], user="alice", reason=" ")
    out = catalog.refuse_application(app["id"], user="alice", reason="purpose too broad")
    assert out["status"] == "refused"
    status = catalog.application_status("bank", app["id"])
    assert status["reason"] == "purpose too broad" and status["grant"] is None
    e = ledger.last("application.refused").fields
    assert (e["user"], e["peer"], e["extra"]["reason"]) == ("alice", "bank", "purpose too broad")


def test_application_status_is_private_to_the_applicant(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", BODY)
    with pytest.raises(NotFound):
        catalog.application_status("insurer", app["id"])


@pytest.mark.parametrize(("change", "text"), [
    ({"dataset": "ghost"}, "no dataset 'ghost'"),
    ({"columns": "income,secret"}, "no column"),
    ({"operations": "psi,export"}, "unknown operation"),
    ({"operations": ""}, "no operations"),
    ({"purpose": ""}, "purpose"),
    ({"days": 0}, "days"),
    ({"days": "ten"}, "days"),
    ({"columns": None}, "columns"),
])
def test_bad_applications(catalog: Catalog, ledger: FakeLedger, residents: Path, change: dict,
                          text: str) -> None:
    register(catalog, residents)
    with pytest.raises((InvalidInput, NotFound), match=text):
        catalog.receive_application("bank", {**BODY, **change})
    assert catalog.list_applications() == [] and ledger.events() == ["dataset.registered"]


def test_bad_approval_limits(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", BODY)
    for kwargs, text in [({"k": 0}, "k must"), ({"quota": 0}, "quota"),
                         ({"psi_modes": ["all"]}, "PSI mode"), ({"epsilon": -1.0}, "epsilon")]:
        with pytest.raises(InvalidInput, match=text):
            catalog.approve_application(app["id"], user="alice", **kwargs)
    assert catalog.get_application(app["id"])["status"] == "pending"


def test_standing_grants_only_for_unconditional(catalog: Catalog, ledger: FakeLedger,
                                                residents: Path) -> None:
    register(catalog, residents, code="open_stats", share="unconditional")
    register(catalog, residents, code="residents", share="conditional")
    g = catalog.create_standing_grant(peer="bank", dataset="open_stats", operations=["stats"],
                                      purpose="public statistics", user="alice")
    assert g.standing and g.quota is None and g.application_id is None
    assert set(g.columns) == {"id", "district", "income", "tax_paid", "si_months"}
    assert catalog.authorize("bank", "open_stats", "stats", ["income"], None).id == g.id
    assert ledger.last("grant.created").fields["extra"]["standing"] is True
    with pytest.raises(PermissionDenied, match="needs an 'unconditional' dataset") as info:
        catalog.create_standing_grant(peer="bank", dataset="residents", operations=["stats"],
                                      purpose="x", user="alice")
    assert info.value.details["rule"] == "share"
    with pytest.raises(InvalidInput, match="peer name"):
        catalog.create_standing_grant(peer="Not A Node", dataset="open_stats",
                                      operations=["stats"], purpose="x", user="alice")


def test_revocation(catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", BODY)
    g = catalog.approve_application(app["id"], user="alice")
    catalog.authorize("bank", "residents", "stats", ["income"], None)
    r = catalog.revoke_grant(g.id, user="alice", reason="misuse suspected")
    assert r.status() == "revoked" and r.revoked_by == "alice"
    with pytest.raises(PermissionDenied, match="rule 'revoked'"):
        catalog.authorize("bank", "residents", "stats", ["income"], None)
    e = ledger.last("grant.revoked").fields
    assert e["grant_id"] == g.id and e["extra"]["reason"] == "misuse suspected"
    with pytest.raises(InvalidInput, match="revoked already"):
        catalog.revoke_grant(g.id, user="alice")
    with pytest.raises(NotFound):
        catalog.revoke_grant("g-nope", user="alice")
    assert [x.id for x in catalog.list_grants(active_only=True)] == []
    assert [x.id for x in catalog.list_grants(peer="bank", dataset="residents")] == [g.id]


def test_public_listing(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents, code="a_none", share="none")
    register(catalog, residents, code="b_cond", share="conditional")
    register(catalog, residents, code="c_open", share="unconditional")
    register(catalog, residents, code="d_gone", share="unconditional")
    catalog.retire_dataset("d_gone", user="alice")
    g = catalog.create_standing_grant(peer="bank", dataset="c_open", operations=["psi"],
                                      purpose="x", user="alice")
    listing = catalog.public_listing("bank")
    assert [d["code"] for d in listing] == ["b_cond", "c_open"]
    text = repr(listing)
    assert "residents.csv" not in text and "r1" not in text and "锦江区" not in text
    assert listing[1]["your_grants"] == [g.id] and listing[0]["your_grants"] == []
    assert {c["name"] for c in listing[0]["columns"]} >= {"id", "income"}
    assert catalog.public_listing("insurer")[1]["your_grants"] == []


def test_partner_side_records_both_steps_in_its_own_ledger(tmp_path: Path, residents: Path
                                                          ) -> None:
    tax_ledger, bank_ledger = FakeLedger(), FakeLedger()
    tax = Catalog(f"sqlite:///{tmp_path / 'tax.db'}", ledger=tax_ledger, node="tax")
    bank = Catalog(f"sqlite:///{tmp_path / 'bank.db'}", ledger=bank_ledger, node="bank")
    register(tax, residents)
    client = FakePeerClient(tax, "bank")
    assert [d["code"] for d in client.list_catalog()] == ["residents"]
    mine = file_application(bank, client, "tax", BODY, user="carol")
    assert mine["status"] == "pending" and mine["peer"] == "tax"
    assert tax.get_application(mine["id"])["requested_by"] == "carol"
    assert refresh_outgoing(bank, lambda _: client, user="carol")[0]["status"] == "pending"
    grant = tax.approve_application(mine["id"], user="alice")
    [after] = refresh_outgoing(bank, lambda _: client, user="carol")
    assert after["status"] == "approved" and after["grant_id"] == grant.id
    assert after["grant"]["columns"] == ["income", "district"]
    assert bank_ledger.events() == ["application.filed", "application.approved"]
    assert bank_ledger.last("application.approved").fields["grant_id"] == grant.id
    assert bank_ledger.last("application.filed").fields["peer"] == "tax"
    refresh_outgoing(bank, lambda _: client, user="carol")  # no new decision, no new entry
    assert len(bank_ledger.events()) == 2
    # an unreachable provider leaves the entry as it was
    app2 = file_application(bank, client, "tax", BODY, user="carol")

    class Down:
        def application_status(self, app_id: str) -> dict:
            from pcnode.errors import PeerUnavailable

            raise PeerUnavailable("tax is down")

    listed = {a["id"]: a for a in refresh_outgoing(bank, lambda _: Down(), user="carol")}
    assert listed[app2["id"]]["refresh_error"] == "tax is down"
    tax.close()
    bank.close()


def test_ledger_failure_rolls_back_the_approval(tmp_path: Path, residents: Path) -> None:
    ledger = FakeLedger(fail_on="application.approved")
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}", ledger=ledger, node="tax")
    register(cat, residents)
    app = cat.receive_application("bank", BODY)
    with pytest.raises(InvalidInput):
        cat.approve_application(app["id"], user="alice")
    assert cat.get_application(app["id"])["status"] == "pending" and cat.list_grants() == []


def test_catalog_without_ledger_refuses_changes(tmp_path: Path, residents: Path) -> None:
    from pcnode.errors import InternalError

    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}", node="tax")
    with pytest.raises(InternalError, match="without a ledger"):
        register(cat, residents)
    assert cat.list_datasets() == []


def test_quota_status_shown(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents)
    app = catalog.receive_application("bank", BODY)
    g = catalog.approve_application(app["id"], user="alice", quota=1)
    catalog.authorize("bank", "residents", "psi", [], "cardinality")
    d = catalog.get_grant(g.id).to_dict()
    assert (d["used"], d["remaining"], d["status"]) == (1, 0, "exhausted")
    with pytest.raises(QuotaExhausted):
        catalog.authorize("bank", "residents", "psi", [], "cardinality")


def test_tokens(catalog: Catalog) -> None:
    from pcnode.errors import AuthenticationError

    info, secret = catalog.create_token("regulator", user="root", name="auditor-1")
    assert info.role == "regulator" and info.name == "auditor-1"
    assert catalog.verify_token(secret) == info
    listed = catalog.list_tokens()
    assert secret not in repr(listed) and listed[0]["role"] == "regulator"
    for bad in ["", "pcn_x_y", secret + "x", "Bearer " + secret]:
        with pytest.raises(AuthenticationError):
            catalog.verify_token(bad)
    catalog.revoke_token(info.id, user="root")
    with pytest.raises(AuthenticationError, match="revoked"):
        catalog.verify_token(secret)
    with pytest.raises(InvalidInput, match="invalid role"):
        catalog.create_token("admin", user="root")
    # only the hash is stored
    from sqlalchemy import select

    from node.catalog.store import tokens
    with catalog.store.read() as conn:
        stored = conn.execute(select(tokens.c.token_hash)).scalars().all()
    assert secret not in stored and len(stored[0]) == 64
