"""Vertical federated logistic regression: a guest, one or more hosts, an arbiter.

After Hardy et al. 2017 and FATE's coordinated (arbiter-based) hetero LR.
Rows are ALREADY ALIGNED: row ``i`` at every party is the same entity. The
node aligns them by PSI (mode ``both``, under a grant that allows it) before
calling these functions; this module never sees identifiers.

Per batch of ``B`` rows (``u`` = linear predictor, labels ``y`` in ±1):

1. each host sends the guest ``[[u_h]]`` (its partial predictor, encrypted under
   the arbiter's public key), plus ``[[sum u_h**2 + 4B·l2·||w_h||**2]]`` and,
   for the cross terms of several hosts, ``[[2·sum u_h u_h']]``;
2. the guest forms ``[[4d]] = sum_h [[u_h]] + (u_g - 2y)`` (``d`` is the residual
   of the Taylor loss ``log 2 - y·u/2 + u**2/8``) and sends it to every host;
3. every party computes ``Xᵀ[[4d]]`` for its own columns (the guest's include
   the bias column) and the guest the encrypted loss term; each adds a fresh
   encryption of a uniform mask and sends it to the arbiter;
4. the arbiter decrypts and returns masked values only; each party removes its
   mask and updates its own weights with L2 regularisation.

What each party learns: the guest learns its own gradient and the loss of
every batch (hence per epoch); a host learns its own gradient ``X_hᵀd/B``
(inherent to this protocol family; batches must be larger than a host's
feature count, which is enforced, or ``d`` could be solved for); the arbiter
learns only uniformly random values, the number of batches and each party's
feature count. The guest never receives host features or host partial
predictors in the clear.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from pcnode.errors import InvalidInput, ProtocolError

from ..channel import Channel
from . import he
from .data import Standardizer, batch_plan, check_matrix, epoch_order, labels_pm1
from .model import ArbiterReport, GuestModel, HostModel, TrainReport
from .params import MAX_PARTIAL_SCORE, MIN_ROWS_PER_FEATURE, EpochCallback, VerticalParams

Probe = Callable[..., None]
"""Audit hook ``probe(event, **fields)``: "gradient" at parties, "decrypted" at the arbiter."""

_LOG2 = math.log(2.0)


class GuestResult(NamedTuple):
    """The guest's model part and its training report."""

    model: GuestModel
    report: TrainReport


# --- shared helpers ------------------------------------------------------------------------


def _channels_for(channels: Mapping[str, Channel], peers: list[str], me: str) -> None:
    missing = [p for p in peers if p not in channels]
    if missing:
        raise InvalidInput(f"{me} has no channel to {', '.join(missing)}",
                           hint="pass one channel per peer, keyed by party name")


def _cancel_all(channels: Mapping[str, Channel], me: str, exc: BaseException) -> None:
    for ch in channels.values():
        try:
            ch.cancel(f"{me} stopped: {type(exc).__name__}")
        except Exception:  # noqa: S110 - best effort while already failing
            pass


def _traffic(channels: Mapping[str, Channel]) -> int:
    return sum(ch.bytes_in + ch.bytes_out for ch in channels.values())


def _check_partial(u: np.ndarray) -> None:
    if u.size and float(np.max(np.abs(u))) > MAX_PARTIAL_SCORE:
        raise InvalidInput(
            f"a partial linear predictor exceeds {MAX_PARTIAL_SCORE:g}; training diverged",
            hint="lower the learning rate or raise l2",
        )


def _row_bound(n_hosts: int) -> float:
    """Bound on |4d| = |u - 2y| given the per-party bound."""
    return MAX_PARTIAL_SCORE * (n_hosts + 1) + 2.0


def _bits(backend: str, rows: int, max_x: float, max_v: float) -> int:
    if backend == "paillier":
        return he.PAILLIER_MATRIX_BITS
    return he.matrix_bits(rows, max_x, max_v)


