"""Federated logistic regression: vertical (guest/hosts/arbiter) and horizontal.

Public entry points:

* :func:`run_guest`, :func:`run_host`, :func:`run_arbiter` — vertical training;
* :func:`run_horizontal_party`, :func:`run_horizontal_arbiter` — horizontal training;
* :func:`score_guest`, :func:`score_host` — joint scoring of a split model;
* :func:`metrics` — AUC, accuracy and KS for the guest.

See ``docs/FL.md`` for the protocols and what each party learns.
"""

from .horizontal import run_horizontal_arbiter, run_horizontal_party
from .model import ArbiterReport, GuestModel, HorizontalModel, HostModel, TrainReport
from .params import HorizontalParams, VerticalParams
from .scoring import metrics, score_guest, score_host
from .vertical import GuestResult, run_arbiter, run_guest, run_host

__all__ = [
    "ArbiterReport",
    "GuestModel",
    "GuestResult",
    "HorizontalModel",
    "HorizontalParams",
    "HostModel",
    "TrainReport",
    "VerticalParams",
    "metrics",
    "run_arbiter",
    "run_guest",
    "run_horizontal_arbiter",
    "run_horizontal_party",
    "run_host",
    "score_guest",
    "score_host",
]
