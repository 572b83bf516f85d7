"""``fl-train`` and ``fl-predict``: vertical federated LR as node jobs.

Roles of ``fl-train``: one ``guest`` (labels and its own features; it starts
the job), one or more ``host`` (features) and one ``arbiter`` (the HE key;
no dataset, no grant). ``fl-predict`` has the guest and the hosts.

Every host checks the guest's grant before anything is exchanged::

    catalog.authorize(guest, host_dataset, "fl", feature_columns, "both")

One call checks the operation ``fl``, the feature columns **and** that the
grant's PSI modes include ``both``, which the alignment uses (the catalog's
``mode`` rule applies to whatever operation is asked). A grant for ``fl``
without ``both`` among its PSI modes is denied by rule ``mode``; ``psi``
among the grant's operations is not needed, because the alignment is part of
the ``fl`` job, and one job consumes one call of the quota.

Inside the job, over the same channels:

1. **Alignment.** The guest runs ECDH-PSI (:func:`protocols.psi.run_requester`)
   with every host (:func:`~protocols.psi.run_holder`) in mode ``both``, with
   the salt and key normalisation of the job spec. Each side maps the
   normalised key of each intersecting row to its row (the first occurrence
   of a duplicated key). With several hosts the guest keeps the keys common
   to all and sends each host a bitmap over that host's own pairwise
   intersection (sorted by normalised key) saying which survive. Both sides
   then sort the surviving keys by their normalised bytes and read their
   feature rows in that order, so row ``i`` is the same entity everywhere.
   Nothing beyond the ``both`` output is exchanged, except that with several
   hosts each host learns which of its pairwise-intersection keys are in the
   final training set (it has to, to know which of its rows take part).
2. **Training** with :func:`protocols.fl.run_guest` / ``run_host`` /
   ``run_arbiter``. After every epoch each party appends one ``job.epoch``
   ledger entry (the job's common fields, ``rows_in``, the epoch's
   ``bytes_in``/``bytes_out``, ``extra.epoch``; at the guest also
   ``result_digest`` = SHA-256 of a per-job random salt and the loss text; the
   salt is kept in the guest's model file, so the guest can open the
   commitment to an auditor) and reports ``progress("epoch", n, epochs)``.
3. **Evaluation.** The guest scores all aligned rows jointly
   (:func:`protocols.fl.score_guest` / ``score_host``) and computes AUC,
   accuracy and KS on the training rows and, with ``holdout > 0``, on a
   held-out split (drawn identically at every party from ``holdout_seed``).
   Joint scoring shows the guest each host's partial score per scored row;
   see docs/FL.md.
4. **Registry.** The guest and every host save their own part in their
   node's model registry (:mod:`node.models`; model id = job id), which
   appends ``model.saved`` with the part's digest. The arbiter keeps nothing.

``fl-predict``: the guest aligns the rows of a dataset with every host's
dataset by PSI (mode ``both``, same grant rule, with the model's feature
columns), the hosts send their partial scores and the guest gets a
probability for every row found at **every** host. Rows missing at some host
are not scored; their count is reported (``rows_not_found``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from node.jobs.kinds import Authorization, JobContext, JobKind, JobOutcome, register
from node.jobs.psi_job import DEFAULT_NORMALIZATION, new_salt
from node.jobs.runner import job_fields
from node.jobs.spec import JobSpec
from node.models import ModelRecord, ModelRegistry
from node.services import NodeServices
from pcnode.errors import InvalidInput, NotFound, PermissionDenied
from protocols.channel import DEFAULT_RECV_TIMEOUT
from protocols.psi import Normalization, PsiParams, run_holder, run_requester
from protocols.psi.normalize import encode_item

if TYPE_CHECKING:  # protocols.fl imports tenseal and scikit-learn: only when a job runs
    from node.catalog.datasets import DatasetHandle
    from protocols.fl import VerticalParams

#: The PSI output mode the alignment uses (and the grant must allow).
ALIGN_MODE = "both"
#: Ledger ``operation`` of both kinds.
OPERATION = "fl"
#: Registry kind of a vertical LR part.
MODEL_KIND = "fl-vertical-lr"
#: Declared column types usable as features or labels.
NUMERIC_TYPES = ("integer", "float", "boolean")
#: Below this many keys the PSI runs inline: a process pool costs more than it saves.
INLINE_PSI_ROWS = 20_000
#: Largest holdout fraction accepted.
MAX_HOLDOUT = 0.5
#: Tag of the guest's survivor bitmap (multi-host alignment).
TAG_KEEP = "fl/align/keep"
#: Training hyper-parameters carried in the spec (names of VerticalParams fields).
TRAIN_FIELDS = ("backend", "epochs", "batch_size", "learning_rate", "decay", "l2", "tol",
                "patience", "seed")


# --- alignment ---------------------------------------------------------------------------


@dataclass
class Aligned:
    """This party's rows of the aligned set, in the common order."""

    #: Raw key of each aligned row (first occurrence), in aligned order.
    keys: list[str]
    #: Row number of each aligned row in the dataset's read order.
    rows: np.ndarray
    #: Rows read (non-null keys) and distinct normalised keys of this party.
    own_rows: int
    own_distinct: int
    #: Guest only: pairwise intersection size per host.
    pairwise: dict[str, int] = field(default_factory=dict)


