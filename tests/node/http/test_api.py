"""HTTP API: each role, 401/403, bad input, unknown ids, the peer proxy, regulator views, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from node.catalog import Catalog
from node.http import create_app
from node.http.openapi import openapi_path
from pcnode.errors import ConfigError
from tests.node.catalog.fakes import FakeLedger, FakePeerClient, register, residents_csv


class FakeConfig:
    def __init__(self, peers: set[str]) -> None:
        self.peers = peers

    def peer(self, name: str) -> str:
        if name not in self.peers:
            raise ConfigError(f"no peer named {name!r}", hint="pcnode peer add ...")
        return name


class FakeServices:
    """What create_app needs from NodeServices."""

    def __init__(self, name: str, catalog: Catalog, ledger: FakeLedger,
                 peers: dict[str, Any]) -> None:
        self.name = name
        self.catalog = catalog
        self.ledger = ledger
        self.config = FakeConfig(set(peers))
        self._peers = peers

    def peer(self, name: str) -> Any:
        return self._peers[name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two nodes: 'tax' (provider, with a dataset) and 'bank' (partner), each with an app."""
    tax_ledger, bank_ledger = FakeLedger(), FakeLedger()
    tax = Catalog(f"sqlite:///{tmp_path / 'tax.db'}", ledger=tax_ledger, node="tax")
    bank = Catalog(f"sqlite:///{tmp_path / 'bank.db'}", ledger=bank_ledger, node="bank")
    csv = residents_csv(tmp_path / "residents.csv")
    register(tax, csv)
    tax_app = create_app(FakeServices("tax", tax, tax_ledger,
                                      {"bank": FakePeerClient(bank, "tax")}))
    bank_app = create_app(FakeServices("bank", bank, bank_ledger,
                                       {"tax": FakePeerClient(tax, "bank")}))
    tokens = {}
    for role in ("operator", "provider", "partner", "regulator"):
        tokens["tax", role] = tax.create_token(role, user="root", name=f"{role}-t")[1]
        tokens["bank", role] = bank.create_token(role, user="root", name=f"{role}-b")[1]
    yield {"tax": tax_app.test_client(), "bank": bank_app.test_client(), "tokens": tokens,
           "tax_catalog": tax, "bank_catalog": bank, "tax_ledger": tax_ledger,
           "bank_ledger": bank_ledger, "csv": csv}
    tax.close()
    bank.close()


def auth(world: dict[str, Any], node: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world['tokens'][node, role]}"}


def test_healthz_and_openapi_need_no_token(world: dict[str, Any]) -> None:
    client: FlaskClient = world["tax"]
    assert client.get("/healthz").get_json() == {"status": "ok", "node": "tax"}
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/v1/datasets" in doc["paths"]


def test_every_route_is_in_the_openapi_document(world: dict[str, Any]) -> None:
    app = world["tax"].application
    doc = world["tax"].get("/openapi.json").get_json()
    seen = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = openapi_path(rule.rule)
        assert path in doc["paths"], f"{rule.rule} is missing from /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = doc["paths"][path][method.lower()]
            assert op["summary"]
            seen += 1
    documented = sum(len(v) for v in doc["paths"].values())
    assert seen == documented  # and nothing documented that is not routed


def test_missing_and_bad_tokens_get_401(world: dict[str, Any]) -> None:
    client = world["tax"]
    r = client.get("/api/v1/datasets")
    assert r.status_code == 401 and r.get_json()["error"] == "AuthenticationError"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ["Bearer pcn_nope_nope", "Basic abc", "Bearer "]:
        r = client.get("/api/v1/datasets", headers={"Authorization": header})
        assert r.status_code == 401, header
    bank_token = {"Authorization": f"Bearer {world['tokens']['bank', 'provider']}"}
    assert client.get("/api/v1/datasets", headers=bank_token).status_code == 401


#: (method, path, body, roles allowed) — every route, checked with every role.
ROUTE_ROLES: list[tuple[str, str, dict | None, set[str]]] = [
    ("GET", "/api/v1/whoami", None, {"operator", "provider", "partner", "regulator"}),
    ("GET", "/api/v1/datasets", None, {"operator", "provider", "partner", "regulator"}),
    ("GET", "/api/v1/datasets/residents", None, {"operator", "provider", "partner", "regulator"}),
    ("GET", "/api/v1/applications", None, {"operator", "provider", "regulator"}),
    ("GET", "/api/v1/grants", None, {"operator", "provider", "regulator"}),
    ("GET", "/api/v1/ledger/entries", None, {"operator", "regulator"}),
    ("GET", "/api/v1/ledger/checkpoint", None, {"operator", "regulator"}),
    ("GET", "/api/v1/ledger/proofs/inclusion?index=0", None, {"operator", "regulator"}),
    ("GET", "/api/v1/ledger/proofs/consistency?old=1&new=1", None, {"operator", "regulator"}),
    ("GET", "/api/v1/peers/bank/catalog", None, {"operator", "partner"}),
    ("GET", "/api/v1/outgoing-applications", None, {"operator", "partner"}),
]


