"""PSI between two nodes through the CLI: grants, modes, denials by rule, output files, ledgers."""

from __future__ import annotations

import csv
import json
import random

import pytest

from node.services import NodeServices
from tests.federation import make_federation, pcnode, serving


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("psi")
    fed = make_federation(root, ["tax", "bank"])
    rnd = random.Random(7)
    ids = [f"5101{rnd.randrange(10**13):013d}X"[:18] for _ in range(3000)]
    tax_ids, bank_ids = ids[:2000], ids[1500:]  # 500 shared
    _write(root / "tax.csv", ["id", "income", "district"],
           [[i, rnd.randrange(10**5), rnd.choice("ABC")] for i in tax_ids])
    _write(root / "bank.csv", ["id", "amount"], [[i, rnd.randrange(10**4)] for i in bank_ids])
    pcnode("dataset", "register", fed.homes["tax"], "--code", "residents", "--name", "Residents",
           "--file", root / "tax.csv", "--key", "id", "--level", "L3", "--share", "conditional")
    pcnode("dataset", "register", fed.homes["bank"], "--code", "applicants", "--name", "Applicants",
           "--file", root / "bank.csv", "--key", "id", "--level", "L2", "--share", "none")
    with serving(fed.homes) as nodes:
        app = json.loads(pcnode("apply", fed.homes["bank"], "--peer", "tax", "--dataset",
                                "residents", "--ops", "psi,stats", "--columns", "income",
                                "--purpose", "credit risk model", "--days", 30, "--json").stdout)
        app_id = app.get("id") or app.get("application_id")
        pcnode("approve", fed.homes["tax"], app_id, "--psi-modes", "intersection,cardinality",
               "--quota", 5)
        yield fed, root, set(tax_ids) & set(bank_ids), nodes


def _psi(fed, root, mode, check=True, out=None):
    args = ["psi", fed.homes["bank"], "--peer", "tax", "--dataset", "applicants",
            "--peer-dataset", "residents", "--mode", mode, "--json"]
    if out:
        args += ["--out", out]
    return pcnode(*args, check=check)


def test_intersection_mode_matches_python_sets(world):
    fed, root, expected, _ = world
    out = root / "inter.csv"
    res = json.loads(_psi(fed, root, "intersection", out=out).stdout)
    assert res["intersection_size"] == len(expected) == 500
    with open(out) as fh:
        got = {row["key"] for row in csv.DictReader(fh)}
    assert got == expected


def test_cardinality_mode_gives_only_the_count(world):
    fed, root, expected, _ = world
    out = root / "card.csv"
    res = json.loads(_psi(fed, root, "cardinality", out=out).stdout)
    assert res["intersection_size"] == len(expected)
    assert out.read_text().splitlines() == ["intersection_size", str(len(expected))]


def test_mode_outside_the_grant_is_denied_naming_the_rule(world):
    fed, root, _, nodes = world
    proc = _psi(fed, root, "both", check=False)
    assert proc.returncode == 1
    assert "rule 'mode'" in proc.stderr
    denied = [e for e in nodes["tax"].ledger.entries() if e.event == "job.denied"]
    assert denied and denied[-1].extra.get("rule") == "mode"
    failed = [e for e in NodeServices(fed.homes["bank"]).ledger.entries() if e.event == "job.failed"]
    assert failed and "mode" in failed[-1].error


def test_both_ledgers_record_the_job_with_counts(world):
    fed, root, _, nodes = world
    res = json.loads(_psi(fed, root, "intersection").stdout)
    bank = NodeServices(fed.homes["bank"])
    for svc in (bank, nodes["tax"]):
        done = [e for e in svc.ledger.entries() if e.event == "job.completed"
                and e.job_id == res["job_id"]]
        assert done and done[0].transcript_hash == res["transcript_hash"]
        assert done[0].bytes_in > 0 and done[0].bytes_out > 0
    tax_done = next(e for e in nodes["tax"].ledger.entries()
                    if e.event == "job.completed" and e.job_id == res["job_id"])
    assert tax_done.grant_id and tax_done.dataset == "residents"


def test_revoked_grant_is_denied(world):
    fed, root, _, _nodes = world
    grants = json.loads(pcnode("grants", fed.homes["tax"], "--json").stdout)
    grant_id = grants[0]["id"]
    pcnode("revoke", fed.homes["tax"], grant_id, "--reason", "test")
    proc = _psi(fed, root, "intersection", check=False)
    assert proc.returncode == 1 and "rule 'revoked'" in proc.stderr