def _guarded(channels: Mapping[str, Channel], me: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as exc:
        _cancel_all(channels, me, exc)
        raise


# --- arbiter ---------------------------------------------------------------------------------


def run_arbiter(channels: Mapping[str, Channel], params: VerticalParams, *,
                on_epoch: EpochCallback | None = None, probe: Probe | None = None
                ) -> ArbiterReport:
    """Hold the HE key, decrypt masked sums for every party, never see a plain gradient."""
    params.validate()
    me = params.arbiter
    parties = [params.guest, *params.hosts]
    _channels_for(channels, parties, me)
    return _guarded(channels, me, lambda: _arbiter(channels, params, parties, on_epoch, probe))


def _arbiter(channels: Mapping[str, Channel], params: VerticalParams, parties: list[str],
             on_epoch: EpochCallback | None, probe: Probe | None) -> ArbiterReport:
    start = time.perf_counter()
    key = he.new_arbiter_key(params.backend)
    public = key.public_bytes()
    for p in parties:
        channels[p].send("fl/v/public", public)
    guest = channels[params.guest]
    plan = guest.recv_json("fl/v/plan")
    if plan.get("digest") != params.digest():
        raise ProtocolError("the guest runs this job with different parameters",
                            hint="every party must be given the same job parameters")
    n_batches = int(plan["n_batches"])
    n_out = int(plan["n_out"])
    epochs = 0

    def serve(party: str, tag: str) -> None:
        payload = channels[party].recv_bytes(tag)
        reply = key.decrypt_masked(payload, n_out)
        if probe is not None:
            probe("decrypted", party=party, tag=tag, values=reply)
        channels[party].send(tag + "/r", reply)

    for epoch in range(params.epochs):
        before = _traffic(channels)
        for step in range(n_batches):
            serve(params.guest, f"fl/v/grad/{epoch}/{step}")
            serve(params.guest, f"fl/v/loss/{epoch}/{step}")
            for h in params.hosts:
                serve(h, f"fl/v/grad/{epoch}/{step}")
        ctrl = guest.recv_json(f"fl/v/ctrl/{epoch}")
        epochs = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch, None, 0, _traffic(channels) - before)
        if ctrl.get("stop"):
            break
    return ArbiterReport(
        epochs=epochs, decryptions=key.decryptions,
        bytes_sent=sum(c.bytes_out for c in channels.values()),
        bytes_received=sum(c.bytes_in for c in channels.values()),
        seconds=time.perf_counter() - start,
    )


# --- host ------------------------------------------------------------------------------------


def run_host(channels: Mapping[str, Channel], x_host: np.ndarray, params: VerticalParams,
             *, me: str | None = None, on_epoch: EpochCallback | None = None,
             probe: Probe | None = None) -> HostModel:
    """Train this host's weights; return its part of the model.

    ``me`` is this host's name; it can be omitted when there is only one host.
    """
    params.validate()
    if me is None:
        if len(params.hosts) != 1:
            raise InvalidInput("run_host needs me= when a job has several hosts")
        me = params.hosts[0]
    if me not in params.hosts:
        raise InvalidInput(f"{me} is not a host of this job")
    _channels_for(channels, [params.guest, params.arbiter], me)
    return _guarded(channels, me,
                    lambda: _host(channels, check_matrix(x_host), params, me, on_epoch, probe))


def _host(channels: Mapping[str, Channel], x: np.ndarray, params: VerticalParams, me: str,
          on_epoch: EpochCallback | None, probe: Probe | None) -> HostModel:
    guest, arbiter = channels[params.guest], channels[params.arbiter]
    std = Standardizer.fit(x)
    xs = std.apply(x)
    n, f = xs.shape
    public = arbiter.recv_bytes("fl/v/public")
    guest.send_json("fl/v/hello", {"rows": n, "features": f, "digest": params.digest()})
    plan = guest.recv_json("fl/v/plan")
    if plan.get("digest") != params.digest():
        raise ProtocolError("the guest runs this job with different parameters")
    ops = he.open_ops(params.backend, public, int(plan["n_out"]))
    seed, loss_bits = int(plan["seed"]), int(plan["loss_bits"])
    batches = batch_plan(n, params.batch_size, seed)
    smallest = min(len(b) for b in batches)
    if smallest <= MIN_ROWS_PER_FEATURE * f:
        raise InvalidInput(
            f"batches of {smallest} rows are too small for {f} host features",
            hint=f"use batches larger than {MIN_ROWS_PER_FEATURE * f} rows",
        )
    earlier = params.hosts[:params.hosts.index(me)]
    max_x = float(np.max(np.abs(xs))) if xs.size else 1.0
    row_bound = _row_bound(len(params.hosts))
    matrices: dict[int, tuple[Any, int]] = {}
    groups = ops.groups(f)
    spare = None
    w = np.zeros(f)
    for epoch in range(params.epochs):
        before = _traffic(channels)
        lr = params.learning_rate / (1.0 + params.decay * epoch)
        for step, k in enumerate(epoch_order(len(batches), seed, epoch)):
            idx = batches[k]
            rows = len(idx)
            u = xs[idx] @ w
            _check_partial(u)
            guest.send(f"fl/v/u/{epoch}/{step}", ops.dump_rows(ops.encrypt_rows(u, he.ROW_BITS)))
            # loss terms: sum u**2 (+ regulariser scaled to the guest's formula), cross terms
            own = float(u @ u) + 4.0 * rows * params.l2 * float(w @ w)
            lt = ops.encrypt_sums(np.array([own]), he.ROW_BITS + loss_bits)
            for other in earlier:
                their = ops.load_rows(guest.recv_bytes(f"fl/v/uo/{epoch}/{step}/{other}"), rows)
                ops.add_sums(lt, ops.matvec(their, ops.prepare((2.0 * u)[:, None], loss_bits)))
            guest.send(f"fl/v/lossterm/{epoch}/{step}", ops.dump_sums(lt))
            # masks depend on no data: make them while the guest works
            masks = spare or ops.fresh_masks(groups)
            spare = None
            d4 = ops.load_rows(guest.recv_bytes(f"fl/v/d/{epoch}/{step}"), rows)
            if k not in matrices:
                bits = _bits(params.backend, rows, max_x, row_bound)
                matrices[k] = (ops.prepare(xs[idx], bits), bits)
            matrix, bits = matrices[k]
            payload, state = ops.mask(ops.matvec(d4, matrix), masks)
            arbiter.send(f"fl/v/grad/{epoch}/{step}", payload)
            spare = ops.fresh_masks(groups)  # for the next batch, while the arbiter decrypts
            total = ops.unmask(state, arbiter.recv(f"fl/v/grad/{epoch}/{step}/r"),
                               he.ROW_BITS + bits)
            if probe is not None:
                probe("gradient", party=me, epoch=epoch, batch=k, step=step, values=total,
                      scale_bits=he.ROW_BITS + bits)
            w = w - lr * (total / (4.0 * rows) + params.l2 * w)
        ctrl = guest.recv_json(f"fl/v/ctrl/{epoch}")
        if on_epoch is not None:
            on_epoch(epoch, None, n, _traffic(channels) - before)
        if ctrl.get("stop"):
            break
    return HostModel(model_id=str(plan["model_id"]), party=me, weights=w, mean=std.mean,
                     std=std.std, meta={"backend": params.backend, "job_id": params.job_id})