def _psi_params(p: Mapping[str, Any], n_keys: int) -> PsiParams:
    return PsiParams(mode=ALIGN_MODE, salt=bytes.fromhex(p["salt"]),
                     normalization=Normalization.parse(p.get("normalization",
                                                             DEFAULT_NORMALIZATION)),
                     collect_items=False, workers=0 if n_keys < INLINE_PSI_ROWS else None)


def _read_keys(handle: DatasetHandle) -> list[str]:
    return [k if isinstance(k, str) else str(k) for k in handle.read_keys()]


def _key_map(keys: list[str], rows: np.ndarray, norm: Normalization) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for r in rows.tolist():
        item = encode_item(keys[r], norm)
        if item is not None:
            out.setdefault(item, r)
    return out


def align_guest(ctx: JobContext, handle: DatasetHandle, hosts: Sequence[str]) -> Aligned:
    """PSI (mode ``both``) with every host; keep the keys common to all; tell the hosts."""
    p = ctx.spec.params
    keys = _read_keys(handle)
    params = _psi_params(p, len(keys))
    common: dict[bytes, int] | None = None
    per_host: dict[str, list[bytes]] = {}
    pairwise: dict[str, int] = {}
    distinct = 0
    for h in hosts:
        def progress(stage: str, done: int, total: int | None, h: str = h) -> None:
            ctx.progress(f"psi {h} {stage}", done, total)

        res = run_requester(ctx.channels[h], keys, params, progress=progress)
        assert res.rows is not None
        pairs = _key_map(keys, res.rows, params.normalization)
        per_host[h] = sorted(pairs)
        pairwise[h] = len(pairs)
        distinct = res.own_size
        common = pairs if common is None else {k: r for k, r in common.items() if k in pairs}
    assert common is not None
    for h in hosts:
        keep = np.fromiter((k in common for k in per_host[h]), dtype=bool,
                           count=len(per_host[h]))
        ctx.channels[h].send(TAG_KEEP, np.packbits(keep))
    order = sorted(common)
    rows = np.array([common[k] for k in order], dtype=np.int64)
    return Aligned([keys[r] for r in rows.tolist()], rows, len(keys), distinct, pairwise)


