"""Horizontal federated logistic regression: parties with the same features, one arbiter.

Protocol (semi-honest parties, non-colluding arbiter):

1. The arbiter makes a CKKS key and sends every party the public context only.
2. Standardisation: every party encrypts ``[sum x, sum x**2, n]`` of its rows;
   the *aggregator* (one of the parties) adds the ciphertexts and sends only
   the sum to the arbiter, which decrypts it and broadcasts the global mean
   and standard deviation. All parties then share one scaling.
3. Each round every party evaluates the current global model on its rows
   (loss), trains ``local_epochs`` of mini-batch gradient descent from it, and
   encrypts ``[w·n, b·n, loss·n, n]``. The aggregator sums all parties'
   ciphertexts (it cannot decrypt them) and sends the sum to the arbiter. The
   arbiter decrypts *only that sum*, divides by ``n``, rounds to
   :data:`RELEASE_DECIMALS` decimals and broadcasts the new global model, the
   sample-weighted loss and whether to stop.

Nobody sees a single party's update: the aggregator holds ciphertexts under a
key it does not have, and the arbiter never receives an individual ciphertext.
What is revealed: every party and the arbiter learn the global model and loss
after each round (the output), the global feature means and deviations and the
total row count. With exactly two parties, each can subtract its own update
from the average and so learns the other's; that is inherent in averaging.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping

import numpy as np

from pcnode.errors import InvalidInput, ProtocolError

from ..channel import Channel
from .data import Standardizer, check_matrix, labels_pm1
from .model import ArbiterReport, HorizontalModel, TrainReport, sigmoid
from .params import EpochCallback, HorizontalParams
from .vertical import _cancel_all, _channels_for, _traffic

#: CKKS parameters for additive aggregation: N = 8192 with 200 bits of modulus
#: (128-bit security needs <= 218) and a 2**40 scale leave ~2**59 of headroom
#: for sums of weights times row counts.
HORIZONTAL_POLY_DEGREE = 8192
HORIZONTAL_COEFF_BITS = (60, 40, 40, 60)
HORIZONTAL_SCALE_BITS = 40

#: Decrypted CKKS aggregates are rounded to this many decimals before release,
#: so low-order bits of the key holder's decryption never leave the arbiter.
RELEASE_DECIMALS = 8


def _ckks_context():
    import tenseal as ts

    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=HORIZONTAL_POLY_DEGREE,
                     coeff_mod_bit_sizes=list(HORIZONTAL_COEFF_BITS))
    ctx.global_scale = 2.0**HORIZONTAL_SCALE_BITS
    return ctx


def _public(ctx) -> bytes:
    return ctx.serialize(save_public_key=True, save_secret_key=False,
                         save_galois_keys=False, save_relin_keys=False)


def _load_ctx(data: bytes):
    import tenseal as ts

    ctx = ts.context_from(data)
    if ctx.has_secret_key():
        raise ProtocolError("the arbiter sent a context with its secret key")
    return ctx


def _encrypt(ctx, values: np.ndarray) -> bytes:
    import tenseal as ts

    return ts.ckks_vector(ctx, [float(v) for v in values]).serialize()


def _load_vec(ctx, data: bytes, size: int):
    import tenseal as ts

    try:
        vec = ts.ckks_vector_from(ctx, data)
    except Exception as exc:  # tenseal raises bare exceptions for bad bytes
        raise ProtocolError(f"malformed encrypted update: {exc}") from None
    if vec.size() != size:
        raise ProtocolError("encrypted update has the wrong length", expected=size,
                            actual=vec.size())
    return vec


# --- arbiter ---------------------------------------------------------------------------------


def run_horizontal_arbiter(channels: Mapping[str, Channel], params: HorizontalParams, *,
                           on_epoch: EpochCallback | None = None) -> ArbiterReport:
    """Decrypt only aggregated sums; broadcast the global model each round."""
    params.validate()
    _channels_for(channels, params.parties, params.arbiter)
    try:
        return _h_arbiter(channels, params, on_epoch)
    except BaseException as exc:
        _cancel_all(channels, params.arbiter, exc)
        raise


def _h_arbiter(channels: Mapping[str, Channel], params: HorizontalParams,
               on_epoch: EpochCallback | None) -> ArbiterReport:
    import tenseal as ts

    start = time.perf_counter()
    ctx = _ckks_context()
    public = _public(ctx)
    for p in params.parties:
        channels[p].send("fl/h/public", public)
    hello = {p: channels[p].recv_json("fl/h/hello") for p in params.parties}
    widths = {int(h["features"]) for h in hello.values()}
    if any(h.get("digest") != params.digest() for h in hello.values()) or len(widths) != 1:
        raise ProtocolError("parties disagree on the job parameters or the feature count",
                            hint="give every party the same parameters and columns")
    f = widths.pop()
    model_id = params.job_id or uuid.uuid4().hex
    agg = channels[params.aggregator_name]
    decryptions = 0

    def open_sum(tag: str, size: int) -> np.ndarray:
        nonlocal decryptions
        vec = ts.ckks_vector_from(ctx, agg.recv_bytes(tag))
        if vec.size() != size:
            raise ProtocolError("aggregated sum has the wrong length")
        decryptions += 1
        return np.round(np.asarray(vec.decrypt()), RELEASE_DECIMALS)

    stats = open_sum("fl/h/stats", 2 * f + 1)
    n = float(round(stats[-1]))  # a count: CKKS returns it to within ~1e-7
    if n < 2:
        raise ProtocolError("the parties hold fewer than two rows in total")
    mean = stats[:f] / n
    std = np.sqrt(np.maximum(stats[f:2 * f] / n - mean**2, 0.0))
    std = np.where(std > 1e-9, std, 1.0)
    for p in params.parties:
        channels[p].send_json("fl/h/scaling", {"mean": mean.tolist(), "std": std.tolist(),
                                               "model_id": model_id})
    best, bad, rounds = math.inf, 0, 0
    for r in range(params.rounds):
        before = _traffic(channels)
        s = open_sum(f"fl/h/sum/{r}", f + 3)
        if abs(s[-1] - n) > 0.5:
            raise ProtocolError("row count of an aggregated update does not match")
        w, b, loss = s[:f] / n, s[f] / n, s[f + 1] / n
        if best - loss < params.tol:
            bad += 1
        else:
            bad = 0
        best = min(best, loss)
        stop = bad >= params.patience or r == params.rounds - 1
        msg = {"w": w.tolist(), "b": float(b), "loss": float(loss), "stop": stop}
        for p in params.parties:
            channels[p].send_json(f"fl/h/global/{r}", msg)
        rounds = r + 1
        if on_epoch is not None:
            on_epoch(r, float(loss), int(n), _traffic(channels) - before)
        if stop:
            break
    return ArbiterReport(epochs=rounds, decryptions=decryptions,
                         bytes_sent=sum(c.bytes_out for c in channels.values()),
                         bytes_received=sum(c.bytes_in for c in channels.values()),
                         seconds=time.perf_counter() - start)


# --- party -----------------------------------------------------------------------------------


def run_horizontal_party(channels: Mapping[str, Channel], x: np.ndarray, y: np.ndarray,
                         params: HorizontalParams, *, me: str,
                         on_epoch: EpochCallback | None = None,
                         seed: int | None = None) -> tuple[HorizontalModel, TrainReport]:
    """Train locally each round and take part in the encrypted averaging."""
    params.validate()
    if me not in params.parties:
        raise InvalidInput(f"{me} is not a party of this job")
    peers = [params.arbiter] + ([p for p in params.parties if p != me]
                                if me == params.aggregator_name else [params.aggregator_name])
    _channels_for(channels, peers, me)
    xm = check_matrix(x)
    labels = labels_pm1(y)
    if len(labels) != xm.shape[0]:
        raise InvalidInput("labels and features have different row counts")
    try:
        return _h_party(channels, xm, labels, params, me, on_epoch, seed)
    except BaseException as exc:
        _cancel_all(channels, me, exc)
        raise


def _local_loss(xs: np.ndarray, y01: np.ndarray, w: np.ndarray, b: float, l2: float) -> float:
    z = xs @ w + b
    # log(1 + exp(-y z)) with y in ±1, stable
    yz = np.where(y01 > 0, z, -z)
    return float(np.mean(np.logaddexp(0.0, -yz)) + 0.5 * l2 * float(w @ w))


def _h_party(channels: Mapping[str, Channel], x: np.ndarray, y: np.ndarray,
             params: HorizontalParams, me: str, on_epoch: EpochCallback | None,
             seed: int | None) -> tuple[HorizontalModel, TrainReport]:
    start = time.perf_counter()
    arbiter = channels[params.arbiter]
    is_agg = me == params.aggregator_name
    others = [p for p in params.parties if p != me]
    n, f = x.shape
    ctx = _load_ctx(arbiter.recv_bytes("fl/h/public"))
    arbiter.send_json("fl/h/hello", {"features": f, "digest": params.digest()})

    def aggregate(tag: str, mine: bytes, size: int) -> None:
        if not is_agg:
            channels[params.aggregator_name].send(tag, mine)
            return
        acc = _load_vec(ctx, mine, size)
        for p in others:
            acc = acc + _load_vec(ctx, channels[p].recv_bytes(tag), size)
        arbiter.send(tag, acc.serialize())

    aggregate("fl/h/stats", _encrypt(ctx, np.concatenate([x.sum(0), (x * x).sum(0), [n]])),
              2 * f + 1)
    scaling = arbiter.recv_json("fl/h/scaling")
    std = Standardizer(np.asarray(scaling["mean"], dtype=np.float64),
                       np.asarray(scaling["std"], dtype=np.float64))
    xs = std.apply(x)
    y01 = (y > 0).astype(np.float64)
    rng = np.random.default_rng(seed)
    w, b = np.zeros(f), 0.0
    losses: list[float] = []
    epoch_seconds: list[float] = []
    converged = False
    for r in range(params.rounds):
        t0 = time.perf_counter()
        before = _traffic(channels)
        loss = _local_loss(xs, y01, w, b, params.l2)
        lw, lb = w.copy(), b
        for _ in range(params.local_epochs):
            for idx in np.array_split(rng.permutation(n), max(1, n // params.batch_size)):
                p = sigmoid(xs[idx] @ lw + lb)
                err = p - y01[idx]
                lw = lw - params.learning_rate * (xs[idx].T @ err / len(idx) + params.l2 * lw)
                lb = lb - params.learning_rate * float(err.mean())
        aggregate(f"fl/h/sum/{r}", _encrypt(ctx, np.concatenate([lw * n, [lb * n, loss * n, n]])),
                  f + 3)
        glob = arbiter.recv_json(f"fl/h/global/{r}")
        w = np.asarray(glob["w"], dtype=np.float64)
        if w.shape != (f,):
            raise ProtocolError("the arbiter sent a global model of the wrong width")
        b = float(glob["b"])
        losses.append(float(glob["loss"]))
        epoch_seconds.append(time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(r, float(glob["loss"]), n, _traffic(channels) - before)
        if glob.get("stop"):
            converged = r < params.rounds - 1
            break
    model = HorizontalModel(model_id=str(scaling["model_id"]), party=me, weights=w,
                            mean=std.mean, std=std.std, bias=b,
                            meta={"job_id": params.job_id})
    report = TrainReport(epochs=len(losses), losses=losses, converged=converged, rows=n,
                         bytes_sent=sum(c.bytes_out for c in channels.values()),
                         bytes_received=sum(c.bytes_in for c in channels.values()),
                         seconds=time.perf_counter() - start, epoch_seconds=epoch_seconds)
    return model, report


__all__ = ["RELEASE_DECIMALS", "run_horizontal_arbiter", "run_horizontal_party"]
