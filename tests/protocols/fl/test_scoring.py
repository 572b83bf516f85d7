"""Joint scoring of a split model, metrics, and model serialisation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pcnode.errors import InvalidInput, ProtocolError
from protocols.fl import GuestModel, HostModel, metrics, score_guest, score_host
from protocols.fl.scoring import ks_statistic
from protocols.memory import run_local


def _parts(rng):
    g = GuestModel(model_id="m1", party="bank", weights=rng.normal(size=3),
                   mean=np.zeros(3), std=np.ones(3), bias=0.2, hosts=["tax"])
    h = HostModel(model_id="m1", party="tax", weights=rng.normal(size=4),
                  mean=np.ones(4), std=np.full(4, 2.0))
    return g, h


def test_joint_scoring_equals_the_joined_model():
    rng = np.random.default_rng(0)
    g, h = _parts(rng)
    xg, xh = rng.normal(size=(50, 3)), rng.normal(size=(50, 4))
    res = run_local({"bank": lambda ch: score_guest(ch, xg, g),
                     "tax": lambda ch: score_host(ch, xh, h, guest="bank")})
    z = xg @ g.weights + 0.2 + ((xh - 1) / 2) @ h.weights
    np.testing.assert_allclose(res["bank"], 1 / (1 + np.exp(-z)))
    assert res["tax"] == 50


def test_scoring_with_the_wrong_model_part_is_refused():
    rng = np.random.default_rng(0)
    g, h = _parts(rng)
    h.model_id = "other"
    with pytest.raises(ProtocolError, match="different model"):
        run_local({"bank": lambda ch: score_guest(ch, np.zeros((5, 3)), g),
                   "tax": lambda ch: score_host(ch, np.zeros((5, 4)), h, guest="bank")},
                  timeout=10)


def test_metrics_match_sklearn_and_ks_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    m = metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)))
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    grid = np.unique(p)
    ks = max(abs(np.searchsorted(pos, t, "right") / len(pos)
                 - np.searchsorted(neg, t, "right") / len(neg)) for t in grid)
    assert ks_statistic(y, p) == pytest.approx(ks)
    assert metrics(2 * y - 1, p)["auc"] == m["auc"]
    with pytest.raises(InvalidInput):
        metrics(np.ones(5), np.ones(5))


def test_model_parts_round_trip_as_json_and_refuse_garbage():
    rng = np.random.default_rng(2)
    g, h = _parts(rng)
    assert GuestModel.from_bytes(g.to_bytes()).to_bytes() == g.to_bytes()
    assert HostModel.from_bytes(h.to_bytes()).to_bytes() == h.to_bytes()
    assert g.to_bytes().startswith(b"{")
    for bad in (b"not json", h.to_bytes(), b'{"format": "pcnode.fl.lr/1", "kind": "guest"}'):
        with pytest.raises(InvalidInput):
            GuestModel.from_bytes(bad)