@pytest.mark.parametrize("role", ["operator", "provider", "partner", "regulator"])
def test_read_routes_by_role(world: dict[str, Any], role: str) -> None:
    client = world["tax"]
    for method, path, body, allowed in ROUTE_ROLES:
        r = client.open(path, method=method, json=body, headers=auth(world, "tax", role))
        if role in allowed:
            assert r.status_code == 200, (path, role, r.get_json())
        else:
            assert r.status_code == 403, (path, role)
            assert r.get_json()["details"]["rule"] == "role"
            assert "needs a token with role" in r.get_json()["hint"]


def test_provider_writes_are_provider_only(world: dict[str, Any]) -> None:
    client = world["tax"]
    writes = [("POST", "/api/v1/datasets", {"code": "x"}),
              ("POST", "/api/v1/datasets/residents/retire", {}),
              ("POST", "/api/v1/applications/a-1/approve", {}),
              ("POST", "/api/v1/applications/a-1/refuse", {"reason": "no"}),
              ("POST", "/api/v1/grants", {}),
              ("POST", "/api/v1/grants/g-1/revoke", {})]
    for role in ("operator", "partner", "regulator"):
        for method, path, body in writes:
            r = client.open(path, method=method, json=body, headers=auth(world, "tax", role))
            assert r.status_code == 403, (path, role)
    r = world["bank"].post("/api/v1/peers/tax/applications", json={},
                           headers=auth(world, "bank", "provider"))
    assert r.status_code == 403


def test_whoami(world: dict[str, Any]) -> None:
    r = world["tax"].get("/api/v1/whoami", headers=auth(world, "tax", "regulator"))
    assert r.get_json()["role"] == "regulator" and r.get_json()["name"] == "regulator-t"


def test_full_flow_over_http(world: dict[str, Any]) -> None:
    tax, bank = world["tax"], world["bank"]
    partner, provider = auth(world, "bank", "partner"), auth(world, "tax", "provider")
    # partner browses the provider's catalog through its own node
    listing = bank.get("/api/v1/peers/tax/catalog", headers=partner).get_json()
    assert [d["code"] for d in listing] == ["residents"]
    # files an application
    r = bank.post("/api/v1/peers/tax/applications", headers=partner, json={
        "dataset": "residents", "operations": ["psi", "stats"], "columns": ["income"],
        "purpose": "credit scoring", "days": 30})
    assert r.status_code == 201, r.get_json()
    app_id = r.get_json()["id"]
    # provider sees and approves it
    apps = tax.get("/api/v1/applications?status=pending", headers=provider).get_json()
    assert [a["id"] for a in apps] == [app_id] and apps[0]["requested_by"] == "partner-b (partner)"
    assert tax.get(f"/api/v1/applications/{app_id}", headers=provider).status_code == 200
    r = tax.post(f"/api/v1/applications/{app_id}/approve", headers=provider,
                 json={"k": 15, "quota": 3, "psi_modes": ["intersection", "cardinality"]})
    assert r.status_code == 201, r.get_json()
    grant = r.get_json()
    assert grant["k"] == 15 and grant["psi_modes"] == ["intersection", "cardinality"]
    assert grant["operator"] == "provider-t (provider)"
    # partner refreshes the status
    r = bank.get(f"/api/v1/peers/tax/applications/{app_id}", headers=partner)
    assert r.get_json()["status"] == "approved" and r.get_json()["grant_id"] == grant["id"]
    outgoing = bank.get("/api/v1/outgoing-applications?refresh=1", headers=partner).get_json()
    assert outgoing[0]["status"] == "approved"
    # provider lists, shows and revokes the grant
    assert tax.get("/api/v1/grants?active=1", headers=provider).get_json()[0]["id"] == grant["id"]
    assert tax.get(f"/api/v1/grants/{grant['id']}", headers=provider).status_code == 200
    r = tax.post(f"/api/v1/grants/{grant['id']}/revoke", headers=provider,
                 json={"reason": "end of pilot"})
    assert r.get_json()["status"] == "revoked"
    assert tax.get("/api/v1/grants?active=1", headers=provider).get_json() == []
    # ledgers on both sides
    assert world["tax_ledger"].events()[-4:] == ["application.filed", "grant.created",
                                                 "application.approved", "grant.revoked"]
    assert world["tax_ledger"].last("grant.revoked").fields["user"] == "provider-t (provider)"
    assert world["bank_ledger"].events() == ["application.filed", "application.approved"]
    # regulator reads the provider's ledger
    reg = auth(world, "tax", "regulator")
    entries = tax.get("/api/v1/ledger/entries?event=grant.created", headers=reg).get_json()
    assert entries["count"] == 1 and entries["entries"][0]["grant_id"] == grant["id"]
    assert tax.get("/api/v1/ledger/entries?limit=2", headers=reg).get_json()["count"] == 2
    cp = tax.get("/api/v1/ledger/checkpoint", headers=reg).get_json()
    assert cp["tree_size"] == len(world["tax_ledger"].entries_)
    assert tax.get("/api/v1/ledger/proofs/inclusion?index=1&tree_size=3",
                   headers=reg).get_json()["tree_size"] == 3
    assert tax.get("/api/v1/ledger/proofs/consistency?old=1&new=3",
                   headers=reg).get_json() == {"old": 1, "new": 3, "path": []}


