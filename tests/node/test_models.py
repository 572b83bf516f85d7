"""The model registry: versions, atomic files, the index, digests and ledger entries."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledger import Ledger, open_store
from node.models import FORMAT, MODEL_SAVED, ModelRegistry, digest_of
from pcnode.errors import InvalidInput, NotFound
from protocols.fl import GuestModel, HostModel


def _guest(model_id: str = "job1", bias: float = 0.25) -> GuestModel:
    return GuestModel(model_id=model_id, party="bank", weights=np.array([0.5, -1.25]),
                      mean=np.array([1.0, 2.0]), std=np.array([3.0, 4.0]), bias=bias,
                      hosts=["tax"])


def _host(model_id: str = "job1") -> HostModel:
    return HostModel(model_id=model_id, party="tax", weights=np.array([0.1, 0.2, 0.3]),
                     mean=np.zeros(3), std=np.ones(3))


@pytest.fixture
def ledger():
    led = Ledger(open_store("sqlite:///:memory:"), ed25519.Ed25519PrivateKey.generate(), "bank")
    yield led
    led.close()


def test_save_and_load_round_trip_with_versions(tmp_path, ledger):
    reg = ModelRegistry(tmp_path / "models", ledger=ledger)
    part = _guest().to_bytes()
    rec = reg.save("job1", role="guest", party="bank", part=part, kind="fl-vertical-lr",
                   job_id="job1", meta={"dataset": "apps", "features": ["a", "b"]})
    assert rec.version == 1 and rec.digest == digest_of(part)
    assert (tmp_path / "models" / "job1" / "1.json").is_file()
    loaded = reg.get("job1")
    assert loaded.part == part and loaded.meta["features"] == ["a", "b"]
    assert loaded.guest_model().to_bytes() == part
    # saving the same id again makes the next version; the latest is the default
    rec2 = reg.save("job1", role="guest", party="bank", part=_guest(bias=1.0).to_bytes(),
                    kind="fl-vertical-lr", job_id="job1")
    assert rec2.version == 2 and reg.versions("job1") == [1, 2]
    assert reg.get("job1").guest_model().bias == 1.0
    assert reg.get("job1", 1).guest_model().bias == 0.25
    doc = json.loads((tmp_path / "models" / "job1" / "2.json").read_text())
    assert doc["format"] == FORMAT and doc["digest"] == rec2.digest


def test_every_save_writes_a_model_saved_entry_with_the_digest(tmp_path, ledger):
    reg = ModelRegistry(tmp_path, ledger=ledger)
    rec = reg.save("job9", role="host", party="tax", part=_host("job9").to_bytes(),
                   kind="fl-vertical-lr", job_id="job9",
                   ledger_fields={"dataset": "residents", "operation": "fl",
                                  "extra": {"parties": "bank,tax"}})
    entries = [e for e in ledger.entries() if e.event == MODEL_SAVED]
    assert len(entries) == 1
    e = entries[0]
    assert e.result_digest == rec.digest and e.job_id == "job9" and e.dataset == "residents"
    assert e.extra["model_id"] == "job9" and e.extra["model_version"] == 1
    assert e.extra["model_role"] == "host" and e.extra["parties"] == "bank,tax"


def test_list_shows_the_latest_version_of_each_model(tmp_path):
    reg = ModelRegistry(tmp_path)
    assert reg.list() == []
    reg.save("a", role="guest", party="bank", part=_guest("a").to_bytes(), kind="k")
    reg.save("b", role="host", party="tax", part=_host("b").to_bytes(), kind="k")
    reg.save("a", role="guest", party="bank", part=_guest("a", 2.0).to_bytes(), kind="k")
    rows = {r["model_id"]: r for r in reg.list()}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["version"] == 2 and rows["a"]["versions"] == [1, 2]
    assert "part" not in rows["a"]  # listings never carry weights


def test_index_is_rebuilt_from_the_version_files(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.save("a", role="guest", party="bank", part=_guest("a").to_bytes(), kind="k")
    (tmp_path / "index.json").unlink()
    assert [r["model_id"] for r in ModelRegistry(tmp_path).list()] == ["a"]
    (tmp_path / "index.json").write_text("not json")
    assert ModelRegistry(tmp_path).get("a").version == 1


def test_a_modified_model_file_is_refused(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.save("a", role="guest", party="bank", part=_guest("a").to_bytes(), kind="k")
    path = tmp_path / "a" / "1.json"
    doc = json.loads(path.read_text())
    doc["part"]["bias"] = 99.0
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="digest"):
        reg.get("a")
    path.write_text("{broken")
    with pytest.raises(InvalidInput, match="unreadable"):
        reg.get("a")


def test_a_replaced_file_with_a_consistent_digest_differs_from_the_index(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.save("a", role="guest", party="bank", part=_guest("a").to_bytes(), kind="k")
    other = ModelRegistry(tmp_path / "elsewhere")
    other.save("a", role="guest", party="bank", part=_guest("a", 5.0).to_bytes(), kind="k")
    (tmp_path / "a" / "1.json").write_bytes((tmp_path / "elsewhere" / "a" / "1.json").read_bytes())
    with pytest.raises(InvalidInput, match="index"):
        reg.get("a")


def test_unknown_models_versions_and_bad_ids(tmp_path):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(NotFound, match="no model"):
        reg.get("missing")
    reg.save("a", role="guest", party="bank", part=_guest("a").to_bytes(), kind="k")
    with pytest.raises(NotFound, match="no version 3"):
        reg.get("a", 3)
    for bad in ("../etc", ".hidden", "a/b", "", "x" * 200):
        with pytest.raises(InvalidInput):
            reg.get(bad)
    with pytest.raises(InvalidInput):
        reg.save("ok", role="guest", party="bank", part=b"not json", kind="k")


def test_concurrent_saves_get_distinct_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            ModelRegistry(tmp_path).save("m", role="guest", party="bank",
                                         part=_guest("m", float(i)).to_bytes(), kind="k")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert reg.versions("m") == list(range(1, 9))
    assert {r["model_id"]: r["versions"] for r in reg.list()} == {"m": list(range(1, 9))}
    assert not list(tmp_path.glob("**/*.tmp"))