def align_host(ctx: JobContext, handle: DatasetHandle, guest: str) -> Aligned:
    """PSI (mode ``both``) with the guest as holder; keep the rows the guest says survive."""
    p = ctx.spec.params
    keys = _read_keys(handle)
    params = _psi_params(p, len(keys))
    ch = ctx.channels[guest]
    res = run_holder(ch, keys, params)
    assert res.rows is not None
    pairs = _key_map(keys, res.rows, params.normalization)
    inter = sorted(pairs)
    bits = ch.recv_array(TAG_KEEP, np.uint8, ((len(inter) + 7) // 8,))
    keep = np.unpackbits(bits, count=len(inter)).astype(bool) if inter else np.zeros(0, bool)
    rows = np.array([pairs[k] for k, kept in zip(inter, keep.tolist(), strict=True) if kept],
                    dtype=np.int64)
    return Aligned([keys[r] for r in rows.tolist()], rows, len(keys), res.own_size)


# --- data -------------------------------------------------------------------------------------


def column_types(handle: DatasetHandle) -> dict[str, str]:
    """Declared type of every column of ``handle``."""
    return {c["name"]: c["type"] for c in handle.columns}


def default_features(handle: DatasetHandle, exclude: Sequence[str] = (),
                     allowed: Sequence[str] | None = None) -> list[str]:
    """Numeric columns of ``handle`` other than the key and ``exclude`` (within ``allowed``)."""
    skip = {handle.key_column, *exclude}
    out = [n for n, t in column_types(handle).items()
           if t in NUMERIC_TYPES and n not in skip and (allowed is None or n in allowed)]
    return out


def check_features(handle: DatasetHandle, features: Sequence[str], label: str | None = None
                   ) -> None:
    """Feature columns must exist, be numeric, distinct, and be neither key nor label."""
    types = column_types(handle)
    if not features:
        raise InvalidInput(f"no feature columns to train on in dataset {handle.code!r}",
                           hint="name them with --features (numeric columns only)")
    if len(set(features)) != len(features):
        raise InvalidInput("a feature column is named twice")
    for c in features:
        if c not in types:
            raise InvalidInput(f"dataset {handle.code!r} has no column {c!r}",
                               hint=f"columns: {', '.join(types)}")
        if c == handle.key_column:
            raise InvalidInput(f"the key column {c!r} cannot be a feature",
                               hint="identifiers carry no signal and must not enter a model")
        if c == label:
            raise InvalidInput(f"the label column {c!r} cannot also be a feature")
        if types[c] not in NUMERIC_TYPES:
            raise InvalidInput(f"column {c!r} of dataset {handle.code!r} is {types[c]}, "
                               "not numeric", hint="use integer, float or boolean columns")


def _matrix(values: Mapping[str, np.ndarray], names: Sequence[str], rows: np.ndarray,
            what: str) -> np.ndarray:
    x = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = np.asarray(values[name], dtype=np.float64)[rows]
        bad = int(np.count_nonzero(~np.isfinite(col)))
        if bad:
            raise InvalidInput(f"{what} column {name!r} has {bad} missing or non-numeric "
                               "values among the aligned rows",
                               hint="impute or drop them at the source, or leave the column out")
        x[:, j] = col
    return x


def read_during(handle: DatasetHandle, names: Sequence[str], fn: Callable[[], Any]
                ) -> tuple[dict[str, np.ndarray], Any]:
    """Read ``names`` of ``handle`` in a thread while ``fn()`` (the PSI) runs; return both.

    Reading converts every value from text (see :mod:`node.catalog.coltypes`)
    and mostly runs in Arrow with the GIL released, so it overlaps the PSI.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="fl-read")
    try:
        future = pool.submit(handle.read_columns, list(names))
        out = fn()
        return future.result(), out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Stages:
    """Wall seconds of each stage of this party's run (reported in the summary)."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        """Close stage ``name`` (it began where the previous one ended)."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


def split_rows(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) row indices of ``n`` aligned rows; identical at every party."""
    if holdout <= 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    perm = np.random.default_rng([seed, 7]).permutation(n)
    k = round(n * holdout)
    return np.sort(perm[k:]), np.sort(perm[:k])


# --- per-epoch ledger entries -------------------------------------------------------------------


def loss_digest(salt: bytes, loss: float) -> str:
    """SHA-256 of the per-job salt and the loss text (``repr`` of the float)."""
    return hashlib.sha256(salt + repr(float(loss)).encode()).hexdigest()


class EpochRecorder:
    """The ``on_epoch`` callback: one ``job.epoch`` ledger entry and a progress tick per epoch.

    If the job's progress callable has an ``epoch(n, total, loss)`` method
    (the CLI's and the SDK's do), it is called too, so the initiator can show
    the loss.
    """

    def __init__(self, ctx: JobContext, epochs: int, loss_salt: bytes | None = None) -> None:
        self.ctx = ctx
        self.epochs = epochs
        self.loss_salt = loss_salt
        self.fields = job_fields(ctx.services, ctx.spec, ctx.authorization)
        self._in, self._out = self._traffic()
        self.losses: list[float] = []

    def _traffic(self) -> tuple[int, int]:
        chans = self.ctx.channels.values()
        return sum(c.bytes_in for c in chans), sum(c.bytes_out for c in chans)

    def __call__(self, epoch: int, loss: float | None, rows: int, nbytes: int) -> None:
        """Record epoch ``epoch`` (0-based from the protocol; 1-based in the ledger)."""
        n = epoch + 1
        now_in, now_out = self._traffic()
        fields = dict(self.fields)
        extra = {**fields.pop("extra"), "epoch": n, "epochs": self.epochs}
        digest = None
        if loss is not None and self.loss_salt is not None:
            digest = loss_digest(self.loss_salt, loss)
            self.losses.append(float(loss))
        self.ctx.services.ledger.append(
            "job.epoch", status="running", rows_in=int(rows), bytes_in=now_in - self._in,
            bytes_out=now_out - self._out, result_digest=digest, extra=extra, **fields)
        self._in, self._out = now_in, now_out
        self.ctx.progress("epoch", n, self.epochs)
        hook = getattr(self.ctx.progress, "epoch", None)
        if callable(hook):
            hook(n, self.epochs, loss)


# --- spec helpers ---------------------------------------------------------------------------------


def _roles(spec: JobSpec, role: str) -> list[str]:
    return sorted(n for n, r in spec.parties.items() if r == role)


def _str_param(p: Mapping[str, Any], key: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"an FL job needs a {key!r} parameter")
    return value


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{what} must be a list of column names")
    return list(value)


def _check_salt(p: Mapping[str, Any]) -> None:
    try:
        salt = bytes.fromhex(_str_param(p, "salt"))
    except ValueError:
        raise InvalidInput("the alignment salt must be hex") from None
    if not 16 <= len(salt) <= 64:
        raise InvalidInput("the alignment salt must be 16..64 bytes")
    Normalization.parse(p.get("normalization", DEFAULT_NORMALIZATION))


def _check_host_map(p: Mapping[str, Any], key: str, hosts: list[str], what: str) -> None:
    m = p.get(key)
    if not isinstance(m, dict) or sorted(m) != hosts:
        raise InvalidInput(f"{key} must name every host exactly: {', '.join(hosts)}")
    for h, v in m.items():
        if what == "code" and (not isinstance(v, str) or not v):
            raise InvalidInput(f"no dataset code for host {h}")
        if what == "columns":
            _names(v, f"feature columns of host {h}")


def vertical_params(spec: JobSpec) -> VerticalParams:
    """The protocol parameters of an ``fl-train`` spec (identical at every party)."""
    from protocols.fl import VerticalParams

    p = spec.params
    kw = {k: p[k] for k in TRAIN_FIELDS if k in p}
    try:
        vp = VerticalParams(guest=_roles(spec, "guest")[0], hosts=list(p["hosts"]),
                            arbiter=_roles(spec, "arbiter")[0], job_id=spec.job_id, **kw)
        vp.validate()
    except (TypeError, KeyError, IndexError) as exc:
        raise InvalidInput(f"malformed FL training parameters: {exc}") from None
    return vp


def _check_declared(services: NodeServices, code: str, columns: Sequence[str]) -> None:
    """Refuse non-numeric or key columns before the grant check (and before any quota is used).

    Column names and types are public catalog metadata, so saying which one is
    unsuitable reveals nothing. An unknown dataset or column is left to the
    grant check, which names the rule.
    """
    try:
        entry = services.catalog.get_dataset(code)
    except NotFound:
        return
    types = {c["name"]: c["type"] for c in entry["columns"]}
    for c in columns:
        if c == entry["key_column"]:
            raise InvalidInput(f"the key column {c!r} of {code!r} cannot be a feature",
                               hint="identifiers carry no signal and must not enter a model")
        if c in types and types[c] not in NUMERIC_TYPES:
            raise InvalidInput(f"column {c!r} of {code!r} is {types[c]}, not numeric",
                               hint="choose integer, float or boolean columns")


def _require_guest_initiator(spec: JobSpec) -> str:
    guests = _roles(spec, "guest")
    if len(guests) != 1:
        raise InvalidInput(f"an FL job needs exactly one guest, has {len(guests)}")
    if spec.initiator != guests[0]:
        raise InvalidInput("only the guest can start an FL job",
                           hint="run the command at the node that holds the labels")
    hosts = _roles(spec, "host")
    if not hosts:
        raise InvalidInput("an FL job needs at least one host")
    return guests[0]


# --- fl-train ---------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What the guest ends training with (the ``result`` of its outcome)."""

    record: ModelRecord
    losses: list[float]
    train_metrics: dict[str, float]
    holdout_metrics: dict[str, float] | None


class FlTrainJob(JobKind):
    """Vertical LR training: guest, hosts, arbiter (module docstring)."""

    name = "fl-train"
    operation = OPERATION
    roles = ("guest", "host", "arbiter")

    def mode(self, spec: JobSpec) -> str:
        """The alignment's PSI mode, which the hosts' grants must allow."""
        return ALIGN_MODE

    def validate(self, spec: JobSpec) -> None:
        """Roles (the guest starts; one arbiter; hosts) and every parameter."""
        super().validate(spec)
        _require_guest_initiator(spec)
        if len(_roles(spec, "arbiter")) != 1:
            raise InvalidInput("an FL training job needs exactly one arbiter")
        p = spec.params
        hosts = _roles(spec, "host")
        if p.get("hosts") != hosts:
            raise InvalidInput("the hosts parameter must list the host parties, sorted")
        _str_param(p, "dataset")
        _str_param(p, "label")
        _names(p.get("features", []), "features")
        _check_host_map(p, "host_datasets", hosts, "code")
        _check_host_map(p, "host_features", hosts, "columns")
        _check_salt(p)
        holdout = p.get("holdout", 0.0)
        if not isinstance(holdout, (int, float)) or not 0 <= holdout < MAX_HOLDOUT:
            raise InvalidInput(f"holdout must be a fraction in [0, {MAX_HOLDOUT})")
        if not isinstance(p.get("holdout_seed", 0), int):
            raise InvalidInput("holdout_seed must be an integer")
        vertical_params(spec)

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """Hosts check the guest's grant (``fl``, columns, mode ``both``); the arbiter needs none."""
        if role != "host":
            return Authorization()
        p = spec.params
        me = services.name
        code = p["host_datasets"][me]
        requested = list(p["host_features"][me])
        if requested:
            _check_declared(services, code, requested)
        grant = services.catalog.authorize(spec.initiator, code, OPERATION, requested,
                                           ALIGN_MODE)
        columns = requested
        if not columns:
            handle = services.catalog.open_dataset(code)
            columns = default_features(handle, allowed=grant.columns)
            if not columns:
                raise PermissionDenied(
                    f"denied by rule 'columns': grant {grant.id} covers no numeric column of "
                    f"{code!r} to train on", hint="apply for a grant on numeric columns",
                    rule="columns", grant_id=grant.id, dataset=code)
        return Authorization(grant_id=grant.id, operator=grant.operator, dataset=code,
                             purpose=grant.purpose, extra={"columns": ",".join(columns)})

    def run(self, ctx: JobContext) -> JobOutcome:
        """Run our role: align, train, evaluate, save our part."""
        if ctx.role == "arbiter":
            return self._arbiter(ctx)
        if ctx.role == "host":
            return self._host(ctx)
        return self._guest(ctx)

    # -- roles ---------------------------------------------------------------------------

    def _arbiter(self, ctx: JobContext) -> JobOutcome:
        from protocols.fl import run_arbiter

        vp = vertical_params(ctx.spec)
        rec = EpochRecorder(ctx, vp.epochs)
        report = run_arbiter(ctx.channels, vp, on_epoch=rec)
        return JobOutcome(summary={"role": "arbiter", "epochs": report.epochs,
                                   "decryptions": report.decryptions,
                                   "seconds": round(report.seconds, 3)})

    def _host(self, ctx: JobContext) -> JobOutcome:
        from protocols.fl import run_host, score_host

        p = ctx.spec.params
        vp = vertical_params(ctx.spec)
        guest = vp.guest
        code = ctx.authorization.dataset
        features = [c for c in str(ctx.authorization.extra.get("columns", "")).split(",") if c]
        stages = Stages()
        handle = ctx.services.catalog.open_dataset(code)
        check_features(handle, features)
        values, aligned = read_during(handle, features, lambda: align_host(ctx, handle, guest))
        x = _matrix(values, features, aligned.rows, "feature")
        del values
        train, _ = split_rows(len(aligned.rows), float(p.get("holdout", 0.0)),
                              int(p.get("holdout_seed", 0)))
        stages.done("align_and_load")
        rec = EpochRecorder(ctx, vp.epochs)
        model = run_host(ctx.channels, x[train], vp, me=ctx.me, on_epoch=rec)
        stages.done("train")
        score_host(ctx.channels, x, model, guest=guest)
        stages.done("score")
        meta = {"dataset": code, "features": features, "guest": guest, "hosts": vp.hosts,
                "arbiter": vp.arbiter, "backend": vp.backend, "grant_id":
                ctx.authorization.grant_id, "rows_aligned": len(aligned.rows),
                "rows_train": len(train),
                "normalization": p.get("normalization", DEFAULT_NORMALIZATION)}
        record = ModelRegistry.for_services(ctx.services).save(
            model.model_id, role="host", party=ctx.me, part=model.to_bytes(), kind=MODEL_KIND,
            job_id=ctx.spec.job_id, meta=meta,
            ledger_fields=job_fields(ctx.services, ctx.spec, ctx.authorization))
        return JobOutcome(summary={"role": "host", "model_id": record.model_id,
                                   "version": record.version, "rows_aligned": len(aligned.rows),
                                   "features": len(features), "seconds": stages.seconds},
                          result=record, rows_in=aligned.own_rows, rows_out=len(aligned.rows),
                          result_digest=record.digest)

    def _guest(self, ctx: JobContext) -> JobOutcome:
        from protocols.fl import run_guest, score_guest

        p = ctx.spec.params
        vp = vertical_params(ctx.spec)
        stages = Stages()
        handle = ctx.services.catalog.open_dataset(p["dataset"])
        label = p["label"]
        types = column_types(handle)
        if label not in types:
            raise InvalidInput(f"dataset {handle.code!r} has no label column {label!r}",
                               hint=f"columns: {', '.join(types)}")
        if label == handle.key_column:
            raise InvalidInput("the key column cannot be the label")
        features = list(p.get("features") or default_features(handle, exclude=[label]))
        check_features(handle, features, label)
        values, aligned = read_during(handle, [*features, label],
                                     lambda: align_guest(ctx, handle, vp.hosts))
        n = len(aligned.rows)
        if n == 0:
            raise InvalidInput("no row of our dataset is held by every host",
                               hint="check the datasets and the key normalisation")
        x = _matrix(values, features, aligned.rows, "feature")
        y = _matrix(values, [label], aligned.rows, "label")[:, 0]
        if not set(np.unique(y).tolist()) <= {0.0, 1.0} and \
                not set(np.unique(y).tolist()) <= {-1.0, 1.0}:
            raise InvalidInput(f"label column {label!r} must hold 0/1 (or -1/1) values")
        del values
        train, hold = split_rows(n, float(p.get("holdout", 0.0)), int(p.get("holdout_seed", 0)))
        stages.done("align_and_load")
        loss_salt = secrets.token_bytes(16)
        rec = EpochRecorder(ctx, vp.epochs, loss_salt)
        model, report = run_guest(ctx.channels, x[train], y[train], vp, on_epoch=rec)
        stages.done("train")
        ctx.progress("scoring", 0, n)
        probs = score_guest(ctx.channels, x, model)
        ctx.progress("scoring", n, n)
        stages.done("score")
        train_m = _safe_metrics(y[train], probs[train])
        hold_m = _safe_metrics(y[hold], probs[hold]) if len(hold) else None
        meta = {"dataset": handle.code, "key_column": handle.key_column, "features": features,
                "label": label, "hosts": vp.hosts, "host_datasets": dict(p["host_datasets"]),
                "arbiter": vp.arbiter, "params": asdict(vp),
                "normalization": p.get("normalization", DEFAULT_NORMALIZATION),
                "rows_aligned": n, "rows_train": len(train), "rows_holdout": len(hold),
                "pairwise": aligned.pairwise, "losses": report.losses,
                "loss_salt": loss_salt.hex(), "converged": report.converged,
                "metrics": {"train": train_m, "holdout": hold_m}}
        record = ModelRegistry.for_services(ctx.services).save(
            model.model_id, role="guest", party=ctx.me, part=model.to_bytes(), kind=MODEL_KIND,
            job_id=ctx.spec.job_id, meta=meta,
            ledger_fields=job_fields(ctx.services, ctx.spec, ctx.authorization))
        summary = {"role": "guest", "model_id": record.model_id, "version": record.version,
                   "backend": vp.backend, "rows_own": aligned.own_rows, "rows_aligned": n,
                   "rows_train": len(train), "rows_holdout": len(hold),
                   "hosts": aligned.pairwise, "features": features, "epochs": report.epochs,
                   "losses": [round(v, 6) for v in report.losses],
                   "converged": report.converged,
                   "epoch_seconds": [round(s, 3) for s in report.epoch_seconds],
                   "train": train_m, "holdout": hold_m,
                   "bytes": report.bytes_sent + report.bytes_received,
                   "seconds": stages.seconds}
        return JobOutcome(summary=summary,
                          result=TrainResult(record, report.losses, train_m, hold_m),
                          rows_in=aligned.own_rows, rows_out=n, result_digest=record.digest)


def _safe_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float] | None:
    """AUC/accuracy/KS, or None where they are undefined (one class only)."""
    from protocols.fl import metrics

    if len(np.unique(y)) < 2:
        return None
    m = metrics(y, p)
    return {k: round(float(v), 6) for k, v in m.items()}


# --- fl-predict -------------------------------------------------------------------------------


@dataclass
class Predictions:
    """What the guest ends scoring with (the ``result`` of its outcome)."""

    key_column: str
    keys: list[str]
    probabilities: np.ndarray
    rows_not_found: int
    metrics: dict[str, float] | None


class FlPredictJob(JobKind):
    """Joint scoring of new guest rows with a split model (module docstring)."""

    name = "fl-predict"
    operation = OPERATION
    roles = ("guest", "host")

    def mode(self, spec: JobSpec) -> str:
        """The alignment's PSI mode."""
        return ALIGN_MODE

    def validate(self, spec: JobSpec) -> None:
        """Roles (the guest starts; hosts), model id, datasets, salt."""
        super().validate(spec)
        _require_guest_initiator(spec)
        p = spec.params
        _str_param(p, "model")
        _str_param(p, "dataset")
        _check_host_map(p, "host_datasets", _roles(spec, "host"), "code")
        _check_salt(p)

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """A host needs its part of the model, trained with this guest, and the grant."""
        if role != "host":
            return Authorization()
        p = spec.params
        record = ModelRegistry.for_services(services).get(p["model"])
        if record.role != "host" or record.meta.get("guest") != spec.initiator:
            raise PermissionDenied(f"denied by rule 'model': model {p['model']!r} was not "
                                   f"trained here as a host for {spec.initiator}",
                                   hint="score with the model id printed by the training job",
                                   rule="model")
        code = p["host_datasets"][services.name]
        features = list(record.meta.get("features", []))
        grant = services.catalog.authorize(spec.initiator, code, OPERATION, features, ALIGN_MODE)
        return Authorization(grant_id=grant.id, operator=grant.operator, dataset=code,
                             purpose=grant.purpose,
                             extra={"model_id": record.model_id,
                                    "model_version": record.version})

    def run(self, ctx: JobContext) -> JobOutcome:
        """Guest: align, score, return probabilities. Host: align, send partial scores."""
        from protocols.fl import score_guest, score_host

        p = ctx.spec.params
        registry = ModelRegistry.for_services(ctx.services)
        if ctx.role == "host":
            version = ctx.authorization.extra.get("model_version")
            record = registry.get(p["model"], int(version) if version else None)
            model = record.host_model()
            features = list(record.meta["features"])
            handle = ctx.services.catalog.open_dataset(ctx.authorization.dataset)
            check_features(handle, features)
            values, aligned = read_during(handle, features,
                                          lambda: align_host(ctx, handle, ctx.spec.initiator))
            x = _matrix(values, features, aligned.rows, "feature")
            if len(aligned.rows) == 0:
                raise InvalidInput("no row to score is held here")
            score_host(ctx.channels, x, model, guest=ctx.spec.initiator)
            return JobOutcome(summary={"role": "host", "rows_scored": len(aligned.rows)},
                              rows_in=aligned.own_rows, rows_out=len(aligned.rows))
        record = registry.get(p["model"])
        if record.role != "guest":
            raise InvalidInput(f"model {p['model']!r} is a {record.role} part here",
                               hint="score from the node that trained it as the guest")
        model = record.guest_model()
        hosts = _roles(ctx.spec, "host")
        if sorted(model.hosts) != hosts:
            raise InvalidInput(f"model {record.model_id!r} was trained with hosts "
                               f"{', '.join(model.hosts)}", hint="score with the same hosts")
        features = list(record.meta["features"])
        label = record.meta.get("label")
        handle = ctx.services.catalog.open_dataset(p["dataset"])
        check_features(handle, features)
        with_label = bool(label) and label in column_types(handle)
        values, aligned = read_during(handle, [*features, *([label] if with_label else [])],
                                      lambda: align_guest(ctx, handle, hosts))
        n = len(aligned.rows)
        if n == 0:
            raise InvalidInput("none of the rows is held by every host; nothing to score",
                               hint="check the datasets and the key normalisation")
        x = _matrix(values, features, aligned.rows, "feature")
        probs = score_guest(ctx.channels, x, model)
        found = None
        if with_label:
            y = np.asarray(values[label], dtype=np.float64)[aligned.rows]
            if np.isfinite(y).all() and set(np.unique(y).tolist()) <= {-1.0, 0.0, 1.0}:
                found = _safe_metrics(y, probs)
        not_found = aligned.own_distinct - n
        digest = hashlib.sha256(np.ascontiguousarray(probs, dtype=np.float64).tobytes()
                                ).hexdigest()
        summary = {"role": "guest", "model_id": record.model_id, "version": record.version,
                   "rows_own": aligned.own_rows, "rows_scored": n,
                   "rows_not_found": not_found, "hosts": aligned.pairwise, "metrics": found}
        return JobOutcome(summary=summary,
                          result=Predictions(handle.key_column, aligned.keys, probs, not_found,
                                             found),
                          rows_in=aligned.own_rows, rows_out=n, result_digest=digest)


# --- starting jobs (CLI and SDK) ------------------------------------------------------------------


def parse_peer_map(values: Sequence[str], hosts: Sequence[str], what: str) -> dict[str, str]:
    """Parse ``host:VALUE`` items (``VALUE`` alone when there is one host)."""
    out: dict[str, str] = {}
    for item in values:
        host, sep, value = item.partition(":")
        if not sep:
            if len(hosts) != 1:
                raise InvalidInput(f"{what} {item!r} must be HOST:VALUE with several hosts")
            host, value = hosts[0], item
        host, value = host.strip(), value.strip()
        if host not in hosts:
            raise InvalidInput(f"{what} names {host!r}, which is not one of the hosts",
                               hint=f"hosts: {', '.join(hosts)}")
        if host in out:
            raise InvalidInput(f"{what} is given twice for host {host}")
        out[host] = value
    return out


def train_params(*, hosts: Sequence[str], dataset: str, label: str,
                 host_datasets: Mapping[str, str], features: Sequence[str] = (),
                 host_features: Mapping[str, Sequence[str]] | None = None,
                 backend: str = "ckks", epochs: int = 10, batch_size: int = 8192,
                 learning_rate: float = 0.15, decay: float = 0.0, l2: float = 0.0,
                 tol: float = 1e-4, patience: int = 2, seed: int | None = None,
                 holdout: float = 0.0, normalization: str = DEFAULT_NORMALIZATION
                 ) -> dict[str, Any]:
    """The ``fl-train`` spec parameters (fresh alignment salt and holdout seed)."""
    hosts = sorted(hosts)
    missing = [h for h in hosts if h not in host_datasets]
    if missing:
        raise InvalidInput(f"no dataset named for host(s) {', '.join(missing)}",
                           hint="pass --peer-dataset HOST:CODE for every host")
    hf = {h: list((host_features or {}).get(h, [])) for h in hosts}
    return {"dataset": dataset, "label": label, "features": list(features), "hosts": hosts,
            "host_datasets": {h: host_datasets[h] for h in hosts}, "host_features": hf,
            "backend": backend, "epochs": int(epochs), "batch_size": int(batch_size),
            "learning_rate": float(learning_rate), "decay": float(decay), "l2": float(l2),
            "tol": float(tol), "patience": int(patience), "seed": seed,
            "holdout": float(holdout), "holdout_seed": secrets.randbits(62),
            "salt": new_salt(), "normalization": normalization}


def start_training(services: NodeServices, *, hosts: Sequence[str], arbiter: str,
                   progress: Callable[[str, int, int | None], None] | None = None,
                   timeout: float = DEFAULT_RECV_TIMEOUT, **kw: Any) -> JobOutcome:
    """Start ``fl-train`` from this node as the guest; return the guest's outcome.

    ``kw`` are the arguments of :func:`train_params`. ``timeout`` bounds every
    wait for a peer's message; the arbiter waits through the whole alignment,
    so raise it for very large datasets.
    """
    from node.jobs.initiate import initiate

    params = train_params(hosts=hosts, **kw)
    services.catalog.open_dataset(params["dataset"])  # fail early: unknown or stale dataset
    parties = {services.name: "guest", arbiter: "arbiter", **{h: "host" for h in params["hosts"]}}
    if len(parties) != len(params["hosts"]) + 2:
        raise InvalidInput("guest, hosts and arbiter must be different nodes")
    return initiate(services, "fl-train", parties, params,
                    auth=Authorization(dataset=params["dataset"]), progress=progress,
                    timeout=timeout)


def start_prediction(services: NodeServices, *, model: str, dataset: str,
                     host_datasets: Mapping[str, str] | None = None,
                     progress: Callable[[str, int, int | None], None] | None = None,
                     timeout: float = DEFAULT_RECV_TIMEOUT) -> JobOutcome:
    """Start ``fl-predict`` with the guest part ``model`` of this node's registry."""
    from node.jobs.initiate import initiate

    record = ModelRegistry.for_services(services).get(model)
    if record.role != "guest":
        raise InvalidInput(f"model {model!r} is a {record.role} part at this node",
                           hint="predict from the node that trained it as the guest")
    hosts = sorted(record.meta.get("hosts", []))
    chosen = dict(record.meta.get("host_datasets", {}))
    chosen.update(host_datasets or {})
    services.catalog.open_dataset(dataset)
    params = {"model": record.model_id, "dataset": dataset,
              "host_datasets": {h: chosen.get(h, "") for h in hosts}, "salt": new_salt(),
              "normalization": record.meta.get("normalization", DEFAULT_NORMALIZATION)}
    parties = {services.name: "guest", **{h: "host" for h in hosts}}
    return initiate(services, "fl-predict", parties, params,
                    auth=Authorization(dataset=dataset), progress=progress, timeout=timeout)


def write_predictions(path: str, result: Predictions) -> None:
    """Write ``KEY,probability`` rows (the guest's own keys) to ``path`` atomically."""
    from node.files import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([result.key_column, "probability"])
    for key, prob in zip(result.keys, result.probabilities.tolist(), strict=True):
        w.writerow([key, f"{prob:.6f}"])
    atomic_write(path, buf.getvalue().encode())


register(FlTrainJob())
register(FlPredictJob())
