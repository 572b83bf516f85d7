"""``pcnode fl``: train a split LR model, score new rows jointly, list the model registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from node.cli.job_cmds import parse_peers
from node.cli.main import cli
from node.cli.output import console, emit, err_console, home_argument, json_option, table
from node.services import NodeServices
from pcnode.errors import InvalidInput


class FlProgress:
    """Progress callback for FL jobs: PSI bars, an epoch bar, and one line per epoch with the loss."""

    def __init__(self, bar: Progress | None) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Update (or add) the bar of ``stage``."""
        if self._bar is None:
            return
        with self._lock:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)

    def epoch(self, n: int, total: int, loss: float | None) -> None:
        """Print the loss of epoch ``n`` (called by the job at the end of every epoch)."""
        if self._bar is not None and loss is not None:
            self._bar.console.print(f"epoch {n}/{total}  loss {loss:.6f}")


@contextmanager
def fl_progress(enabled: bool) -> Iterator[FlProgress]:
    """An :class:`FlProgress` rendering on stderr (silent when not ``enabled``)."""
    if not enabled:
        yield FlProgress(None)
        return
    with Progress(TextColumn("{task.description:>18}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:
        yield FlProgress(bar)


def _columns(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


def _peer_items(values: tuple[str, ...]) -> list[str]:
    """``--peer-dataset tax:A,soc:B`` and repeated options alike."""
    out: list[str] = []
    for v in values:
        if v.count(":") > 1:
            out.extend(p for p in v.split(",") if p.strip())
        else:
            out.append(v)
    return out


@cli.group()
def fl() -> None:
    """Federated logistic regression (vertical: guest, hosts, arbiter)."""


@fl.command("train")
@home_argument
@click.option("--role", type=click.Choice(["guest", "host", "arbiter"]), default="guest",
              show_default=True, help="this node's role; only the guest starts training")
@click.option("--hosts", required=True, help="comma-separated host nodes, e.g. tax")
@click.option("--arbiter", required=True, help="the node holding the HE key, e.g. operator")
@click.option("--dataset", required=True, help="our dataset code (labels and our features)")
@click.option("--peer-dataset", "peer_datasets", multiple=True, required=True,
              help="HOST:CODE, each host's dataset (repeat, or comma-separate, for several)")
@click.option("--label", required=True, help="our 0/1 label column")
@click.option("--features", help="our feature columns, comma-separated "
              "[default: every numeric column except the key and the label]")
@click.option("--features-peer", "features_peer", multiple=True,
              help="HOST:COL1,COL2: a host's feature columns (repeat per host) "
                   "[default: every numeric column the host's grant covers]")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8192, show_default=True)
@click.option("--backend", type=click.Choice(["ckks", "paillier"]), default="ckks",
              show_default=True, help="homomorphic encryption scheme")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.15,
              show_default=True)
@click.option("--l2", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="L2 coefficient (sklearn's C corresponds to 1/(C·rows))")
@click.option("--tol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="early stopping: minimum loss improvement per epoch")
@click.option("--patience", type=click.IntRange(1), default=2, show_default=True)
@click.option("--seed", type=int, help="batch-plan seed (default: random)")
@click.option("--holdout", type=click.FloatRange(0, 0.5, max_open=True), default=0.0,
              show_default=True, help="fraction of aligned rows held out for evaluation")
@click.option("--normalize", "normalization", default="strip,nfkc", show_default=True,
              help="key normalisation for the PSI alignment")
@click.option("--timeout", type=click.FloatRange(1, 24 * 3600), default=300.0,
              show_default=True, help="seconds to wait for any one peer message "
              "(the arbiter waits through the alignment: raise it for huge datasets)")
@json_option
def train_cmd(home: str, role: str, hosts: str, arbiter: str, dataset: str,
              peer_datasets: tuple[str, ...], label: str, features: str | None,
              features_peer: tuple[str, ...], epochs: int, batch_size: int, backend: str,
              learning_rate: float, l2: float, tol: float, patience: int, seed: int | None,
              holdout: float, normalization: str, timeout: float, as_json: bool) -> None:
    """Train a vertical LR model with HOSTS (features) and ARBITER (HE key); we are the guest."""
    from node.jobs.fl_job import parse_peer_map, start_training

    if role != "guest":
        raise InvalidInput(f"a {role} does not start training",
                           hint=f"run `pcnode serve HOME` at the {role}; the guest starts the job "
                                "and the other nodes join it")
    host_list = sorted(parse_peers(hosts))
    if not host_list:
        raise InvalidInput("--hosts names no host")
    host_datasets = parse_peer_map(_peer_items(peer_datasets), host_list, "--peer-dataset")
    host_features = {h: _columns(cols) for h, cols in
                     parse_peer_map(list(features_peer), host_list, "--features-peer").items()}
    services = NodeServices(home)
    with fl_progress(not as_json) as progress:
        outcome = start_training(
            services, hosts=host_list, arbiter=arbiter, dataset=dataset, label=label,
            host_datasets=host_datasets, features=_columns(features),
            host_features=host_features, backend=backend, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, l2=l2, tol=tol,
            patience=patience, seed=seed, holdout=holdout, normalization=normalization,
            progress=progress, timeout=timeout)
    s = outcome.summary
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash, **s}
    emit(data, as_json, lambda: _show_training(outcome.job_id, s))


def _fmt_metrics(m: dict[str, float] | None) -> str:
    if not m:
        return "n/a (one class only)"
    return f"AUC {m['auc']:.4f}  accuracy {m['accuracy']:.4f}  KS {m['ks']:.4f}  ({int(m['rows'])} rows)"


def _show_training(job_id: str, s: dict[str, Any]) -> None:
    hosts = ", ".join(f"{h} {n}" for h, n in s["hosts"].items())
    console.print(f"FL job {job_id}: model [bold]{s['model_id']}[/] v{s['version']} "
                  f"({s['backend']}), {s['epochs']} epochs on {s['rows_train']} of "
                  f"{s['rows_aligned']} aligned rows (our {s['rows_own']}; common with {hosts})"
                  + (", converged" if s["converged"] else ""))
    console.print(f"  train   {_fmt_metrics(s['train'])}")
    if s.get("holdout") is not None or s.get("rows_holdout"):
        console.print(f"  holdout {_fmt_metrics(s.get('holdout'))}")
    console.print(f"  losses  {', '.join(f'{v:.5f}' for v in s['losses'])}")


@fl.command("predict")
@home_argument
@click.option("--model", "model_id", required=True, help="model id (see `pcnode fl models`)")
@click.option("--dataset", required=True, help="our dataset code with the rows to score")
@click.option("--peer-dataset", "peer_datasets", multiple=True,
              help="HOST:CODE to score against [default: the datasets the model was trained on]")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="CSV to write: our key and the probability of every scored row")
