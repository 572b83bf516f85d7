"""Shared data and a plaintext reference of the vertical protocol for the FL tests."""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import load_breast_cancer

from protocols.fl.data import Standardizer, batch_plan, epoch_order, labels_pm1
from protocols.fl.params import VerticalParams


def breast_cancer_split(guest_cols: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Guest features, host features, labels {0,1} of sklearn's breast-cancer set."""
    x, y = load_breast_cancer(return_X_y=True)
    return x[:, :guest_cols], x[:, guest_cols:], y


def reference_vertical(xg: np.ndarray, xhs: list[np.ndarray], y: np.ndarray,
                       p: VerticalParams) -> tuple[np.ndarray, float, list[np.ndarray],
                                                   list[float]]:
    """The same training in plaintext: same batches, Taylor gradient, L2, losses."""
    yy = labels_pm1(y)
    xs = Standardizer.fit(xg).apply(xg)
    hs = [Standardizer.fit(x).apply(x) for x in xhs]
    n = len(yy)
    batches = batch_plan(n, p.batch_size, p.seed)
    wg, b = np.zeros(xs.shape[1]), 0.0
    wh = [np.zeros(h.shape[1]) for h in hs]
    losses = []
    for epoch in range(p.epochs):
        lr = p.learning_rate / (1 + p.decay * epoch)
        total = 0.0
        for k in epoch_order(len(batches), p.seed, epoch):
            idx = batches[k]
            rows = len(idx)
            u = xs[idx] @ wg + b + sum(h[idx] @ w for h, w in zip(hs, wh, strict=True))
            d4 = u - 2 * yy[idx]
            reg = sum(float(w @ w) for w in [wg, *wh])
            total += rows * (math.log(2) + float(np.mean(-0.5 * yy[idx] * u + u * u / 8))
                             + 0.5 * p.l2 * reg)
            new_h = [w - lr * (h[idx].T @ d4 / (4 * rows) + p.l2 * w)
                     for h, w in zip(hs, wh, strict=True)]
            wg = wg - lr * (xs[idx].T @ d4 / (4 * rows) + p.l2 * wg)
            b = b - lr * float(d4.sum() / (4 * rows))
            wh = new_h
        losses.append(total / n)
    return wg, b, wh, losses
