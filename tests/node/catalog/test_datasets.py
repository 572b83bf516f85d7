"""Dataset registration: metadata, profile, clear errors without half-written entries, staleness."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from node.catalog import Catalog, CsvSource, ParquetSource, SqlSource
from pcnode.errors import AlreadyExists, InvalidInput, NotFound, StaleDataset
from tests.node.catalog.fakes import FakeLedger, register, write_csv

META = """
classification = "社会保障"
provider = "Chengdu Tax Bureau"
provider_code = "TAX-510100"
summary = "residents"
open = "conditional"
update_cycle = "monthly"
publish_date = 2024-06-01
related = ["bank_applicants"]
share_condition = "joint computation only"

[[columns]]
name = "si_months"
type = "integer"
description = "social-insurance months"

[[columns]]
name = "income"
type = "float"
description = "annual income"
"""


def test_register_stores_core_metadata_profile_and_ledger_entry(
        catalog: Catalog, ledger: FakeLedger, residents: Path, tmp_path: Path) -> None:
    meta_path = tmp_path / "meta.toml"
    meta_path.write_text(META, encoding="utf-8")
    from node.catalog.meta import load_meta_file

    d = register(catalog, residents, meta=load_meta_file(meta_path), reason="initial load")
    m = d["meta"]
    # every core metadata item of 002 §2.2.1 item 6
    assert m["classification"] == "社会保障"
    assert (m["name"], m["code"]) == ("Residents", "residents")
    assert (m["provider"], m["provider_code"]) == ("Chengdu Tax Bureau", "TAX-510100")
    assert m["summary"] == "residents" and m["format"] == "CSV"
    assert (m["share"], m["open"], m["update_cycle"]) == ("conditional", "conditional", "monthly")
    assert m["publish_date"] == "2024-06-01" and m["related"] == ["bank_applicants"]
    cols = {c["name"]: c for c in d["columns"]}
    assert cols["si_months"] == {"name": "si_months", "type": "integer",
                                 "description": "social-insurance months"}
    assert cols["district"]["type"] == "string"  # inferred
    assert d["level"] == "L3" and d["key_column"] == "id" and d["state"] == "active"
    assert d["content_digest"].startswith("sha256:")
    # quality profile (002 §4.5.1)
    p = d["profile"]
    assert p["rows"] == 6 and p["columns_count"] == 5
    assert p["key"] == {"column": "id", "distinct": 5, "unique_rate": round(5 / 6, 6),
                        "duplicate_rows": 1, "duplicate_rate": round(1 / 6, 6),
                        "duplicated_keys": 1, "nulls": 0}
    assert p["columns"]["si_months"] == {"type": "integer", "nulls": 1,
                                         "null_rate": round(1 / 6, 6), "type_failures": 1}
    assert p["columns"]["district"]["nulls"] == 1
    assert p["columns"]["income"]["type_failures"] == 0
    # ledger
    e = ledger.last("dataset.registered")
    assert e.fields["user"] == "alice" and e.fields["dataset"] == "residents"
    assert e.fields["extra"]["reason"] == "initial load" and e.fields["rows_in"] == 6
    # stored: show and list agree
    assert catalog.get_dataset("residents") == d
    assert [x["code"] for x in catalog.list_datasets()] == ["residents"]


def test_defaults_without_meta(catalog: Catalog, residents: Path) -> None:
    d = register(catalog, residents)
    assert d["meta"]["provider"] == "tax" and d["meta"]["open"] == "none"
    assert d["meta"]["update_cycle"] == "irregular" and d["meta"]["related"] == []


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"key": "nope"}, InvalidInput, "unknown key column 'nope'"),
    ({"level": "L5"}, InvalidInput, "invalid level"),
    ({"share": "sometimes"}, InvalidInput, "invalid share value"),
    ({"code": "bad code!"}, InvalidInput, "invalid dataset code"),
    ({"meta": {"columns": [{"name": "ghost"}]}}, InvalidInput, "not in the source"),
    ({"meta": {"open": "maybe"}}, InvalidInput, "open"),
    ({"meta": {"colour": "red"}}, InvalidInput, "unknown metadata field"),
])
def test_registration_errors_leave_nothing_behind(
        catalog: Catalog, ledger: FakeLedger, residents: Path, kwargs: dict, error: type,
        text: str) -> None:
    with pytest.raises(error, match=text):
        register(catalog, residents, **kwargs)
    assert catalog.list_datasets(include_retired=True) == []
    assert ledger.events() == []


def test_duplicate_code_is_refused(catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents)
    with pytest.raises(AlreadyExists, match="registered already"):
        register(catalog, residents)
    assert len(catalog.list_datasets()) == 1 and ledger.events() == ["dataset.registered"]


@pytest.mark.parametrize("content", [
    b"",                                           # empty
    b"id,a\n1,2\n3\n",                            # ragged row
    b"id,a\n\xff\xfe\x00garbage,1\n",             # not UTF-8
])
def test_malformed_files_are_refused(sqlite_catalog: Catalog, ledger: FakeLedger, tmp_path: Path,
                                     content: bytes) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        register(sqlite_catalog, path)
    assert str(path) in str(info.value)
    assert sqlite_catalog.list_datasets() == [] and ledger.events() == []


def test_ragged_row_error_shows_no_row_content(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [["secret-1", "x"], ["secret-2"]], ["id", "a"])
    with pytest.raises(InvalidInput) as info:
        register(sqlite_catalog, path)
    assert "secret" not in str(info.value)


def test_missing_and_unreadable_files(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        register(sqlite_catalog, tmp_path / "absent.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInput, match="not a readable Parquet file"):
        sqlite_catalog.register_dataset(code="p", name="p", source=ParquetSource(bad), key="id",
                                        level="L1", share="none", user="u")


def test_parquet_and_sql_sources(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b", "c"], "v": [1.5, None, 3.0], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "t.parquet")
    d = sqlite_catalog.register_dataset(code="pq", name="pq", source=ParquetSource(
        tmp_path / "t.parquet"), key="id", level="L2", share="unconditional", user="u")
    assert d["meta"]["format"] == "PARQUET" and d["profile"]["rows"] == 3
    assert {c["name"]: c["type"] for c in d["columns"]} == {"id": "string", "v": "float",
                                                           "n": "integer"}
    assert d["profile"]["columns"]["v"]["nulls"] == 1
    h = sqlite_catalog.open_dataset("pq")
    assert h.read_keys() == ["a", "b", "c"]
    cols = h.read_columns(["v", "n"])
    assert cols["n"].tolist() == [1, 2, 3] and str(cols["n"].dtype) == "int64"
    assert cols["v"][0] == 1.5 and cols["v"][1] != cols["v"][1]  # NaN

    import sqlalchemy as sa

    db = f"sqlite:///{tmp_path / 'src.db'}"
    eng = sa.create_engine(db)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (pid TEXT, age INTEGER, score REAL)")
        conn.exec_driver_sql("INSERT INTO people VALUES ('p2', 40, 0.5), ('p1', 30, NULL)")
    d = sqlite_catalog.register_dataset(code="sq", name="sq", source=SqlSource(db, "people"),
                                        key="pid", level="L2", share="conditional", user="u")
    assert d["profile"]["rows"] == 2 and d["source"]["kind"] == "sql"
    h = sqlite_catalog.open_dataset("sq")
    keys = h.read_keys()
    assert sorted(keys) == ["p1", "p2"]
    ages = h.read_columns(["age"])["age"]
    assert dict(zip(keys, ages.tolist(), strict=True)) == {"p1": 30, "p2": 40}
    assert not sqlite_catalog.check_stale("sq")
    with eng.begin() as conn:
        conn.exec_driver_sql("UPDATE people SET age = 41 WHERE pid = 'p2'")
    assert sqlite_catalog.check_stale("sq")
    with pytest.raises(InvalidInput, match="no such table"):
        sqlite_catalog.register_dataset(code="x", name="x", source=SqlSource(db, "nope"),
                                        key="pid", level="L2", share="conditional", user="u")
    eng.dispose()


def test_sql_password_is_masked(tmp_path: Path) -> None:
    src = SqlSource("postgresql+psycopg://user:s3cret@db.example/x", "t")
    assert "s3cret" not in src.display()


def test_handle_reads_keys_in_chunks_and_aligned_columns(sqlite_catalog: Catalog,
                                                        residents: Path) -> None:
    register(sqlite_catalog, residents, meta={"columns": [{"name": "si_months", "type": "integer"}]})
    h = sqlite_catalog.open_dataset("residents")
    assert (h.code, h.key_column, h.row_count) == ("residents", "id", 6)
    assert [len(c) for c in h.iter_key_chunks(chunk_rows=4)] == [4, 2]
    keys = h.read_keys()
    assert keys == ["r1", "r2", "r3", "r3", "r4", "r5"]
    cols = h.read_columns(["income", "si_months", "district"])
    assert cols["income"].tolist() == [100000, 80000, 120000, 120000, 50000, 65000.5]
    si = cols["si_months"]
    assert si[0] == 120 and si[1] != si[1] and si[4] != si[4]  # missing and 'abc' -> NaN
    assert cols["district"].tolist()[4] is None
    with pytest.raises(InvalidInput, match="no column"):
        h.read_columns(["nope"])


def test_null_keys_are_skipped_consistently(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", [["a", 1], ["", 2], ["c", 3]], ["id", "v"])
    d = register(sqlite_catalog, path)
    assert d["profile"]["key"]["nulls"] == 1
    h = sqlite_catalog.open_dataset("residents")
    assert h.read_keys() == ["a", "c"]
    assert h.read_columns(["v"])["v"].tolist() == [1, 3]


def test_staleness_detected_marked_and_cleared_by_reregistering(
        sqlite_catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(sqlite_catalog, residents)
    # touched but unchanged: not stale
    st = residents.stat()
    os.utime(residents, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert not sqlite_catalog.check_stale("residents")
    sqlite_catalog.open_dataset("residents")
    # changed: stale, recorded once, refused
    with residents.open("a", encoding="utf-8") as fh:
        fh.write("r9,锦江区,1,1,1\n")
    with pytest.raises(StaleDataset, match="re-registered"):
        sqlite_catalog.open_dataset("residents")
    assert sqlite_catalog.get_dataset("residents")["state"] == "stale"
    assert sqlite_catalog.check_stale("residents")
    changed = [e for e in ledger.entries_ if e.event == "dataset.changed"]
    assert len(changed) == 1 and changed[0].fields["extra"]["status"] == "stale"
    # re-register
    d = register(sqlite_catalog, residents, replace=True, reason="monthly refresh")
    assert d["state"] == "active" and d["version"] == 2 and d["profile"]["rows"] == 7
    assert ledger.last("dataset.changed").fields["extra"]["reason"] == "monthly refresh"
    assert sqlite_catalog.open_dataset("residents").row_count == 7


def test_deleted_source_is_stale(sqlite_catalog: Catalog, residents: Path) -> None:
    register(sqlite_catalog, residents)
    residents.unlink()
    assert sqlite_catalog.check_stale("residents")


def test_retire(catalog: Catalog, ledger: FakeLedger, residents: Path) -> None:
    register(catalog, residents)
    d = catalog.retire_dataset("residents", user="bob", reason="superseded")
    assert d["state"] == "retired" and d["retired_by"] == "bob"
    assert catalog.list_datasets() == []
    assert [x["code"] for x in catalog.list_datasets(include_retired=True)] == ["residents"]
    e = ledger.last("dataset.retired")
    assert e.fields["user"] == "bob" and e.fields["extra"]["reason"] == "superseded"
    with pytest.raises(InvalidInput, match="retired already"):
        catalog.retire_dataset("residents", user="bob")
    with pytest.raises(NotFound):
        catalog.open_dataset("residents")
    with pytest.raises(AlreadyExists, match="cannot be reused"):
        register(catalog, residents, replace=True)
    with pytest.raises(NotFound):
        catalog.retire_dataset("ghost", user="bob")


def test_ledger_failure_rolls_back_registration(tmp_path: Path, residents: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}", ledger=FakeLedger(fail_on="dataset.registered"),
                  node="tax")
    with pytest.raises(InvalidInput, match="ledger refused"):
        register(cat, residents)
    assert cat.list_datasets() == []


def test_csv_source_kind_by_extension(tmp_path: Path) -> None:
    from node.catalog.sources import open_source

    assert isinstance(open_source(file=tmp_path / "a.csv"), CsvSource)
    assert isinstance(open_source(file=tmp_path / "a.parquet"), ParquetSource)
    with pytest.raises(InvalidInput, match="exactly one source"):
        open_source()
    with pytest.raises(InvalidInput, match="--table"):
        open_source(sql="sqlite://")