@json_option
def predict_cmd(home: str, model_id: str, dataset: str, peer_datasets: tuple[str, ...],
                out: str, as_json: bool) -> None:
    """Score our rows of DATASET with a split model; the hosts send their partial scores."""
    from node.jobs.fl_job import parse_peer_map, start_prediction, write_predictions
    from node.models import ModelRegistry

    services = NodeServices(home)
    host_datasets = None
    if peer_datasets:
        record = ModelRegistry.for_services(services).get(model_id)
        host_datasets = parse_peer_map(_peer_items(peer_datasets),
                                       sorted(record.meta.get("hosts", [])), "--peer-dataset")
    with fl_progress(not as_json) as progress:
        outcome = start_prediction(services, model=model_id, dataset=dataset,
                                   host_datasets=host_datasets, progress=progress)
    write_predictions(out, outcome.result)
    s = outcome.summary
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash,
            "output": out, **s}

    def human() -> None:
        console.print(f"FL predict job {outcome.job_id}: scored {s['rows_scored']} rows with "
                      f"model {s['model_id']} v{s['version']}; {s['rows_not_found']} of our "
                      f"keys are not held by every host and were not scored; written to {out}")
        if s.get("metrics"):
            console.print(f"  {_fmt_metrics(s['metrics'])} (labels found in {dataset})")

    emit(data, as_json, human)


