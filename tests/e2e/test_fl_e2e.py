"""Vertical FL across three nodes through the CLI: bank (guest), tax (host), operator (arbiter).

Data: sklearn's breast-cancer set split vertically (bank: 10 columns + label,
tax: 20 columns) with synthetic ids; each side holds a different subset of
the people, so the PSI alignment matters. Checks: AUC within 0.01 of sklearn
on the joined plaintext with the same regularisation, ledgers at all three
parties (start/end, one ``job.epoch`` per epoch, ``model.saved``, receipts),
model files in the registries, joint prediction, a grant without PSI mode
``both`` denied by rule, and a host killed mid-training giving a clean failure.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from node.catalog.sources import open_source
from node.models import ModelRegistry
from node.services import NodeServices
from protocols.fl.model import sigmoid
from tests.federation import REPO, make_federation, pcnode, serve_process, serving, wait_until

GUEST_COLS = 10
EPOCHS = 3
BATCH = 64
LR = 0.3


def _write(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _data(root: Path) -> dict:
    """CSV files for bank (train + new rows) and tax; returns ids, features and labels."""
    x, y = load_breast_cancer(return_X_y=True)
    n = len(y)
    ids = [f"5101{i:06d}" for i in range(n)]
    rng = np.random.default_rng(20240601)
    bank_rows = np.sort(rng.permutation(n)[:500])
    tax_rows = np.sort(rng.permutation(n)[:520])
    new_rows = np.sort(rng.permutation(n)[:120])
    gcols = [f"b{j}" for j in range(GUEST_COLS)]
    hcols = [f"t{j}" for j in range(x.shape[1] - GUEST_COLS)]
    # the bank's file lists its rows in another order than the tax bureau's
    _write(root / "bank.csv", ["applicant_id", *gcols, "default"],
           [[ids[i], *x[i, :GUEST_COLS], int(y[i])] for i in bank_rows[::-1]])
    _write(root / "bank_new.csv", ["applicant_id", *gcols],
           [[f" {ids[i]} ", *x[i, :GUEST_COLS]] for i in new_rows])  # padded keys: normalised
    _write(root / "tax.csv", ["resident_id", *hcols],
           [[ids[i], *x[i, GUEST_COLS:]] for i in tax_rows])
    return {"x": x, "y": y, "bank": set(bank_rows.tolist()), "tax": set(tax_rows.tolist()),
            "new": set(new_rows.tolist()), "gcols": gcols, "hcols": hcols, "ids": ids}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fl")
    fed = make_federation(root, ["bank", "tax", "operator"])
    data = _data(root)
    pcnode("dataset", "register", fed.homes["bank"], "--code", "applicants", "--name",
           "Applicants", "--file", root / "bank.csv", "--key", "applicant_id", "--level", "L2",
           "--share", "none")
    pcnode("dataset", "register", fed.homes["bank"], "--code", "new_applicants", "--name",
           "New applicants", "--file", root / "bank_new.csv", "--key", "applicant_id",
           "--level", "L2", "--share", "none")
    pcnode("dataset", "register", fed.homes["tax"], "--code", "residents", "--name", "Residents",
           "--file", root / "tax.csv", "--key", "resident_id", "--level", "L3", "--share",
           "conditional")
    with serving(fed.homes) as nodes:
        app = json.loads(pcnode("apply", fed.homes["bank"], "--peer", "tax", "--dataset",
                                "residents", "--ops", "fl", "--columns", ",".join(data["hcols"]),
                                "--purpose", "credit risk model", "--days", 30, "--json").stdout)
        pcnode("approve", fed.homes["tax"], app.get("id") or app.get("application_id"),
               "--psi-modes", "both", "--quota", 20)
        yield fed, root, data, nodes


def test_grant_without_psi_mode_both_is_denied_by_rule(world):
    # First in the file: after a denial at the host, the arbiter (opened before the host)
    # waits for its links until the manager gives up, so let that overlap the other tests.
    fed, root, _data, nodes = world
    tax = nodes["tax"]
    tax.catalog.register_dataset(code="residents_open", name="Residents (open)",
                                 source=open_source(file=root / "tax.csv"), key="resident_id",
                                 level="L1", share="unconditional", user="test")
    tax.catalog.create_standing_grant(peer="bank", dataset="residents_open", operations=["fl"],
                                      purpose="test", user="test", psi_modes=["intersection"])
    res = pcnode("fl", "train", fed.homes["bank"], "--hosts", "tax", "--arbiter", "operator",
                 "--dataset", "applicants", "--peer-dataset", "tax:residents_open", "--label",
                 "default", "--epochs", 1, "--batch-size", BATCH, check=False)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "rule 'mode'" in lines[0]
    denied = [e for e in tax.ledger.entries() if e.event == "job.denied"]
    assert denied and denied[-1].extra.get("rule") == "mode"
    assert denied[-1].grant_id


@pytest.fixture(scope="module")
def trained(world):
    fed, _root, data, _nodes = world
    common = sorted(data["bank"] & data["tax"])
    l2 = 1.0 / len(common)  # sklearn's C = 1 on the joined rows
    res = pcnode("fl", "train", fed.homes["bank"], "--role", "guest", "--hosts", "tax",
                 "--arbiter", "operator", "--dataset", "applicants", "--peer-dataset",
                 "tax:residents", "--label", "default", "--epochs", EPOCHS, "--batch-size", BATCH,
                 "--learning-rate", LR, "--l2", l2, "--tol", 0, "--backend", "ckks", "--json")
    return json.loads(res.stdout), common


def _job(svc: NodeServices, job_id: str) -> list:
    return [e for e in svc.ledger.entries() if e.job_id == job_id]


def test_auc_matches_sklearn_on_the_joined_plaintext(trained, world):
    out, common = trained
    _fed, _root, data, _nodes = world
    assert out["rows_aligned"] == len(common) and out["hosts"] == {"tax": len(common)}
    assert out["rows_own"] == len(data["bank"])
    assert out["epochs"] == EPOCHS and len(out["losses"]) == EPOCHS
    xj = StandardScaler().fit_transform(data["x"][common])
    yj = data["y"][common]
    sk = LogisticRegression(C=1.0, max_iter=5000).fit(xj, yj)
    sk_auc = roc_auc_score(yj, sk.decision_function(xj))
    assert abs(out["train"]["auc"] - sk_auc) <= 0.01, (out["train"], sk_auc)
    assert 0 <= out["train"]["ks"] <= 1 and out["train"]["accuracy"] > 0.85


def test_ledgers_epochs_receipts_and_registries(trained, world):
    out, _ = trained
    fed, _root, _data, nodes = world
    job_id = out["job_id"]
    bank = NodeServices(fed.homes["bank"])
    parties = {"bank": bank, "tax": nodes["tax"], "operator": nodes["operator"]}
    for name, svc in parties.items():
        assert wait_until(lambda s=svc: sum(e.event == "receipt.received"
                                            for e in _job(s, job_id)) == 2), name
        events = _job(svc, job_id)
        kinds = [e.event for e in events]
        assert kinds.count("job.started") == 1 and kinds.count("job.completed") == 1, kinds
        done = next(e for e in events if e.event == "job.completed")
        assert done.transcript_hash == out["transcript_hash"]
        epochs = [e for e in events if e.event == "job.epoch"]
        assert [e.extra["epoch"] for e in epochs] == list(range(1, EPOCHS + 1)), name
        assert all(e.operation == "fl" and e.bytes_in > 0 and e.bytes_out > 0 for e in epochs)
        if name == "bank":  # the guest commits to the loss; nobody else learns it
            assert all(e.result_digest and e.rows_in == out["rows_train"] for e in epochs)
        else:
            assert all(e.result_digest is None for e in epochs)
        assert kinds.index("job.started") < kinds.index("job.epoch") < kinds.index(
            "job.completed")
    assert _job(nodes["tax"], job_id)[1].event == "job.allowed"
    tax_done = next(e for e in _job(nodes["tax"], job_id) if e.event == "job.completed")
    assert tax_done.grant_id and tax_done.dataset == "residents" and tax_done.mode == "both"
    # each data party keeps its own part, versioned, with a model.saved entry
    for name, role in (("bank", "guest"), ("tax", "host")):
        path = fed.homes[name] / "models" / job_id / "1.json"
        assert path.is_file()
        record = ModelRegistry(fed.homes[name] / "models").get(job_id)
        assert record.role == role and record.version == 1 and record.model_id == out["model_id"]
        saved = [e for e in _job(parties[name], job_id) if e.event == "model.saved"]
        assert len(saved) == 1 and saved[0].result_digest == record.digest
    assert not (fed.homes["operator"] / "models" / job_id).exists()
    host_part = ModelRegistry(fed.homes["tax"] / "models").get(job_id)
    assert host_part.meta["features"] == _data_cols(world) and host_part.meta["guest"] == "bank"
    listed = json.loads(pcnode("fl", "models", fed.homes["bank"], "--json").stdout)
    mine = [m for m in listed if m["model_id"] == job_id]
    assert len(mine) == 1 and mine[0]["versions"] == [1] and mine[0]["role"] == "guest"
    assert mine[0]["meta"]["metrics"]["train"]["auc"] == out["train"]["auc"]


def _data_cols(world) -> list[str]:
    return world[2]["hcols"]


def test_predict_scores_rows_known_to_the_host(trained, world):
    out, _ = trained
    fed, root, data, _nodes = world
    dest = root / "scores.csv"
    res = json.loads(pcnode("fl", "predict", fed.homes["bank"], "--model", out["model_id"],
                            "--dataset", "new_applicants", "--out", dest, "--json").stdout)
    scored = sorted(data["new"] & data["tax"])
    assert res["rows_scored"] == len(scored)
    assert res["rows_not_found"] == len(data["new"] - data["tax"])
    with open(dest) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["applicant_id", "probability"]
    got = {r["applicant_id"].strip(): float(r["probability"]) for r in rows}
    # the same probabilities as the joined model computed in the clear
    g = ModelRegistry(fed.homes["bank"] / "models").get(out["model_id"]).guest_model()
    h = ModelRegistry(fed.homes["tax"] / "models").get(out["model_id"]).host_model()
    x = data["x"][scored]
    want = sigmoid(g.partial_score(x[:, :GUEST_COLS]) + h.partial_score(x[:, GUEST_COLS:]))
    assert sorted(got) == sorted(data["ids"][i] for i in scored)
    np.testing.assert_allclose([got[data["ids"][i]] for i in scored], want, atol=2e-6)


def test_human_output_shows_loss_per_epoch(world):
    fed, _root, _data, _nodes = world
    res = pcnode("fl", "train", fed.homes["bank"], "--hosts", "tax", "--arbiter", "operator",
                 "--dataset", "applicants", "--peer-dataset", "residents", "--label", "default",
                 "--epochs", 2, "--batch-size", BATCH, "--tol", 0, "--holdout", 0.2)
    assert "epoch 1/2  loss" in res.stderr and "epoch 2/2  loss" in res.stderr
    assert "train   AUC" in res.stdout and "holdout AUC" in res.stdout


def test_two_hosts_align_on_the_keys_common_to_all(tmp_path):
    """Python API, in process: guest + tax + soc + operator; parts agree with the joined data."""
    from node.sdk import Node

    fed = make_federation(tmp_path, ["bank", "tax", "soc", "operator"])
    x, y = load_breast_cancer(return_X_y=True)
    ids = [f"id-{i:04d}" for i in range(len(y))]
    rng = np.random.default_rng(5)
    held = {"bank": (500, range(0, 10)), "tax": (520, range(10, 20)), "soc": (480, range(20, 30))}
    rows = {}
    for name, (k, cols) in held.items():
        rows[name] = set(rng.permutation(len(y))[:k].tolist())
        header = ["id", *[f"c{j}" for j in cols], *(["default"] if name == "bank" else [])]
        _write(tmp_path / f"{name}.csv", header,
               [[ids[i], *x[i, list(cols)], *([int(y[i])] if name == "bank" else [])]
                for i in rng.permutation(sorted(rows[name]))])
        svc = NodeServices(fed.homes[name])
        svc.catalog.register_dataset(code=name.upper(), name=name, key="id", level="L2",
                                     source=open_source(file=tmp_path / f"{name}.csv"),
                                     share="none" if name == "bank" else "unconditional",
                                     user="test")
        if name != "bank":
            svc.catalog.create_standing_grant(peer="bank", dataset=name.upper(),
                                              operations=["fl"], purpose="test", user="test",
                                              psi_modes=["both"])
        svc.close()
    common = sorted(rows["bank"] & rows["tax"] & rows["soc"])
    seen = []
    with serving({n: fed.homes[n] for n in ("tax", "soc", "operator")}), \
            Node(fed.homes["bank"]) as bank:
        model = bank.fl_train(hosts={"tax": "TAX", "soc": "SOC"}, arbiter="operator",
                              dataset="BANK", label="default", epochs=2, batch_size=BATCH,
                              learning_rate=LR, tol=0,
                              on_epoch=lambda n, total, loss: seen.append((n, total, loss)))
        assert [s[:2] for s in seen] == [(1, 2), (2, 2)] and all(s[2] > 0 for s in seen)
        assert model.rows == len(common)
        assert model.summary["hosts"] == {"soc": len(rows["bank"] & rows["soc"]),
                                          "tax": len(rows["bank"] & rows["tax"])}
        parts = {n: ModelRegistry(fed.homes[n] / "models").get(model.id)
                 for n in ("bank", "tax", "soc")}
        xc = x[common]
        score = (parts["bank"].guest_model().partial_score(xc[:, 0:10])
                 + parts["tax"].host_model().partial_score(xc[:, 10:20])
                 + parts["soc"].host_model().partial_score(xc[:, 20:30]))
        # rows were aligned right: the parts applied to the joined rows give the job's AUC
        assert roc_auc_score(y[common], score) == pytest.approx(model.metrics["auc"], abs=1e-6)
        assert model.metrics["auc"] > 0.97
        scores = model.predict("BANK")
        assert len(scores.keys) == len(common)
        assert scores.rows_not_found == len(rows["bank"]) - len(common)


def _events(home: Path, event: str, job_id: str | None = None) -> list:
    svc = NodeServices(home)
    try:
        return [e for e in svc.ledger.entries()
                if e.event == event and (job_id is None or e.job_id == job_id)]
    finally:
        svc.close()


@pytest.mark.timeout(300)
def test_host_killed_mid_training_fails_cleanly_and_is_recorded(tmp_path):
    fed = make_federation(tmp_path, ["bank", "tax", "operator"])
    data = _data(tmp_path)
    bank, tax = NodeServices(fed.homes["bank"]), NodeServices(fed.homes["tax"])
    bank.catalog.register_dataset(code="applicants", name="A", key="applicant_id", level="L2",
                                  source=open_source(file=tmp_path / "bank.csv"), share="none",
                                  user="test")
    tax.catalog.register_dataset(code="residents", name="R", key="resident_id", level="L2",
                                 source=open_source(file=tmp_path / "tax.csv"),
                                 share="unconditional", user="test")
    tax.catalog.create_standing_grant(peer="bank", dataset="residents", operations=["fl"],
                                      columns=data["hcols"], purpose="test", user="test",
                                      psi_modes=["both"])
    tax.close()
    train = ["fl", "train", fed.homes["bank"], "--hosts", "tax", "--arbiter", "operator",
             "--dataset", "applicants", "--peer-dataset", "tax:residents", "--label", "default",
             "--epochs", 5000, "--tol", 0, "--batch-size", BATCH, "--json"]
    with serving({"operator": fed.homes["operator"]}) as nodes, \
            serve_process(fed.homes["tax"]) as tax_proc:
        guest = subprocess.Popen([sys.executable, "-m", "node.cli", *map(str, train)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO)
        try:
            assert wait_until(lambda: _events(fed.homes["tax"], "job.epoch"), timeout=180)
            tax_proc.send_signal(signal.SIGKILL)
            tax_proc.wait()
            _out, err = guest.communicate(timeout=180)
        finally:
            if guest.poll() is None:
                guest.kill()
                guest.wait()
        assert guest.returncode == 1
        error = json.loads(err.strip().splitlines()[-1])
        assert error["error"] in ("PeerUnavailable", "Cancelled"), error
        job_id = _events(fed.homes["tax"], "job.started")[-1].job_id
        failed = _events(fed.homes["bank"], "job.failed", job_id)
        assert len(failed) == 1 and failed[0].error
        assert wait_until(lambda: [e for e in nodes["operator"].ledger.entries()
                                   if e.event == "job.failed" and e.job_id == job_id],
                          timeout=120)
        assert not _events(fed.homes["bank"], "model.saved", job_id)
        assert not (fed.homes["bank"] / "models" / job_id).exists()
    bank.close()
