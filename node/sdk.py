"""Python API: script joint jobs from a node's home directory.

    from node.sdk import Node

    with Node("/srv/pcnode/bank") as bank:
        model = bank.fl_train(hosts={"tax": "TAX_RESIDENTS"}, arbiter="operator",
                              dataset="BANK_APPLICANTS", label="default", epochs=10)
        print(model.id, model.metrics["auc"])
        scores = model.predict("BANK_NEW_APPLICANTS", out="scores.csv")

A :class:`Node` is this node, exactly as the CLI is: it holds the home's keys
and starts jobs at the peers, which must be running ``pcnode serve``. Every
call runs the same job kinds as the CLI (``psi``, ``fl-train``,
``fl-predict``), so grants are checked and the ledgers record everything.
Errors are :class:`pcnode.errors.PcnodeError` subclasses.

Put the script's work under ``if __name__ == "__main__":``: PSI on large
datasets runs in worker processes started with ``spawn``, which re-import the
main module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from node.jobs.kinds import Authorization
from node.services import NodeServices

EpochCallback = Callable[[int, int, "float | None"], None]
"""``on_epoch(epoch, epochs, loss)``, called at the guest after every epoch."""


class _Progress:
    """Adapts the SDK's callbacks to the job progress protocol (``epoch`` hook included)."""

    def __init__(self, progress: Callable[[str, int, int | None], None] | None,
                 on_epoch: EpochCallback | None) -> None:
        self._progress = progress
        self._on_epoch = on_epoch

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Forward a progress tick."""
        if self._progress is not None:
            self._progress(stage, done, total)

    def epoch(self, n: int, total: int, loss: float | None) -> None:
        """Forward the end of an epoch with its loss."""
        if self._on_epoch is not None:
            self._on_epoch(n, total, loss)


@dataclass
class PsiResult:
    """The requester's result of a PSI job."""

    job_id: str
    transcript_hash: str
    mode: str
    #: |X∩Y| where the mode reveals it.
    size: int | None
    #: Our intersecting keys (modes ``intersection`` and ``both``), else None.
    keys: list[str] | None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Predictions:
    """Probabilities of our rows found at every host, from :meth:`Node.fl_predict`."""

    job_id: str
    model_id: str
    keys: list[str]
    probabilities: np.ndarray
    #: Our keys not held by every host (not scored).
    rows_not_found: int
    #: AUC/accuracy/KS when the dataset has the model's label column, else None.
    metrics: dict[str, float] | None
    output: str | None = None


@dataclass
class TrainedModel:
    """The guest's view of a trained split model (its own part lives in the registry)."""

    id: str
    version: int
    job_id: str
    transcript_hash: str
    #: AUC, accuracy, KS and rows on the training rows.
    metrics: dict[str, float] | None
    #: The same on the held-out rows (``holdout > 0``), else None.
    holdout_metrics: dict[str, float] | None
    losses: list[float]
    epochs: int
    rows: int
    summary: dict[str, Any]
    node: Node | None = field(default=None, repr=False)

    def predict(self, dataset: str, *, out: str | None = None,
                host_datasets: Mapping[str, str] | None = None) -> Predictions:
        """Score our rows of ``dataset`` with this model (see :meth:`Node.fl_predict`)."""
        if self.node is None:
            raise RuntimeError("this TrainedModel is not attached to a Node")
        return self.node.fl_predict(self.id, dataset, out=out, host_datasets=host_datasets)


