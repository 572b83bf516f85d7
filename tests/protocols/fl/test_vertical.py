"""Vertical LR over the in-memory channel: accuracy, exactness against plaintext, backends."""

import functools

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from pcnode.errors import InvalidInput, ProtocolError
from protocols.fl import GuestModel, HostModel, VerticalParams, run_arbiter, run_guest, run_host
from protocols.memory import run_local

from .helpers import breast_cancer_split, reference_vertical


def _host(ch, xh, p, me):
    return run_host(ch, xh, p, me=me)


def _train(xg, xhs, y, p, **kw):
    parties = {p.guest: lambda ch: run_guest(ch, xg, y, p, on_epoch=kw.get("on_epoch")),
               p.arbiter: lambda ch: run_arbiter(ch, p)}
    for name, xh in zip(p.hosts, xhs, strict=True):
        parties[name] = functools.partial(_host, xh=xh, p=p, me=name)
    return run_local(parties, timeout=120)


def test_breast_cancer_ckks_auc_within_001_of_sklearn():
    xg, xh, y = breast_cancer_split()
    n = len(y)
    p = VerticalParams(guest="bank", hosts=["tax"], arbiter="operator", epochs=12,
                       batch_size=64, learning_rate=0.3, l2=1.0 / n, tol=1e-5, patience=3,
                       seed=7)
    seen = []
    res = _train(xg, [xh], y, p, on_epoch=lambda e, loss, rows, nbytes:
                 seen.append((e, loss, rows, nbytes)))
    guest, report = res["bank"]
    host = res["tax"]
    fed = roc_auc_score(y, guest.partial_score(xg) + host.partial_score(xh))
    xs = StandardScaler().fit_transform(np.hstack([xg, xh]))
    central = roc_auc_score(y, LogisticRegression(C=1.0, max_iter=5000).fit(xs, y)
                            .decision_function(xs))
    assert fed >= central - 0.01
    assert report.epochs == len(seen) and [s[0] for s in seen] == list(range(report.epochs))
    assert all(rows == n and nbytes > 0 for _, _, rows, nbytes in seen)
    assert report.losses[-1] < report.losses[0] < np.log(2)
    assert res["operator"].decryptions > 0
    # the parts link up and survive JSON round trips
    assert GuestModel.from_bytes(guest.to_bytes()).to_bytes() == guest.to_bytes()
    assert HostModel.from_bytes(host.to_bytes()).model_id == guest.model_id


def test_two_hosts_match_the_plaintext_reference_exactly_enough():
    x, y = make_classification(n_samples=900, n_features=12, n_informative=6, random_state=3)
    xg, xh1, xh2 = x[:, :3], x[:, 3:8], x[:, 8:]
    p = VerticalParams(guest="g", hosts=["h1", "h2"], arbiter="a", epochs=3, batch_size=300,
                       learning_rate=0.2, l2=0.01, tol=0.0, patience=10, seed=11)
    res = _train(xg, [xh1, xh2], y, p)
    wg, b, wh, losses = reference_vertical(xg, [xh1, xh2], y, p)
    guest, report = res["g"]
    np.testing.assert_allclose(guest.weights, wg, atol=1e-4)
    assert guest.bias == pytest.approx(b, abs=1e-4)
    np.testing.assert_allclose(res["h1"].weights, wh[0], atol=1e-4)
    np.testing.assert_allclose(res["h2"].weights, wh[1], atol=1e-4)
    np.testing.assert_allclose(report.losses, losses, atol=1e-4)


def test_paillier_backend_matches_the_reference():
    x, y = make_classification(n_samples=120, n_features=5, n_informative=3, random_state=5)
    xg, xh = x[:, :2], x[:, 2:]
    p = VerticalParams(guest="g", hosts=["h"], arbiter="a", backend="paillier", epochs=1,
                       batch_size=60, learning_rate=0.2, l2=0.01, seed=3)
    res = _train(xg, [xh], y, p)
    wg, _b, wh, losses = reference_vertical(xg, [xh], y, p)
    np.testing.assert_allclose(res["g"].model.weights, wg, atol=1e-4)
    np.testing.assert_allclose(res["h"].weights, wh[0], atol=1e-4)
    assert res["g"].report.losses[0] == pytest.approx(losses[0], abs=1e-4)


def test_labels_in_minus_one_one_give_the_same_model():
    xg, xh, y = breast_cancer_split()
    p = VerticalParams(guest="g", hosts=["h"], arbiter="a", epochs=1, batch_size=200, seed=1)
    a = _train(xg, [xh], y, p)["g"].model.weights
    b = _train(xg, [xh], 2 * y - 1, p)["g"].model.weights
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_small_batches_are_refused_before_anything_leaks():
    xg, xh, y = breast_cancer_split()
    p = VerticalParams(guest="g", hosts=["h"], arbiter="a", batch_size=30, seed=1)
    with pytest.raises(InvalidInput, match="too small"):
        _train(xg, [xh], y, p)


def test_parties_with_different_parameters_fail_fast():
    xg, xh, y = breast_cancer_split()
    p = VerticalParams(guest="g", hosts=["h"], arbiter="a", batch_size=200, seed=1)
    q = VerticalParams(guest="g", hosts=["h"], arbiter="a", batch_size=200, seed=1, l2=0.5)
    with pytest.raises(ProtocolError, match="different parameters"):
        run_local({"g": lambda ch: run_guest(ch, xg, y, p),
                   "h": lambda ch: run_host(ch, xh, q),
                   "a": lambda ch: run_arbiter(ch, p)}, timeout=60)


def test_misaligned_rows_are_refused():
    xg, xh, y = breast_cancer_split()
    p = VerticalParams(guest="g", hosts=["h"], arbiter="a", batch_size=200, seed=1)
    with pytest.raises(InvalidInput, match="aligned rows"):
        _train(xg, [xh[:-1]], y, p)


@pytest.mark.slow
def test_100k_make_classification_auc_within_001_of_sklearn():
    x, y = make_classification(n_samples=100_000, n_features=60, n_informative=20,
                               flip_y=0.05, class_sep=0.8, random_state=0)
    xg, xh = x[:, :10], x[:, 10:]
    n = len(y)
    p = VerticalParams(guest="bank", hosts=["tax"], arbiter="operator", epochs=6,
                       batch_size=8192, learning_rate=0.3, l2=1e-4, tol=1e-5, seed=2)
    res = _train(xg, [xh], y, p)
    guest, host = res["bank"].model, res["tax"]
    fed = roc_auc_score(y, guest.partial_score(xg) + host.partial_score(xh))
    xs = StandardScaler().fit_transform(x)
    central = roc_auc_score(y, LogisticRegression(C=1.0 / (1e-4 * n), max_iter=2000)
                            .fit(xs, y).decision_function(xs))
    assert fed >= central - 0.01
