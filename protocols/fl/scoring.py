"""Joint scoring of a split vertical model, and the guest's metrics.

Each host sends the guest its partial linear predictor ``standardise(x_h)·w_h``
per row, in the clear. What the guest learns: every host's partial score per
scored row. With one host this is no more than the score itself reveals (the
guest knows its own part and learns the total). With several hosts the guest
also learns how the total splits between them; this is accepted and
documented rather than masked.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from pcnode.errors import InvalidInput, ProtocolError

from ..channel import Channel
from .data import check_matrix
from .model import GuestModel, HostModel, sigmoid


def score_host(channels: Mapping[str, Channel], x_host: np.ndarray, model: HostModel,
               *, guest: str) -> int:
    """Send the guest this host's partial scores for aligned rows; return the row count."""
    ch = channels.get(guest)
    if ch is None:
        raise InvalidInput(f"no channel to the guest {guest}")
    request = ch.recv_json("fl/score/request")
    if request.get("model_id") != model.model_id:
        raise ProtocolError("the guest scores with a different model",
                            hint="use the host part trained in the same job")
    x = check_matrix(x_host)
    if int(request.get("rows", -1)) != x.shape[0]:
        raise InvalidInput("the guest and this host have different aligned row counts")
    ch.send("fl/score/partial", model.partial_score(x).astype(np.float64))
    return x.shape[0]


def score_guest(channels: Mapping[str, Channel], x_guest: np.ndarray,
                model: GuestModel) -> np.ndarray:
    """Probabilities for aligned rows, using every host's partial score."""
    x = check_matrix(x_guest)
    n = x.shape[0]
    for h in model.hosts:
        if h not in channels:
            raise InvalidInput(f"no channel to host {h}")
        channels[h].send_json("fl/score/request", {"model_id": model.model_id, "rows": n})
    total = model.partial_score(x)
    for h in model.hosts:
        total = total + channels[h].recv_array("fl/score/partial", np.float64, (n,))
    return sigmoid(total)


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds of TPR - FPR."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, accuracy at ``threshold`` and KS for labels in {0,1} or {-1,1}."""
    y01 = (np.asarray(y).ravel() > 0).astype(int)
    p = np.asarray(p, dtype=np.float64).ravel()
    if len(y01) != len(p):
        raise InvalidInput("labels and scores differ in length")
    if len(np.unique(y01)) < 2:
        raise InvalidInput("metrics need both classes among the labels")
    return {
        "auc": float(roc_auc_score(y01, p)),
        "accuracy": float(np.mean((p >= threshold) == (y01 == 1))),
        "ks": ks_statistic(y01, p),
        "rows": float(len(p)),
    }


__all__ = ["ks_statistic", "metrics", "score_guest", "score_host"]
