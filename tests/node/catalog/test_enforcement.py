"""The rule table: for each enforcement rule one allowed and one denied call; expiry, revocation,
quota exhaustion, epsilon budget, and 'none' is never grantable."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.catalog import RULES, Catalog, Grant
from pcnode.errors import PermissionDenied, QuotaExhausted
from tests.node.catalog.fakes import FakeLedger, register

APPLY = {"dataset": "residents", "operations": ["psi", "stats"], "columns": ["income", "district"],
         "purpose": "credit scoring", "days": 30, "requested_by": "carol"}


def grant_for(cat: Catalog, peer: str = "bank", **approve: Any) -> Grant:
    app = cat.receive_application(peer, dict(APPLY))
    return cat.approve_application(app["id"], user="alice", **approve)


@pytest.fixture
def granted(catalog: Catalog, residents: Path) -> tuple[Catalog, Grant]:
    register(catalog, residents)
    return catalog, grant_for(catalog, psi_modes=["cardinality", "intersection"])


def call(cat: Catalog, **over: Any) -> Grant:
    args: dict[str, Any] = {"peer": "bank", "dataset": "residents", "operation": "stats",
                            "columns": ["income"], "mode": None}
    args.update(over)
    return cat.authorize(**args)


def _retire(cat: Catalog, residents: Path) -> None:
    cat.retire_dataset("residents", user="alice")


def _touch_source(cat: Catalog, residents: Path) -> None:
    with residents.open("a", encoding="utf-8") as fh:
        fh.write("r9,x,1,1,1\n")


def _reshare_none(cat: Catalog, residents: Path) -> None:
    register(cat, residents, share="none", replace=True)


def _revoke(cat: Catalog, residents: Path) -> None:
    for g in cat.list_grants():
        cat.revoke_grant(g.id, user="alice", reason="test")


LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
EARLIER = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

#: rule -> (extra authorize arguments for the denied call, setup before it, expected text)
DENIALS: dict[str, tuple[dict[str, Any], Callable[[Catalog, Path], None] | None, str]] = {
    "peer": ({"peer": "tax"}, None, "cannot call itself"),
    "dataset": ({}, _retire, "not in the catalog"),
    "stale": ({}, _touch_source, "changed at the source"),
    "share": ({}, _reshare_none, "shared as 'none'"),
    "grant": ({"peer": "insurer"}, None, "holds no grant"),
    "operation": ({"operation": "fl"}, None, "operation 'fl' is not in grant"),
    "columns": ({"columns": ["income", "tax_paid"]}, None,
                "column 'tax_paid' is not in grant g-"),
    "mode": ({"operation": "psi", "columns": [], "mode": "both"}, None,
             "PSI mode 'both' is not allowed"),
    "time": ({"now": LATER}, None, "expired"),
    "revoked": ({}, _revoke, "was revoked"),
    "quota": ({}, None, "used all 2 calls"),
}


def test_the_table_covers_every_rule() -> None:
    assert set(DENIALS) == set(RULES)


@pytest.mark.parametrize("rule", RULES)
def test_rule_allows_then_denies(catalog: Catalog, residents: Path, rule: str) -> None:
    register(catalog, residents)
    grant = grant_for(catalog, psi_modes=["cardinality", "intersection"], quota=2)
    # allowed: a call that passes this rule (and all others)
    allowed = {"mode": {"operation": "psi", "columns": ["id"], "mode": "cardinality"},
               "columns": {"columns": ["income", "district"]},
               "operation": {"operation": "psi", "columns": []},
               "time": {"now": dt.datetime.now(dt.UTC) + dt.timedelta(days=29)}}.get(rule, {})
    g = call(catalog, **allowed)
    assert g.id == grant.id and g.used == 1
    if rule == "quota":
        call(catalog)
    extra, setup, text = DENIALS[rule]
    if setup is not None:
        setup(catalog, residents)
    with pytest.raises(PermissionDenied) as info:
        call(catalog, **extra)
    err = info.value
    assert err.details["rule"] == rule
    assert str(err).startswith(f"denied by rule '{rule}': ")
    assert text in str(err)
    assert isinstance(err, QuotaExhausted) == (rule == "quota")


def test_columns_message_names_granted_columns(granted: tuple[Catalog, Grant]) -> None:
    cat, grant = granted
    with pytest.raises(PermissionDenied) as info:
        call(cat, columns=["tax_paid"])
    assert str(info.value) == (f"denied by rule 'columns': column 'tax_paid' is not in grant "
                               f"{grant.id} (granted: income, district) (apply for a grant that "
                               "includes this column)")


def test_key_column_is_implicit_for_psi_only(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    call(cat, operation="psi", columns=["id"], mode="intersection")
    with pytest.raises(PermissionDenied, match="rule 'columns'"):
        call(cat, operation="stats", columns=["id"])


def test_not_yet_valid(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    with pytest.raises(PermissionDenied, match="not valid before") as info:
        call(cat, now=EARLIER)
    assert info.value.details["rule"] == "time"


def test_naive_now_is_utc(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    naive = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert call(cat, now=naive).used == 1
    with pytest.raises(PermissionDenied, match="expired"):
        call(cat, now=naive + dt.timedelta(days=31))


def test_unknown_operation_and_mode(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    with pytest.raises(PermissionDenied, match="unknown operation"):
        call(cat, operation="export")
    with pytest.raises(PermissionDenied, match="unknown PSI mode"):
        call(cat, operation="psi", columns=[], mode="everything")


def test_bad_peer_identity(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    for peer in ["", "Bank With Spaces", None]:
        with pytest.raises(PermissionDenied) as info:
            call(cat, peer=peer)
        assert info.value.details["rule"] == "peer"


def test_unknown_dataset(granted: tuple[Catalog, Grant]) -> None:
    cat, _ = granted
    with pytest.raises(PermissionDenied, match="rule 'dataset'"):
        call(cat, dataset="ghost")


def test_quota_exhaustion_and_a_second_grant(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents)
    g1 = grant_for(catalog, quota=1)
    assert call(catalog).id == g1.id
    with pytest.raises(QuotaExhausted):
        call(catalog)
    assert catalog.get_grant(g1.id).status() == "exhausted"
    g2 = grant_for(catalog, quota=1)
    assert call(catalog).id == g2.id


def test_most_specific_denial_across_grants(catalog: Catalog, residents: Path) -> None:
    register(catalog, residents)
    g1 = grant_for(catalog)  # income, district
    catalog.revoke_grant(g1.id, user="alice")
    app = catalog.receive_application("bank", {**APPLY, "columns": ["income"]})
    g2 = catalog.approve_application(app["id"], user="alice")
    assert call(catalog, columns=["income"]).id == g2.id
    # g2 fails at 'columns'; revoked g1 gets further (fails at 'revoked'): that is reported
    with pytest.raises(PermissionDenied, match="rule 'revoked'") as info:
        call(catalog, columns=["district"])
    assert info.value.details["grant_id"] == g1.id


def test_quota_is_consumed_atomically_under_concurrency(catalog_url: str, residents: Path) -> None:
    url = catalog_url
    cat = Catalog(url, ledger=FakeLedger(), node="tax")
    register(cat, residents)
    grant = grant_for(cat, quota=10)
    results: list[str] = []

    def worker() -> None:
        other = Catalog(url, ledger=FakeLedger(), node="tax")
        for _ in range(5):
            try:
                call(other)
                results.append("ok")
            except QuotaExhausted:
                results.append("quota")
        other.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 10 and results.count("quota") == 10
    assert cat.get_grant(grant.id).used == 10
    cat.close()


def test_epsilon_budget(catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents)
    grant = grant_for(catalog, epsilon=1.0)
    g = catalog.spend_epsilon(grant.id, 0.4, "job-1")
    assert g.epsilon_spent == pytest.approx(0.4)
    catalog.spend_epsilon(grant.id, 0.6, "job-2")
    with pytest.raises(QuotaExhausted, match="rule 'epsilon'") as info:
        catalog.spend_epsilon(grant.id, 0.01, "job-3")
    assert info.value.details["rule"] == "epsilon"
    spent = [e for e in ledger.entries_ if e.event == "budget.spent"]
    assert [e.fields["job_id"] for e in spent] == ["job-1", "job-2"]
    assert spent[0].fields["grant_id"] == grant.id and spent[0].fields["extra"]["epsilon"] == "0.4"
    unbudgeted = grant_for(catalog)
    catalog.spend_epsilon(unbudgeted.id, 100.0, "job-4")  # no budget: recorded, never exhausted
    catalog.revoke_grant(grant.id, user="alice")
    with pytest.raises(PermissionDenied, match="revoked"):
        catalog.spend_epsilon(grant.id, 0.1, "job-5")


def test_none_can_never_be_granted(catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents, share="none")
    # invisible to peers, so no application can even be filed
    from pcnode.errors import NotFound

    with pytest.raises(NotFound):
        catalog.receive_application("bank", dict(APPLY))
    assert catalog.public_listing("bank") == []
    with pytest.raises(PermissionDenied, match="rule 'share'"):
        catalog.create_standing_grant(peer="bank", dataset="residents", operations=["psi"],
                                      purpose="x", user="alice")
    # an application filed while conditional cannot be approved after it became 'none'
    register(catalog, residents, share="conditional", replace=True)
    app = catalog.receive_application("bank", dict(APPLY))
    register(catalog, residents, share="none", replace=True)
    with pytest.raises(PermissionDenied, match="can never be granted"):
        catalog.approve_application(app["id"], user="alice")
    assert catalog.list_grants() == []
    assert catalog.get_application(app["id"])["status"] == "pending"
    assert "grant.created" not in ledger.events()
