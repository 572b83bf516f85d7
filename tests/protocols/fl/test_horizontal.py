"""Horizontal LR: accuracy, and that no single update reaches anyone who could read it."""

import functools

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from protocols.fl import HorizontalModel, HorizontalParams, run_horizontal_arbiter, run_horizontal_party
from protocols.memory import MemoryNetwork, run_local

from .helpers import breast_cancer_split


def _party(ch, x, y, p, me):
    return run_horizontal_party(ch, x, y, p, me=me, seed=1)


def test_three_parties_reach_centralised_auc_and_the_arbiter_sees_only_sums():
    xg, xh, y = breast_cancer_split()
    x = np.hstack([xg, xh])
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), 3)
    names = ["a", "b", "c"]
    p = HorizontalParams(parties=names, arbiter="op", rounds=25, batch_size=32,
                         learning_rate=0.1, l2=1.0 / len(y), tol=1e-5)
    net = MemoryNetwork([*names, "op"])
    arbiter_got = []
    for ch in net.channels("op").values():
        ch.taps.append(lambda d, peer, tag, _p: arbiter_got.append((peer, tag))
                       if d == "recv" else None)
    rounds = []
    fns = {n: functools.partial(_party, x=x[idx], y=y[idx], p=p, me=n)
           for n, idx in zip(names, parts, strict=True)}
    fns["op"] = lambda ch: run_horizontal_arbiter(
        ch, p, on_epoch=lambda r, loss, rows, nbytes: rounds.append((r, loss, rows)))
    res = run_local(fns, network=net)
    model, report = res["a"]
    assert all(res[n][0].to_bytes() == model.to_bytes()
               for n in names[1:]) or np.allclose(res["b"][0].weights, model.weights)
    fed = roc_auc_score(y, model.predict_proba(x))
    xs = StandardScaler().fit_transform(x)
    central = roc_auc_score(y, LogisticRegression(C=1.0, max_iter=5000).fit(xs, y)
                            .decision_function(xs))
    assert fed >= central - 0.01
    assert report.losses[-1] < report.losses[0]
    assert rounds and rounds[-1][2] == len(y)
    # only the aggregator ever sends the arbiter ciphertexts; the others only say hello
    assert {tag for peer, tag in arbiter_got if peer != "a"} == {"fl/h/hello"}
    assert HorizontalModel.from_bytes(model.to_bytes()).to_bytes() == model.to_bytes()
