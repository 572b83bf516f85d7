"""Joint statistics between two nodes through the CLI: both backends against numpy, k, denials."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from tests.federation import make_federation, pcnode, serving


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    fed = make_federation(root, ["tax", "bank"])
    rnd = random.Random(11)
    ids = [f"id{i:06d}" for i in range(1500)]
    districts = ["A", "B", "C", "D"]
    tax = {i: (rnd.choice(districts[:3]) if n % 200 else "D", rnd.randrange(10_000, 500_000),
               rnd.randrange(0, 40_000)) for n, i in enumerate(ids[:1200])}
    with open(root / "tax.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "district", "income", "tax_paid"])
        w.writerows([i, *v] for i, v in tax.items())
    bank_ids = ids[400:]
    with open(root / "bank.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "loan"])
        w.writerows([i, rnd.randrange(1000, 90000)] for i in bank_ids)
    pcnode("dataset", "register", fed.homes["tax"], "--code", "res", "--name", "Residents",
           "--file", root / "tax.csv", "--key", "id", "--level", "L3", "--share", "conditional")
    pcnode("dataset", "register", fed.homes["bank"], "--code", "app", "--name", "Applicants",
           "--file", root / "bank.csv", "--key", "id", "--level", "L2", "--share", "none")
    joined = [tax[i] for i in bank_ids if i in tax]
    with serving(fed.homes) as nodes:
        app = json.loads(pcnode("apply", fed.homes["bank"], "--peer", "tax", "--dataset", "res",
                                "--ops", "stats", "--columns", "district,income",
                                "--purpose", "income by district", "--days", 30,
                                "--json").stdout)
        pcnode("approve", fed.homes["tax"], app.get("id") or app.get("application_id"),
               "--k", 5, "--quota", 10)
        yield fed, root, joined, nodes


def _stats(fed, backend, *extra, check=True):
    return pcnode("stats", fed.homes["bank"], "--peer", "tax", "--dataset", "app",
                  "--peer-dataset", "res", "--agg", "count,sum:income,mean:income",
                  "--group-by", "district", "--backend", backend, "--json", *extra, check=check)


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_mean_income_by_district_matches_numpy(world, backend, tmp_path):
    fed, _, joined, _ = world
    out = tmp_path / "stats.csv"
    res = json.loads(_stats(fed, backend, "--out", out).stdout)
    assert res["intersection_size"] == len(joined)
    by_group = {r["group"]: r for r in res["rows"]}
    released = [d for d in ("A", "B", "C") if d not in res["suppressed"]]
    assert len(released) >= 2  # D (< k) and at most one complementary group are withheld
    for district in released:
        incomes = np.array([v[1] for v in joined if v[0] == district], dtype=float)
        row = by_group[district]
        assert row["count"] == len(incomes)
        if backend == "paillier":
            assert row["sum:income"] == pytest.approx(incomes.sum(), abs=1e-6)
            assert row["mean:income"] == pytest.approx(incomes.mean(), abs=1e-6)
        else:
            assert row["mean:income"] == pytest.approx(incomes.mean(), rel=1e-6)
    # district D has count < k=5 at the intersection: suppressed and said so
    assert "D" in res["suppressed"]
    header = out.read_text().splitlines()[0].split(",")
    assert header[:2] == ["group", "count"] and "mean:income" in header


def test_ungranted_column_is_refused_naming_the_rule(world):
    fed, _, _, nodes = world
    proc = pcnode("stats", fed.homes["bank"], "--peer", "tax", "--dataset", "app",
                  "--peer-dataset", "res", "--agg", "mean:tax_paid", "--json", check=False)
    assert proc.returncode == 1 and "rule 'columns'" in proc.stderr
    denied = [e for e in nodes["tax"].ledger.entries() if e.event == "job.denied"]
    assert denied[-1].extra.get("rule") == "columns"
