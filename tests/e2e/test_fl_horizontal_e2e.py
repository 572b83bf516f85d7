"""Horizontal FL across three nodes: two parties with the same features, an arbiter with the key."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from node.models import ModelRegistry
from node.services import NodeServices
from tests.federation import make_federation, pcnode, serving

FEATURES = ["f0", "f1", "f2", "f3", "f4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfl")
    fed = make_federation(root, ["bank", "bank2", "operator"])
    x, y = make_classification(n_samples=3000, n_features=5, n_informative=4, n_redundant=0,
                               random_state=3)
    halves = {"bank": slice(0, 1600), "bank2": slice(1600, 3000)}
    for name, rows in halves.items():
        with open(root / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", *FEATURES, "label"])
            for i, (xi, yi) in enumerate(zip(x[rows], y[rows], strict=True)):
                w.writerow([f"{name}-{i}", *[f"{v:.6f}" for v in xi], int(yi)])
        pcnode("dataset", "register", fed.homes[name], "--code", "loans", "--name", "Loans",
               "--file", root / f"{name}.csv", "--key", "id", "--level", "L2",
               "--share", "unconditional")
    pcnode("grant", fed.homes["bank2"], "--standing", "--peer", "bank", "--dataset", "loans",
           "--ops", "fl", "--purpose", "joint credit model")
    with serving(fed.homes) as nodes:
        yield fed, x, y, nodes


def test_parties_share_one_model_that_fits_the_union(world):
    fed, x, y, nodes = world
    out = json.loads(pcnode("fl", "horizontal", fed.homes["bank"], "--parties", "bank2",
                            "--arbiter", "operator", "--dataset", "loans",
                            "--peer-dataset", "bank2:loans", "--features", ",".join(FEATURES),
                            "--label", "label", "--rounds", 5, "--json").stdout)
    assert out["rounds"] >= 1 and out["rows"] == 1600
    ours = ModelRegistry.for_services(NodeServices(fed.homes["bank"])).get(out["model_id"])
    theirs = ModelRegistry.for_services(nodes["bank2"]).get(out["model_id"])
    a, b = ours.horizontal_model(), theirs.horizontal_model()
    # one shared set of weights; each party keeps its own party name in its copy
    assert np.array_equal(a.weights, b.weights) and a.bias == b.bias
    auc = roc_auc_score(y, a.predict_proba(x))
    assert auc > 0.85
    for svc in (NodeServices(fed.homes["bank"]), nodes["bank2"], nodes["operator"]):
        epochs = [e for e in svc.ledger.entries() if e.event == "job.epoch"
                  and e.job_id == out["job_id"]]
        assert len(epochs) == out["rounds"]


def test_a_party_without_a_grant_refuses(world):
    fed, _, _, _ = world
    proc = pcnode("fl", "horizontal", fed.homes["bank2"], "--parties", "bank",
                  "--arbiter", "operator", "--dataset", "loans", "--peer-dataset", "bank:loans",
                  "--features", ",".join(FEATURES), "--label", "label", "--rounds", 2,
                  check=False)
    assert proc.returncode == 1 and "rule" in proc.stderr
