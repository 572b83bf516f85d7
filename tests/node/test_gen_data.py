"""scripts/gen_data.py: deterministic, valid resident IDs, ~60% overlap, a learnable label."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from node.catalog import Catalog, CsvSource
from node.catalog.coltypes import resident_id_valid
from node.catalog.meta import load_meta_file
from tests.node.catalog.fakes import FakeLedger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_data", REPO / "scripts" / "gen_data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_data"] = module
    spec.loader.exec_module(module)
    return module


def test_resident_id_check_digit_matches_the_standard_example(gen) -> None:
    # GB 11643-1999's worked example: 11010519491231002X
    ids = gen.resident_ids(np.array([110105]), np.array(["1949-12-31"], dtype="datetime64[D]"),
                           np.array([2]))
    assert ids[0] == b"11010519491231002X"
    assert resident_id_valid(pa.array(["11010519491231002X", "110105194912310021", "abc",
                                       None])).tolist() == [True, False, False, False]


def test_tables_are_valid_and_deterministic(gen) -> None:
    tax, bank = gen.generate(seed=7, tax_rows=20_000, bank_rows=5_000)
    tax2, bank2 = gen.generate(seed=7, tax_rows=20_000, bank_rows=5_000)
    for a, b in ((tax, tax2), (bank, bank2)):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    ids = tax["resident_id"].astype(str)
    assert len(set(ids)) == 20_000
    assert resident_id_valid(pa.array(ids)).all()
    assert resident_id_valid(pa.array(bank["applicant_id"].astype(str))).all()
    assert len(set(bank["applicant_id"].astype(str))) == 5_000
    overlap = np.isin(bank["applicant_id"], tax["resident_id"]).mean()
    assert overlap == pytest.approx(0.6, abs=0.001)
    assert (tax["annual_income"] > 0).all() and (tax["tax_paid"] >= 0).all()
    assert ((tax["social_insurance_months"] >= 0) & (tax["social_insurance_months"] <= 480)).all()
    assert set(np.unique(bank["default"])) == {0, 1}
    assert 0.1 < bank["default"].mean() < 0.4
    assert set(tax["district"]) <= {n for n, _ in gen.DISTRICTS}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    return (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())


def _fit_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Plain logistic regression by gradient descent; AUC on a held-out third."""
    x = (x - x.mean(0)) / x.std(0)
    x = np.column_stack([np.ones(len(x)), x])
    n = len(y) * 2 // 3
    w = np.zeros(x.shape[1])
    for _ in range(500):
        p = 1 / (1 + np.exp(-x[:n] @ w))
        w -= 0.5 * x[:n].T @ (p - y[:n]) / n
    return _auc(x[n:] @ w, y[n:])


def test_tax_features_add_learnable_signal(gen) -> None:
    tax, bank = gen.generate(seed=11, tax_rows=40_000, bank_rows=15_000)
    index = {k: i for i, k in enumerate(tax["resident_id"].tolist())}
    pos = np.array([index.get(k, -1) for k in bank["applicant_id"].tolist()])
    m = pos >= 0
    p = pos[m]
    y = bank["default"][m].astype(np.float64)
    xb = np.column_stack([np.log(bank["loan_amount"][m]), bank["credit_inquiries"][m],
                          bank["age"][m]])
    xt = np.column_stack([np.log(tax["annual_income"][p]), np.log1p(tax["tax_paid"][p]),
                          tax["social_insurance_months"][p]])
    bank_only = _fit_auc(xb, y)
    joint = _fit_auc(np.column_stack([xb, xt]), y)
    assert joint > bank_only + 0.1, (bank_only, joint)


def test_cli_writes_files_that_register_cleanly(gen, tmp_path: Path) -> None:
    assert gen.main([str(tmp_path), "--tax-rows", "120000", "--bank-rows", "3000"]) == 0
    digest = hashlib.sha256((tmp_path / "tax_residents.csv").read_bytes()).hexdigest()
    again = tmp_path / "again"
    gen.main([str(again), "--tax-rows", "120000", "--bank-rows", "3000"])
    assert hashlib.sha256((again / "tax_residents.csv").read_bytes()).hexdigest() == digest
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}", ledger=FakeLedger(), node="tax")
    # > 4 MiB, so the streaming reader crosses several blocks
    assert (tmp_path / "tax_residents.csv").stat().st_size > 4 * 2**20
    d = cat.register_dataset(code="tax_residents", name="residents",
                             source=CsvSource(tmp_path / "tax_residents.csv"), key="resident_id",
                             level="L3", share="conditional", user="u",
                             meta=load_meta_file(tmp_path / "tax_residents.toml"))
    p = d["profile"]
    assert p["rows"] == 120_000 and p["key"]["unique_rate"] == 1.0
    assert all(c["type_failures"] == 0 and c["nulls"] == 0 for c in p["columns"].values())
    assert d["meta"]["provider_code"] == "TAX-510100"
    h = cat.open_dataset("tax_residents")
    chunks = list(h.iter_key_chunks(chunk_rows=50_000))
    assert [len(c) for c in chunks] == [50_000, 50_000, 20_000]
    cols = h.read_columns(["social_insurance_months", "annual_income"])
    assert cols["social_insurance_months"].dtype == np.int64 and len(cols["annual_income"]) == \
        120_000
    b = cat.register_dataset(code="bank", name="bank", key="applicant_id", level="L3",
                             source=CsvSource(tmp_path / "bank_applicants.csv"),
                             share="none", user="u",
                             meta=load_meta_file(tmp_path / "bank_applicants.toml"))
    assert b["profile"]["rows"] == 3000
    cat.close()