def test_refuse_and_standing_grant_and_dataset_routes(world: dict[str, Any], tmp_path: Path
                                                      ) -> None:
    tax, provider = world["tax"], auth(world, "tax", "provider")
    app = world["tax_catalog"].receive_application("bank", {
        "dataset": "residents", "operations": ["psi"], "columns": ["income"],
        "purpose": "x", "days": 5})
    r = tax.post(f"/api/v1/applications/{app['id']}/refuse", headers=provider,
                 json={"reason": "not needed"})
    assert r.status_code == 200 and r.get_json()["status"] == "refused"
    # register over HTTP
    csv = residents_csv(tmp_path / "open.csv")
    r = tax.post("/api/v1/datasets", headers=provider, json={
        "code": "open_stats", "name": "Open", "file": str(csv), "key": "id", "level": "L1",
        "share": "unconditional", "meta": {"summary": "open data"}})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["meta"]["summary"] == "open data"
    r = tax.post("/api/v1/grants", headers=provider, json={
        "peer": "bank", "dataset": "open_stats", "operations": ["stats"], "purpose": "stats",
        "quota": 5})
    assert r.status_code == 201 and r.get_json()["standing"] is True
    r = tax.post("/api/v1/grants", headers=provider, json={
        "peer": "bank", "dataset": "residents", "operations": ["stats"], "purpose": "stats"})
    assert r.status_code == 403 and r.get_json()["details"]["rule"] == "share"
    r = tax.post("/api/v1/datasets/open_stats/retire", headers=provider, json={"reason": "old"})
    assert r.get_json()["state"] == "retired"
    assert [d["code"] for d in tax.get("/api/v1/datasets?all=1", headers=provider).get_json()] \
        == ["open_stats", "residents"]


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("POST", "/api/v1/datasets", "{not json", 400, "not valid JSON"),
    ("POST", "/api/v1/datasets", "", 400, "empty"),
    ("POST", "/api/v1/datasets", "[1, 2]", 400, "JSON object"),
    ("POST", "/api/v1/datasets", '{"name": "x"}', 400, "exactly one source"),
    ("POST", "/api/v1/datasets", '{"file": "/x.csv", "name": "x"}', 400, "missing field 'code'"),
    ("POST", "/api/v1/datasets", '{"file": "/x.csv", "code": 5}', 400, "must be a string"),
    ("POST", "/api/v1/datasets", '{"file": "/nonexistent.csv", "code": "c", "name": "n", '
     '"key": "id", "level": "L1", "share": "none"}', 400, "no such file"),
    ("GET", "/api/v1/datasets/ghost", None, 404, "no dataset 'ghost'"),
    ("GET", "/api/v1/applications/a-ghost", None, 404, "no application"),
    ("POST", "/api/v1/applications/a-ghost/approve", "{}", 404, "no application"),
    ("POST", "/api/v1/applications/a-ghost/refuse", "{}", 400, "missing field 'reason'"),
    ("GET", "/api/v1/grants/g-ghost", None, 404, "no grant"),
    ("POST", "/api/v1/grants/g-ghost/revoke", None, 404, "no grant"),
    ("POST", "/api/v1/grants", '{"peer": "bank"}', 400, "missing field 'dataset'"),
    ("POST", "/api/v1/grants", '{"peer": "bank", "dataset": "residents", "operations": 3}', 400,
     "must be an array"),
    ("GET", "/api/v1/nowhere", None, 404, ""),
    ("DELETE", "/api/v1/datasets", None, 405, ""),
])
def test_errors_are_json_with_a_message(world: dict[str, Any], method: str, path: str,
                                        body: str | None, status: int, text: str) -> None:
    r = world["tax"].open(path, method=method, data=body, headers=auth(world, "tax", "provider"),
                          content_type="application/json")
    assert r.status_code == status, r.get_json()
    payload = r.get_json()
    assert payload["status"] == status and payload["message"] is not None
    assert text in payload["message"]


