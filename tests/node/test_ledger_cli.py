"""`pcnode ledger ...` on real node homes: verify, tamper, checkpoint, offline proofs, export, replay."""

import json
import shutil
import sqlite3

import pytest

from node.jobs.initiate import initiate
from node.services import NodeServices
from tests.federation import make_federation, pcnode, serving, wait_until


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    fed = make_federation(root, ["tax", "bank", "operator"])
    with serving(fed.homes) as nodes:
        bank = NodeServices(fed.homes["bank"])
        out = initiate(bank, "selftest", {n: "member" for n in fed.homes}, {"length": 1000})
        for n in ("tax", "operator"):
            assert wait_until(lambda n=n: sum(
                e.event == "receipt.received" and e.job_id == out.job_id
                for e in nodes[n].ledger.entries()) == 2)
    return fed


def test_verify_intact_then_checkpoint_then_proof_offline(fed, tmp_path):
    home = fed.homes["tax"]
    out = json.loads(pcnode("ledger", "verify", home, "--json").stdout)
    assert out["ok"] and out["entries"] > 3
    pcnode("ledger", "checkpoint", home, "--out", tmp_path / "cp.json")
    proof = pcnode("ledger", "proof", home, "--index", 1, "--out", tmp_path / "proof.json").stdout
    assert json.loads(proof)["leaf_index"] == 1
    ok = pcnode("ledger", "check-proof", tmp_path / "proof.json", "--certificate",
                home / "tls/node.pem", "--json")
    assert json.loads(ok.stdout)["ok"]
    bad = json.loads(proof)
    bad["leaf_index"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert pcnode("ledger", "check-proof", tmp_path / "bad.json", check=False).returncode == 1


def test_export_and_replay_three_bundles(fed, tmp_path):
    paths = []
    for name, home in fed.homes.items():
        path = tmp_path / f"{name}.bundle"
        pcnode("ledger", "export", home, "--out", path)
        paths.append(path)
    report = json.loads(pcnode("ledger", "replay", *paths, "--ca",
                               fed.ca_dir / "ca.pem", "--json").stdout)
    assert report["ok"], report["findings"]
    assert report["summary"]["joint_jobs"] >= 1
    missing = pcnode("ledger", "replay", *paths[:2], "--json", check=False)
    assert missing.returncode == 1


def test_editing_one_byte_fails_verify_naming_the_entry(fed, tmp_path):
    home = tmp_path / "copy"
    shutil.copytree(fed.homes["bank"], home)
    con = sqlite3.connect(home / "ledger.db")
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    table = next(t for t in tables if "entr" in t)
    cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
    print(table, cols)
    body_col = next(c for c in cols if c in ("body", "entry", "data"))
    idx_col = next(c for c in cols if c in ("idx", "index", "seq", "position", "entry_index"))
    row = con.execute(f'select "{body_col}" from {table} where "{idx_col}" = 2').fetchone()
    raw = row[0]
    body = bytearray(raw if isinstance(raw, bytes) else raw.encode())
    pos = body.find(b'"event"')
    body[pos + 9] ^= 0x01  # one byte inside the event name
    new = bytes(body) if isinstance(raw, bytes) else body.decode()
    con.execute(f'update {table} set "{body_col}" = ? where "{idx_col}" = 2', (new,))
    con.commit()
    con.close()
    proc = pcnode("ledger", "verify", home, "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["errors"][0]["details"]["index"] == 2
    human = pcnode("ledger", "verify", home, check=False)
    assert "index 2" in human.stdout and "expected" in human.stdout