@fl.command("models")
@home_argument
@json_option
def models_cmd(home: str, as_json: bool) -> None:
    """List this node's model registry (its parts of split models)."""
    from node.models import ModelRegistry

    services = NodeServices(home)
    rows = ModelRegistry.for_services(services).list()

    def human() -> None:
        if not rows:
            console.print("no models yet (train one with: pcnode fl train HOME ...)")
            return
        out = []
        for r in rows:
            meta = r.get("meta", {})
            train = (meta.get("metrics") or {}).get("train") or {}
            others = (meta.get("guest") if r["role"] == "host"
                      else ",".join(meta.get("hosts", [])))
            out.append([r["model_id"], r["version"], r["role"], meta.get("dataset", ""),
                        len(meta.get("features", [])), others,
                        f"{train['auc']:.4f}" if "auc" in train else "", r["created"]])
        table("models", ["model", "version", "role", "dataset", "features", "with", "train AUC",
                         "created"], out)

    emit(rows, as_json, human)


@fl.command("horizontal")
@home_argument
@click.option("--parties", required=True, help="the other parties holding the same features, e.g. bank2")
@click.option("--arbiter", required=True, help="the node holding the CKKS key, e.g. operator")
@click.option("--dataset", required=True, help="our dataset code")
@click.option("--peer-dataset", "peer_datasets", multiple=True, required=True,
              help="PARTY:CODE for each other party (repeat, or comma-separate)")
@click.option("--features", required=True, help="the shared feature columns, comma-separated")
@click.option("--label", required=True, help="the shared 0/1 label column")
@click.option("--rounds", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.option("--local-epochs", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.1,
              show_default=True)
@click.option("--l2", type=click.FloatRange(min=0), default=0.0, show_default=True)
@json_option
def horizontal_cmd(home: str, parties: str, arbiter: str, dataset: str,
                   peer_datasets: tuple[str, ...], features: str, label: str, rounds: int,
                   local_epochs: int, batch_size: int, learning_rate: float, l2: float,
                   as_json: bool) -> None:
    """Horizontal LR: every party trains locally; updates are summed under the arbiter's key."""
    from node.jobs.initiate import initiate
    from node.jobs.kinds import Authorization

    services = NodeServices(home)
    others = sorted(parse_peers(parties))
    datasets = {services.name: dataset}
    for item in _peer_items(peer_datasets):
        party, _, code = item.partition(":")
        if party not in others or not code:
            raise InvalidInput(f"--peer-dataset {item!r}: expected PARTY:CODE for one of {others}")
        datasets[party] = code
    missing = [p for p in others if p not in datasets]
    if missing:
        raise InvalidInput(f"--peer-dataset missing for {', '.join(missing)}")
    roles = {services.name: "party", **{p: "party" for p in others}, arbiter: "arbiter"}
    params = {"datasets": datasets, "features": _columns(features), "label": label,
              "rounds": rounds, "local_epochs": local_epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "l2": l2}
    with fl_progress(not as_json) as progress:
        outcome = initiate(services, "fl-horizontal", roles, params,
                           auth=Authorization(dataset=dataset), progress=progress)
    s = outcome.summary
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash, **s}
    emit(data, as_json, lambda: console.print(
        f"horizontal FL job {outcome.job_id}: model [bold]{s['model_id']}[/] v{s['version']}, "
        f"{s['rounds']} rounds on our {s['rows']} rows; losses "
        + ", ".join(f"{v:.5f}" for v in s["losses"])))