def test_regulator_query_errors(world: dict[str, Any]) -> None:
    tax, reg = world["tax"], auth(world, "tax", "regulator")
    for path, text in [("/api/v1/ledger/entries?start=x", "integer"),
                       ("/api/v1/ledger/entries?limit=5000", "at most"),
                       ("/api/v1/ledger/entries?start=5&stop=1", "smaller"),
                       ("/api/v1/ledger/entries?since=yesterday", "ISO-8601"),
                       ("/api/v1/ledger/proofs/inclusion", "index"),
                       ("/api/v1/ledger/proofs/consistency?old=3&new=1", "larger"),
                       ("/api/v1/ledger/proofs/consistency?old=1", "missing")]:
        r = tax.get(path, headers=reg)
        assert r.status_code == 400 and text in r.get_json()["message"], path
    r = tax.get("/api/v1/ledger/proofs/inclusion?index=999", headers=reg)
    assert r.status_code == 404


def test_unknown_peer_and_peer_denials(world: dict[str, Any]) -> None:
    bank, partner = world["bank"], auth(world, "bank", "partner")
    r = bank.get("/api/v1/peers/nobody/catalog", headers=partner)
    assert r.status_code == 404 and "no peer named 'nobody'" in r.get_json()["message"]
    r = bank.post("/api/v1/peers/tax/applications", headers=partner, json={
        "dataset": "residents", "operations": ["psi"], "columns": ["secret"], "purpose": "x",
        "days": 3})
    assert r.status_code == 400 and "no column" in r.get_json()["message"]
    r = bank.get("/api/v1/peers/tax/applications/a-ghost", headers=partner)
    assert r.status_code == 404


def test_unexpected_errors_are_500_without_details(world: dict[str, Any]) -> None:
    catalog = world["tax_catalog"]

    def boom(**_: Any) -> None:
        raise RuntimeError("secret value 110105194912310021")

    catalog.list_datasets = boom  # type: ignore[method-assign]
    r = world["tax"].get("/api/v1/datasets", headers=auth(world, "tax", "operator"))
    assert r.status_code == 500 and r.get_json()["error"] == "InternalError"
    assert "110105" not in r.get_data(as_text=True)


def test_regulator_views_on_the_real_ledger(tmp_path: Path) -> None:
    from node.services import NodeServices
    from tests.federation import make_federation

    fed = make_federation(tmp_path, ["tax"])
    svc = NodeServices(fed.homes["tax"], user="alice")
    try:
        register(svc.catalog, residents_csv(tmp_path / "r.csv"))
        register(svc.catalog, residents_csv(tmp_path / "r.csv"), code="second")
        svc.ledger.checkpoint()
        token = svc.catalog.create_token("regulator", user="root")[1]
        client = create_app(svc).test_client()
        h = {"Authorization": f"Bearer {token}"}
        r = client.get("/api/v1/ledger/entries?event=dataset.registered", headers=h)
        assert r.status_code == 200, r.get_json()
        entries = r.get_json()["entries"]
        assert [e["dataset"] for e in entries] == ["residents", "second"]
        assert entries[0]["user"] == "alice"
        since = client.get("/api/v1/ledger/entries?since=2000-01-01T00:00:00&dataset=second",
                           headers=h).get_json()
        assert since["count"] == 1
        cp = client.get("/api/v1/ledger/checkpoint", headers=h)
        assert cp.status_code == 200, cp.get_json()
        size = svc.ledger.size() if callable(getattr(svc.ledger, "size", None)) else len(svc.ledger)
        r = client.get(f"/api/v1/ledger/proofs/inclusion?index=0&tree_size={size}", headers=h)
        assert r.status_code == 200, r.get_json()
        r = client.get(f"/api/v1/ledger/proofs/consistency?old=1&new={size}", headers=h)
        assert r.status_code == 200, r.get_json()
        r = client.get(f"/api/v1/ledger/proofs/inclusion?index={size + 5}", headers=h)
        assert 400 <= r.status_code < 500
    finally:
        svc.close()
