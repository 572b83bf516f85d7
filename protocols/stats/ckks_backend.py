"""CKKS backend of intersection-aggregate: rows across slots, one-hot groups across vectors.

Layout. The holder's rows (in its shuffled order) are cut into chunks of
``slots`` rows. For each chunk and each (group, field) it encrypts one vector
whose slot ``j`` holds the field's value for row ``j`` if that row is in the
group, else 0; values are normalised ``(x - lo) / 2^e`` into ``[0, 1)``.

Aggregation. The requester multiplies every vector of a chunk by its 0/1
selection plaintext (1 at matched rows), adds across chunks slot-wise, and so
gets, per (accumulator, group, field), a vector of per-slot partial sums. No
rotation (Galois keys) is needed: the *holder* reduces across slots after
decryption ("masked plaintext reduction"). Before sending, the requester adds
a mask vector ``r`` to each:

* value fields: ``r_j`` uniform in ``[-M, M]``, ``M = 2^mask_bits * W`` where
  ``W`` is the number of chunks (the largest possible per-slot partial sum);
  the requester keeps ``sum_j r_j``;
* count fields: the same, but with ``sum_j r_j = 0``, so the holder learns the
  count (for k) and nothing per slot.

Release. The holder decrypts, sums the slots exactly (``math.fsum``), rounds
counts to integers and every masked value to a power-of-two quantum at or above
the decoding-error bound (:func:`protocols.he.ckks.decode_error_bound`), so
the low bits carrying decryption noise are never released. The requester
subtracts ``sum_j r_j``.

Precision versus masking. Decoded slots are float64: a slot of magnitude ``M``
carries an error of about ``M * 2^-50``, and a 4096-slot sum about
``M * 2^-46``. ``mask_bits`` (chosen by the requester, whose match pattern the
masks protect) therefore trades the statistical hiding of each per-slot
partial sum (distance <= 2^-(mask_bits+1) per slot) for precision;
:data:`CKKS_MASK_BITS` = 28 keeps the benchmark's relative error below 1e-6.
Paillier's masks are 40 bits; see docs/STATS.md for the numbers.

Scale drift. tenseal labels a rescaled product with scale 2^40 although the
dropped prime is only close to 2^40, so products come out multiplied by a gain
``2^40 / q`` (about 1 + 1.4e-7). The holder measures it once per context
(:meth:`protocols.he.ckks.CkksSecretContext.product_gain`) and both sides divide
it out.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal as ts

from pcnode.errors import CryptoError, InvalidInput, ProtocolError

from ..dp import DpSpec, NoiseSource
from ..he.ckks import (
    DEFAULT_CKKS_PARAMS,
    CkksParams,
    CkksPublicContext,
    CkksSecretContext,
    decode_error_bound,
    encode_vectors,
    load_checked,
    quantum_for,
    round_to_quantum,
    split_vectors,
)
from .fields import COUNT, HIST, SUM, SUMSQ, Field
from .query import StatsQuery
from .result import GroupSums, suppress

NAME = "ckks"
#: Statistical masking of per-slot partial sums, limited by float64 decoding (see module doc).
CKKS_MASK_BITS = 28
#: Range of mask bits a holder accepts from a requester.
MIN_MASK_BITS, MAX_MASK_BITS = 16, 40
#: Vectors per message: ~330 KB each, so a message stays under ~2.7 MB (gRPC default limit 4 MiB).
VECTORS_PER_MESSAGE = 8
#: A count must decode within this of an integer, or the aggregate is not ours.
COUNT_TOLERANCE = 0.25


# -- worker functions ----------------------------------------------------------------------

_SECRET: dict[bytes, CkksSecretContext] = {}
_PUBLIC: dict[bytes, CkksPublicContext] = {}


def _secret(params: dict[str, Any], context_id: bytes, data: bytes) -> CkksSecretContext:
    ctx = _SECRET.get(context_id)
    if ctx is None:
        _SECRET.clear()
        ctx = _SECRET[context_id] = CkksSecretContext.from_worker_bytes(
            CkksParams.from_json(params), context_id, data)
    return ctx


def _public(data: bytes) -> CkksPublicContext:
    ctx = _PUBLIC.get(data)
    if ctx is None:
        _PUBLIC.clear()
        ctx = _PUBLIC[data] = CkksPublicContext.from_bytes(data)
    return ctx


def encrypt_chunk(params: dict[str, Any], context_id: bytes, secret: bytes, groups: np.ndarray,
                  values: np.ndarray, n_groups: int) -> list[bytes]:
    """Encrypt one chunk: ``values`` (rows, fields) one-hot by ``groups`` -> G*F serialised vectors."""
    ctx = _secret(params, context_id, secret)
    slots = ctx.params.slots
    out = []
    for g in range(n_groups):
        in_g = groups == g
        for f in range(values.shape[1]):
            v = np.zeros(slots)
            v[: values.shape[0]] = np.where(in_g, values[:, f], 0.0)
            out.append(ctx.encrypt(v).serialize())
    return out


def select_sum(public: bytes, chunks: Sequence[list[bytes]], selections: Sequence[np.ndarray],
               per_chunk: int) -> list[list[bytes] | None]:
    """Multiply each chunk's vectors by each accumulator's 0/1 selection and add across chunks.

    ``selections[c]`` is (n_acc, slots); returns per accumulator ``per_chunk``
    serialised partial sums, or None where nothing was selected.
    """
    ctx = _public(public)
    n_acc = selections[0].shape[0] if selections else 0
    acc: list[list[Any] | None] = [None] * n_acc
    for vecs, sel in zip(chunks, selections, strict=True):
        if len(vecs) != per_chunk:
            raise CryptoError("a CKKS chunk has the wrong number of vectors")
        loaded = [load_checked(ctx.context, v) for v in vecs]
        for a in range(n_acc):
            if not sel[a].any():
                continue
            mask = ts.plain_tensor(sel[a])  # built once, reused for every vector of the chunk
            prods = [v.mul(mask) for v in loaded]
            cur = acc[a]
            if cur is None:
                acc[a] = prods
            else:
                for i, p in enumerate(prods):
                    cur[i] = cur[i].add(p)
    return [None if x is None else [v.serialize() for v in x] for x in acc]


# -- holder ---------------------------------------------------------------------------------


class CkksHolder:
    """Holder side: normalises, encrypts one-hot vectors per chunk, releases rounded masked sums."""

    name = NAME

    def __init__(self, query: StatsQuery, fields: list[Field], prepared: dict[str, np.ndarray],
                 hist_idx: list[np.ndarray], groups: np.ndarray, n_groups: int,
                 params: CkksParams = DEFAULT_CKKS_PARAMS,
                 context: CkksSecretContext | None = None) -> None:
        self.query = query
        self.fields = fields
        self.ctx = context or CkksSecretContext.generate(params)
        self.params = self.ctx.params
        self.n_rows = int(groups.shape[0])
        self.groups = groups
        self.n_groups = n_groups
        self.slots = self.params.slots
        self.n_chunks = max(1, -(-self.n_rows // self.slots))
        if float(2**MAX_MASK_BITS) * self.n_chunks * 4 > self.params.max_magnitude_after_product():
            raise InvalidInput("too many rows for the CKKS parameters' masking headroom",
                               hint="use the Paillier backend or larger CKKS parameters")
        self.encodings: list[tuple[str, float, int]] = []
        cols = []
        for c in query.value_columns:
            x = prepared[c]
            lo, e = _envelope(x, query.bounds.get(c))
            self.encodings.append((c, lo, e))
            cols.append((x - lo) / 2.0**e)
        vals = np.zeros((self.n_rows, len(fields)))
        for fi, f in enumerate(fields):
            if f.kind == COUNT:
                vals[:, fi] = 1.0
            elif f.kind == SUM:
                vals[:, fi] = cols[f.column]
            elif f.kind == SUMSQ:
                vals[:, fi] = cols[f.column] ** 2
            else:
                vals[:, fi] = (hist_idx[f.hist] == f.bin).astype(np.float64)
        self.values = vals
        self._secret = self.ctx.worker_bytes()
        self.gain = self.ctx.product_gain()
        #: Exact per-(accumulator, group) counts this holder decrypted (its own knowledge).
        self.counts_seen: list[int] = []

    def setup(self) -> dict[str, Any]:
        """What the requester needs: parameters, encodings, layout sizes, mask bits."""
        return {"params": self.params.to_json(),
                "encodings": [[c, lo, e] for c, lo, e in self.encodings],
                "n_groups": self.n_groups, "fields": [f.name for f in self.fields],
                "n_chunks": self.n_chunks,
                "gain": self.gain.hex()}

    def key_bytes(self) -> bytes:
        """The public context (parameters only, no keys)."""
        return self.ctx.public_context_bytes()

    def rows_per_message(self) -> int:
        """Rows per chunk (one chunk = one set of vectors)."""
        return self.slots

    def encrypt_task(self, rows: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) encrypting one chunk of rows."""
        return encrypt_chunk, (self.params.to_json(), self.ctx.context_id, self._secret,
                               self.groups[rows], self.values[rows], self.n_groups)

    def wrap(self, vectors: list[bytes]) -> list[bytes]:
        """Split a chunk's vectors into messages."""
        return [encode_vectors(self.ctx.context_id, vectors[i:i + VECTORS_PER_MESSAGE])
                for i in range(0, len(vectors), VECTORS_PER_MESSAGE)]

    def release(self, meta: dict[str, Any], blobs: list[bytes], k: int,
                dp: DpSpec | None, noise: NoiseSource) -> dict[str, Any]:
        """Decrypt, reduce across slots, check k, round to the quantum, add DP noise."""
        try:
            n_acc = int(meta["n_acc"])
            empty = {int(a) for a in meta["empty"]}
            mask_bits = int(meta["mask_bits"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed CKKS aggregate header") from None
        if not MIN_MASK_BITS <= mask_bits <= MAX_MASK_BITS:
            raise ProtocolError("peer's CKKS mask width is outside the accepted range",
                                actual=mask_bits, minimum=MIN_MASK_BITS, maximum=MAX_MASK_BITS)
        used = min(self.n_rows, self.slots)
        mask_bound = float(2**mask_bits) * self.n_chunks
        per = self.n_groups * len(self.fields)
        raw: list[bytes] = []
        for b in blobs:
            raw.extend(split_vectors(b, self.ctx.context_id))
        if n_acc < 1 or len(raw) != (n_acc - len(empty)) * per or not empty <= set(range(n_acc)):
            raise CryptoError("peer sent the wrong number of CKKS aggregates")
        quantum = quantum_for(decode_error_bound(mask_bound, max(1, used)))
        scales = self._noise_scales(dp)
        out_groups, suppressed = [], []
        it = iter(raw)
        self.counts_seen = []
        for a in range(n_acc):
            if a in empty:
                totals = np.zeros((self.n_groups, len(self.fields)))
            else:
                totals = np.array([[math.fsum(self.ctx.decrypt(load_checked(self.ctx.context, next(it))))
                                    for _ in self.fields] for _ in range(self.n_groups)])
            counts = {}
            for g in range(self.n_groups):
                c = totals[g, 0] / self.gain
                if abs(c - round(c)) > COUNT_TOLERANCE or not 0 <= round(c) <= self.n_rows:
                    raise CryptoError("an aggregate decrypts to an impossible count",
                                      hint="the peer's aggregate was not computed from our ciphertexts")
                counts[g] = round(c)
            self.counts_seen.extend(counts[g] for g in range(self.n_groups))
            if dp is not None:
                counts = {g: max(0, round(c + float(noise.sample(dp, 1.0)))) for g, c in counts.items()}
            withheld = suppress(counts, k) if self.n_groups > 1 else {
                g for g, c in counts.items() if c < k}
            for g in range(self.n_groups):
                if g in withheld:
                    suppressed.append([a, g])
                    continue
                vals = []
                for fi in range(1, len(self.fields)):
                    v = float(totals[g, fi])
                    if dp is not None:
                        v += float(noise.sample(dp, 1.0)) * scales[fi]
                    vals.append(round_to_quantum(v, quantum))
                out_groups.append([a, g, counts[g], vals])
        return {"groups": out_groups, "suppressed": suppressed, "quantum": quantum}

    def _noise_scales(self, dp: DpSpec | None) -> list[float]:
        if dp is None:
            return [0.0] * len(self.fields)
        out = []
        for f in self.fields:
            if f.kind in (COUNT, HIST):
                out.append(1.0)
                continue
            name, _, e = self.encodings[f.column]
            lo, hi = self.query.bounds[name]
            span = (hi - lo) / 2.0**e
            out.append(span if f.kind == SUM else span * span)
        return out


def _envelope(x: np.ndarray, bounds: tuple[float, float] | None) -> tuple[float, int]:
    """Offset and power-of-two scale putting the column into [0, 1)."""
    if bounds is not None:
        lo, hi = bounds
    elif x.size:
        mn, mx = float(x.min()), float(x.max())
        mag = max(abs(mn), abs(mx), 1e-300)
        k = math.ceil(math.log2(mag)) if mag > 0 else 0
        lo, hi = (-(2.0**k), 2.0**k) if mn < 0 else (0.0, 2.0**k)
    else:
        lo, hi = 0.0, 1.0
    span = max(hi - lo, 2.0**-60)
    e = math.ceil(math.log2(span))
    if 2.0**e <= span:
        e += 1  # keep (x - lo) / 2^e strictly below 1
    return float(lo), int(e)


# -- requester -------------------------------------------------------------------------------


class CkksRequester:
    """Requester side: selects and adds, masks with zero-sum masks on counts, unmasks."""

    name = NAME

    def __init__(self, setup: dict[str, Any], key_bytes: bytes, fields: list[Field],
                 n_acc: int, n_rows: int, mask_bits: int = CKKS_MASK_BITS) -> None:
        self.public_bytes = key_bytes
        self.pub = CkksPublicContext.from_bytes(key_bytes)
        try:
            params = CkksParams.from_json(setup["params"])
            self.encodings = [(str(c), float(lo), int(e)) for c, lo, e in setup["encodings"]]
            self._n_groups = int(setup["n_groups"])
            names = [str(n) for n in setup["fields"]]
            self.n_chunks = int(setup["n_chunks"])
            self.gain = float.fromhex(str(setup["gain"]))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed CKKS setup") from None
        if params != self.pub.params:
            raise CryptoError("peer's CKKS setup and context disagree on parameters")
        if names != [f.name for f in fields]:
            raise ProtocolError("peer's CKKS fields do not match the query")
        if not MIN_MASK_BITS <= mask_bits <= MAX_MASK_BITS:
            raise InvalidInput(f"CKKS mask bits must be {MIN_MASK_BITS}..{MAX_MASK_BITS}")
        self.mask_bits = mask_bits
        if not (1 <= self._n_groups <= 100_000
                and self.n_chunks == max(1, -(-n_rows // params.slots))
                and abs(self.gain - 1.0) < 2.0**-16):
            raise ProtocolError("peer sent implausible CKKS layout sizes")
        self.fields = fields
        self.n_acc = n_acc
        self.slots = params.slots
        self.per_chunk = self._n_groups * len(fields)
        self.used_slots = max(1, min(n_rows, self.slots))
        self.mask_bound = float(2**self.mask_bits) * self.n_chunks
        self.acc: list[list[Any] | None] = [None] * n_acc
        self._mask_sums: list[list[float]] = []
        self._pending: list[bytes] = []

    @property
    def n_groups(self) -> int:
        """Holder-side groups inside each accumulator."""
        return self._n_groups

    def feed(self, blob: bytes) -> list[bytes] | None:
        """Collect vector messages; returns a whole chunk's vectors once complete."""
        self._pending.extend(split_vectors(blob, self.pub.context_id))
        if len(self._pending) > self.per_chunk:
            raise CryptoError("peer sent more CKKS vectors than a chunk holds")
        if len(self._pending) == self.per_chunk:
            out, self._pending = self._pending, []
            return out
        return None

    def select_task(self, chunks: list[list[bytes]],
                    selections: list[np.ndarray]) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) selecting and summing a batch of chunks."""
        return select_sum, (self.public_bytes, chunks, selections, self.per_chunk)

    def absorb(self, partial: list[list[bytes] | None]) -> None:
        """Add a task's partial sums into the accumulators."""
        for a, part in enumerate(partial):
            if part is None:
                continue
            vecs = [load_checked(self.pub.context, b) for b in part]
            cur = self.acc[a]
            if cur is None:
                self.acc[a] = vecs
            else:
                for i, v in enumerate(vecs):
                    cur[i] = cur[i].add(v)

    def masked_aggregates(self) -> tuple[dict[str, Any], list[bytes]]:
        """Add masks (zero-sum on count fields) and serialise; empty accumulators are declared."""
        rng = np.random.default_rng(secrets.randbits(128))
        vecs: list[ts.CKKSVector] = []
        empty = []
        self._mask_sums = []
        nf = len(self.fields)
        for a in range(self.n_acc):
            sums = [0.0] * self.per_chunk
            cur = self.acc[a]
            if cur is None:
                empty.append(a)
                self._mask_sums.append(sums)
                continue
            for i, v in enumerate(cur):
                r = np.zeros(self.slots)  # slots no row occupies stay unmasked (always 0)
                r[: self.used_slots] = rng.uniform(-self.mask_bound, self.mask_bound, self.used_slots)
                if i % nf == 0:  # count field: zero-sum mask
                    last = self.used_slots - 1
                    r[last] = 0.0
                    r[last] = -math.fsum(r)
                sums[i] = math.fsum(r)
                vecs.append(v.add(r.tolist()))
            self._mask_sums.append(sums)
        blobs = [encode_vectors(self.pub.context_id, vecs[i:i + VECTORS_PER_MESSAGE])
                 for i in range(0, len(vecs), VECTORS_PER_MESSAGE)]
        return {"n_acc": self.n_acc, "empty": empty, "mask_bits": self.mask_bits}, blobs

    def unmask(self, release: dict[str, Any], labels: list[str], n_matched: int,
               noisy: bool) -> list[GroupSums]:
        """Subtract the mask sums and undo normalisation; float sums."""
        nf, ng = len(self.fields), self._n_groups
        sums: dict[tuple[int, int], GroupSums] = {}
        try:
            quantum = float(release["quantum"])
            supp = [(int(a), int(g)) for a, g in release.get("suppressed", [])]
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed CKKS release") from None
        for a, g in supp:
            if not (0 <= a < self.n_acc and 0 <= g < ng):
                raise ProtocolError("peer's suppression list names an unknown group")
            sums[(a, g)] = GroupSums(labels[a * ng + g], 0, True)
        for entry in release.get("groups", []):
            try:
                a, g, count = int(entry[0]), int(entry[1]), int(entry[2])
                vals = [float(v) for v in entry[3]]
            except (TypeError, ValueError, IndexError):
                raise ProtocolError("peer sent a malformed release") from None
            if not (0 <= a < self.n_acc and 0 <= g < ng) or len(vals) != nf - 1:
                raise ProtocolError("peer's release names an unknown group or has the wrong width")
            if count < 0 or (not noisy and count > n_matched):
                raise ProtocolError("peer released an impossible count")
            gs = GroupSums(labels[a * ng + g], count)
            msum = self._mask_sums[a]
            norm = {fi: (vals[fi - 1] - msum[g * nf + fi]) / self.gain for fi in range(1, nf)}
            self._reconstruct(gs, norm, count)
            sums[(a, g)] = gs
        if len(sums) != self.n_acc * ng or not math.isfinite(quantum):
            raise ProtocolError("peer's release does not cover every group")
        return [sums[(a, g)] for a in range(self.n_acc) for g in range(ng)]

    def _reconstruct(self, gs: GroupSums, norm: dict[int, float], n: int) -> None:
        s1n: dict[int, float] = {}
        for fi, f in enumerate(self.fields):
            if f.kind == SUM:
                s1n[f.column] = norm[fi]
        for fi, f in enumerate(self.fields):
            if f.kind == COUNT:
                continue
            if f.kind == HIST:
                gs.hist.setdefault(f.name.rsplit("#", 1)[0], []).append(norm[fi])
                continue
            name, lo, e = self.encodings[f.column]
            s = 2.0**e
            if f.kind == SUM:
                gs.s1[name] = norm[fi] * s + n * lo
            else:
                gs.s2[name] = norm[fi] * s * s + 2 * lo * s1n[f.column] * s + n * lo * lo


__all__ = ["CKKS_MASK_BITS", "NAME", "CkksHolder", "CkksRequester", "encrypt_chunk", "select_sum"]