class Node:
    """This node, opened from its home directory (see the module docstring)."""

    def __init__(self, home: str | Path, user: str | None = None) -> None:
        self.services = NodeServices(home, user=user)

    @property
    def name(self) -> str:
        """This node's name."""
        return self.services.name

    def __enter__(self) -> Node:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the node's database handles."""
        self.services.close()

    # -- catalog ------------------------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        """Our registered datasets (metadata, columns, profile)."""
        return self.services.catalog.list_datasets()

    def models(self) -> list[dict[str, Any]]:
        """Our model registry: the latest version of each model part we hold."""
        from node.models import ModelRegistry

        return ModelRegistry.for_services(self.services).list()

    # -- jobs -----------------------------------------------------------------------------------

    def psi(self, peer: str, dataset: str, peer_dataset: str, *, mode: str = "intersection",
            normalization: str = "strip,nfkc",
            progress: Callable[[str, int, int | None], None] | None = None) -> PsiResult:
        """Private set intersection of our ``dataset``'s keys with ``peer``'s ``peer_dataset``."""
        from node.jobs.initiate import initiate
        from node.jobs.psi_job import new_salt

        self.services.catalog.open_dataset(dataset)
        params = {"mode": mode, "dataset": dataset, "peer_dataset": peer_dataset,
                  "salt": new_salt(), "normalization": normalization}
        outcome = initiate(self.services, "psi", {self.name: "requester", peer: "holder"},
                           params, auth=Authorization(dataset=dataset), progress=progress)
        result = outcome.result
        keys = None
        if result.intersection is not None:
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in result.intersection]
        return PsiResult(outcome.job_id, outcome.transcript_hash, mode, result.size, keys,
                         dict(outcome.summary))

    def fl_train(self, *, hosts: Mapping[str, str], arbiter: str, dataset: str, label: str,
                 features: Sequence[str] = (),
                 host_features: Mapping[str, Sequence[str]] | None = None,
                 epochs: int = 10, batch_size: int = 8192, backend: str = "ckks",
                 learning_rate: float = 0.15, l2: float = 0.0, tol: float = 1e-4,
                 patience: int = 2, seed: int | None = None, holdout: float = 0.0,
                 normalization: str = "strip,nfkc", on_epoch: EpochCallback | None = None,
                 progress: Callable[[str, int, int | None], None] | None = None,
                 timeout: float = 300.0) -> TrainedModel:
        """Train a vertical LR model as the guest.

        ``hosts`` maps each host node to its dataset code; ``features`` are our
        columns (default: every numeric column but the key and ``label``);
        ``host_features`` a host's columns (default: every numeric column its
        grant covers). ``on_epoch(epoch, epochs, loss)`` is called after every
        epoch. Every party saves its part in its model registry. ``timeout``
        bounds each wait for a peer message (raise it for very large datasets).
        """
        from node.jobs.fl_job import start_training

        outcome = start_training(
            self.services, hosts=sorted(hosts), arbiter=arbiter, dataset=dataset, label=label,
            host_datasets=dict(hosts), features=list(features),
            host_features={h: list(c) for h, c in (host_features or {}).items()},
            backend=backend, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            l2=l2, tol=tol, patience=patience, seed=seed, holdout=holdout,
            normalization=normalization, progress=_Progress(progress, on_epoch),
            timeout=timeout)
        s = outcome.summary
        return TrainedModel(id=s["model_id"], version=s["version"], job_id=outcome.job_id,
                            transcript_hash=outcome.transcript_hash, metrics=s["train"],
                            holdout_metrics=s["holdout"], losses=list(s["losses"]),
                            epochs=s["epochs"], rows=s["rows_train"], summary=dict(s), node=self)

    def fl_predict(self, model_id: str, dataset: str, *, out: str | None = None,
                   host_datasets: Mapping[str, str] | None = None,
                   progress: Callable[[str, int, int | None], None] | None = None
                   ) -> Predictions:
        """Score our rows of ``dataset`` with model ``model_id``; the hosts send partial scores.

        Rows not held by every host are not scored (``rows_not_found``).
        With ``out`` the probabilities are also written there as CSV.
        """
        from node.jobs.fl_job import start_prediction, write_predictions

        outcome = start_prediction(self.services, model=model_id, dataset=dataset,
                                   host_datasets=host_datasets, progress=progress)
        result = outcome.result
        if out:
            write_predictions(out, result)
        return Predictions(job_id=outcome.job_id, model_id=model_id, keys=list(result.keys),
                           probabilities=result.probabilities,
                           rows_not_found=result.rows_not_found, metrics=result.metrics,
                           output=out)


__all__ = ["EpochCallback", "Node", "Predictions", "PsiResult", "TrainedModel"]