# --- guest -----------------------------------------------------------------------------------


def run_guest(channels: Mapping[str, Channel], x_guest: np.ndarray, y: np.ndarray,
              params: VerticalParams, *, on_epoch: EpochCallback | None = None,
              probe: Probe | None = None) -> GuestResult:
    """Drive the training as the label holder; return the guest's model part and report."""
    params.validate()
    _channels_for(channels, [*params.hosts, params.arbiter], params.guest)
    x = check_matrix(x_guest)
    labels = labels_pm1(y)
    if len(labels) != x.shape[0]:
        raise InvalidInput("labels and guest features have different row counts")
    return _guarded(channels, params.guest,
                    lambda: _guest(channels, x, labels, params, on_epoch, probe))


def _guest(channels: Mapping[str, Channel], x: np.ndarray, y: np.ndarray,
           params: VerticalParams, on_epoch: EpochCallback | None,
           probe: Probe | None) -> GuestResult:
    start = time.perf_counter()
    arbiter = channels[params.arbiter]
    hosts = {h: channels[h] for h in params.hosts}
    std = Standardizer.fit(x)
    xs = std.apply(x)
    n, f = xs.shape
    xb = np.hstack([xs, np.ones((n, 1))])  # the bias is the guest's last column
    public = arbiter.recv_bytes("fl/v/public")
    hello = {h: ch.recv_json("fl/v/hello") for h, ch in hosts.items()}
    for h, info in hello.items():
        if info.get("digest") != params.digest():
            raise ProtocolError(f"host {h} runs this job with different parameters")
        if int(info.get("rows", -1)) != n:
            raise InvalidInput(f"host {h} has {info.get('rows')} aligned rows, the guest {n}",
                               hint="align the parties' rows by PSI before training")
    seed = params.seed if params.seed is not None else secrets.randbits(62)
    batches = batch_plan(n, params.batch_size, seed)
    largest = max(len(b) for b in batches)
    smallest = min(len(b) for b in batches)
    if smallest <= MIN_ROWS_PER_FEATURE * (f + 1):
        raise InvalidInput(f"batches of {smallest} rows are too small for {f} guest features",
                           hint="use a larger batch size")
    max_features = max([f + 1] + [int(i["features"]) for i in hello.values()])
    n_out = he.choose_n_out(n, largest, max_features) if params.backend == "ckks" else 1
    n_hosts = len(hosts)
    u_bound = MAX_PARTIAL_SCORE * n_hosts
    a_bound = 4.0 + 2.0 * MAX_PARTIAL_SCORE
    loss_bits = _bits(params.backend, largest, a_bound + u_bound, u_bound)
    model_id = params.job_id or uuid.uuid4().hex
    plan = {"digest": params.digest(), "seed": seed, "n_out": n_out, "loss_bits": loss_bits,
            "n_batches": len(batches), "model_id": model_id}
    for ch in hosts.values():
        ch.send_json("fl/v/plan", plan)
    arbiter.send_json("fl/v/plan", {"digest": params.digest(), "n_batches": len(batches),
                                    "n_out": n_out})
    ops = he.open_ops(params.backend, public, n_out)

    max_x = float(np.max(np.abs(xb)))
    row_bound = _row_bound(n_hosts)
    matrices: dict[int, tuple[Any, int]] = {}
    w, bias = np.zeros(f), 0.0
    losses: list[float] = []
    epoch_seconds: list[float] = []
    best, bad_epochs, converged = math.inf, 0, False
    for epoch in range(params.epochs):
        t0 = time.perf_counter()
        before = _traffic(channels)
        lr = params.learning_rate / (1.0 + params.decay * epoch)
        loss_sum = 0.0
        for step, k in enumerate(epoch_order(len(batches), seed, epoch)):
            idx = batches[k]
            rows = len(idx)
            yb = y[idx]
            u_g = xs[idx] @ w + bias
            _check_partial(u_g)
            # [[U]] = sum of the hosts' encrypted partial predictors
            blobs = {h: ch.recv_bytes(f"fl/v/u/{epoch}/{step}") for h, ch in hosts.items()}
            enc_u = None
            for i, (h, blob) in enumerate(blobs.items()):
                for later in params.hosts[i + 1:]:
                    hosts[later].send(f"fl/v/uo/{epoch}/{step}/{h}", blob)
                part = ops.load_rows(blob, rows)
                if enc_u is None:
                    enc_u = part
                else:
                    ops.add_rows(enc_u, part)
            assert enc_u is not None
            # [[4d]] = [[U]] + u_g - 2y, to every host first (they wait for it)
            enc_d4 = ops.plus_plain_rows(enc_u, u_g - 2.0 * yb, he.ROW_BITS)
            d4_blob = ops.dump_rows(enc_d4)
            for ch in hosts.values():
                ch.send(f"fl/v/d/{epoch}/{step}", d4_blob)
            # loss: sum a·U with a = 2u_g - 4y
            a = 2.0 * u_g - 4.0 * yb
            loss_sums = ops.matvec(enc_u, ops.prepare(a[:, None], loss_bits))
            # own gradient (bias included), masked, to the arbiter
            if k not in matrices:
                bits = _bits(params.backend, rows, max_x, row_bound)
                matrices[k] = (ops.prepare(xb[idx], bits), bits)
            matrix, bits = matrices[k]
            payload, state = ops.mask(ops.matvec(enc_d4, matrix))
            arbiter.send(f"fl/v/grad/{epoch}/{step}", payload)
            for h, ch in hosts.items():
                ops.add_sums(loss_sums, ops.load_sums(ch.recv_bytes(f"fl/v/lossterm/{epoch}/{step}"),
                                                      1))
                del h
            lpayload, lstate = ops.mask(loss_sums)
            arbiter.send(f"fl/v/loss/{epoch}/{step}", lpayload)
            total = ops.unmask(state, arbiter.recv(f"fl/v/grad/{epoch}/{step}/r"),
                               he.ROW_BITS + bits)
            enc_part = float(ops.unmask(lstate, arbiter.recv(f"fl/v/loss/{epoch}/{step}/r"),
                                        he.ROW_BITS + loss_bits)[0])
            if probe is not None:
                probe("gradient", party=params.guest, epoch=epoch, batch=k,
                      step=step, values=total, scale_bits=he.ROW_BITS + bits)
            plain_part = float(-0.5 * (yb @ u_g) + 0.125 * (u_g @ u_g))
            batch_loss = (_LOG2 + (plain_part + enc_part / 8.0) / rows
                          + 0.5 * params.l2 * float(w @ w))
            loss_sum += batch_loss * rows
            grad = total / (4.0 * rows)
            w = w - lr * (grad[:-1] + params.l2 * w)
            bias = bias - lr * float(grad[-1])
        loss = loss_sum / n
        losses.append(loss)
        if best - loss < params.tol:
            bad_epochs += 1
        else:
            bad_epochs = 0
        best = min(best, loss)
        stop = bad_epochs >= params.patience
        converged = converged or stop
        for ch in [*hosts.values(), arbiter]:
            ch.send_json(f"fl/v/ctrl/{epoch}", {"stop": stop})
        epoch_seconds.append(time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(epoch, loss, n, _traffic(channels) - before)
        if stop:
            break
    model = GuestModel(model_id=model_id, party=params.guest, weights=w, mean=std.mean,
                       std=std.std, bias=bias, hosts=list(params.hosts),
                       meta={"backend": params.backend, "job_id": params.job_id})
    report = TrainReport(
        epochs=len(losses), losses=losses, converged=converged, rows=n,
        bytes_sent=sum(c.bytes_out for c in channels.values()),
        bytes_received=sum(c.bytes_in for c in channels.values()),
        seconds=time.perf_counter() - start, epoch_seconds=epoch_seconds,
    )
    return GuestResult(model, report)


__all__ = ["GuestResult", "Probe", "run_arbiter", "run_guest", "run_host"]
