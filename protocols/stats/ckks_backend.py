"""CKKS backend of intersection-aggregate: coefficient-packed rows, exact masked read-out.

Layout. The holder's rows (in its shuffled order) are cut into chunks of
``N = 8192`` rows. For each chunk and each (group, field) it encrypts one
ciphertext whose polynomial *coefficient* ``i`` holds the field's fixed-point
value for row ``i`` if that row is in the group, else 0 (one-hot by group, so
the requester never learns a row's group). Values are normalised
``(x - lo) / 2^e`` into ``[0, 1)`` and carried as ``round(v * 2^bits)``.

Aggregation. For each accumulator the requester multiplies every ciphertext of
a chunk by the plaintext polynomial of its 0/1 selection laid out reversed
(``w_0`` at 0, ``-w_i`` at ``N - i``), which puts the selected sum in
coefficient 0 (:mod:`protocols.he.coefficients`), and adds the products across
chunks: one ciphertext per (accumulator, group, field). No rotations, Galois or
relinearisation keys; 60 products and sums per chunk instead of 60 x 4096 slot
products.

Masking. Before sending, the requester adds to each sum a fresh public-key
encryption of a polynomial that is uniform modulo q in every coefficient
(:meth:`~protocols.he.ckks_coeff.CkksCoeffPublic.mask`), so the holder decrypts
uniform values: the other coefficients (cross terms that would reveal the
match pattern) and, for value fields, coefficient 0. For count fields the
mask's coefficient 0 is instead a *flooding* value ``d`` uniform in
``[-2^(bits-3), 2^(bits-3)]``: the holder reads ``count * 2^bits + d + noise``,
rounds it to the count (which it must see, for k) and learns nothing of the
noise, which could otherwise carry a linear form of the selection.

Release. The holder reads coefficient 0 of each decryption *exactly*
(:meth:`~protocols.he.ckks_coeff.CkksCoeffSecret.read_constant`), checks each
count, adds DP noise if asked, and rounds every masked value to a power-of-two
quantum above the noise bound (so no bit that carries decryption noise is
released). The requester subtracts its mask modulo q. The only approximation
left is fixed point: each value is rounded to ``2^-bits`` of its range
(``bits`` = 38 for up to 1M rows), plus at most one quantum per sum.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from pcnode.errors import CryptoError, InvalidInput, ProtocolError

from ..dp import DpSpec, NoiseSource
from ..he.ckks_coeff import (
    CKKS_POLY_DEGREE,
    MAX_RESULT_BITS,
    CkksCoeffPublic,
    CkksCoeffSecret,
    noise_bound,
)
from .fields import COUNT, HIST, SUM, SUMSQ, Field
from .query import StatsQuery
from .result import GroupSums, suppress

NAME = "ckks"
#: Layout and masking scheme this backend speaks (in the setup message).
SCHEME = "ckks-coeff-v1"
#: Fixed-point bits of a normalised value in [0, 1): the encoder is exact below 2^40.
MAX_VALUE_BITS = 38
#: Fewer bits than this and the fixed point is too coarse to be worth running.
MIN_VALUE_BITS = 20
#: Ciphertexts per message: ~66 KB each, so a message stays near 2 MB.
CIPHERTEXTS_PER_MESSAGE = 32
#: Flooding on count fields: uniform in [-2^(bits-FLOOD_MARGIN), 2^(bits-FLOOD_MARGIN)].
FLOOD_MARGIN = 3


def value_bits(n_rows: int) -> int:
    """Fixed-point bits so that a sum over ``n_rows`` values in [0, 1) stays below 2^58."""
    return min(MAX_VALUE_BITS, MAX_RESULT_BITS - max(1, math.ceil(math.log2(n_rows + 1))) - 1)


def release_quantum_bits(n_rows: int) -> int:
    """log2 of the release quantum: a power of two at least twice the noise bound."""
    return math.ceil(math.log2(2 * noise_bound(n_rows)))


# -- worker functions ----------------------------------------------------------------------

_SECRET: dict[bytes, CkksCoeffSecret] = {}
_PUBLIC: dict[bytes, CkksCoeffPublic] = {}


def _secret(data: bytes) -> CkksCoeffSecret:
    key = _SECRET.get(data)
    if key is None:
        _SECRET.clear()
        key = _SECRET[data] = CkksCoeffSecret.from_worker_bytes(data)
    return key


def _public(data: bytes) -> CkksCoeffPublic:
    pub = _PUBLIC.get(data)
    if pub is None:
        _PUBLIC.clear()
        pub = _PUBLIC[data] = CkksCoeffPublic(data)
    return pub


def encrypt_chunk(secret: bytes, groups: np.ndarray, values: np.ndarray, n_groups: int) -> list[bytes]:
    """Encrypt one chunk: ``values`` (rows, fields) fixed point, one-hot by ``groups`` -> G*F ciphertexts."""
    key = _secret(secret)
    rows, n_fields = values.shape
    coeffs = np.zeros((n_groups, n_fields, key.n))
    onehot = groups[None, :] == np.arange(n_groups)[:, None]  # (G, rows)
    coeffs[:, :, :rows] = np.where(onehot[:, None, :], values.T[None, :, :], 0.0)
    return key.encrypt_many(coeffs.reshape(n_groups * n_fields, key.n))


def select_sum(public: bytes, chunks: Sequence[list[bytes]], selections: Sequence[np.ndarray],
               per_chunk: int) -> list[list[bytes] | None]:
    """Multiply each chunk's ciphertexts by each accumulator's reversed selection and add across chunks.

    ``selections[c]`` is (n_acc, rows per chunk); returns per accumulator
    ``per_chunk`` serialised sums, or None where nothing was selected.
    """
    pub = _public(public)
    n_acc = selections[0].shape[0] if selections else 0
    acc: list[list[Any] | None] = [None] * n_acc
    for blobs, sel in zip(chunks, selections, strict=True):
        if len(blobs) != per_chunk:
            raise CryptoError("a CKKS chunk has the wrong number of ciphertexts")
        loaded = [pub.load_ciphertext(b) for b in blobs]
        for a in range(n_acc):
            if not sel[a].any():
                continue
            plain = pub.selection(sel[a])  # encoded once, used for every ciphertext of the chunk
            cur = acc[a] or [None] * per_chunk
            acc[a] = [pub.multiply_add(cur[i], ct, plain) for i, ct in enumerate(loaded)]
    return [None if x is None else [pub.dump(ct) for ct in x] for x in acc]


def make_masks(public: bytes, constants: Sequence[int | None]) -> list[tuple[bytes, int]]:
    """Fresh masks (serialised encryption, coefficient 0) for the given constants (None: uniform)."""
    pub = _public(public)
    out = []
    for constant in constants:
        ct, c0 = pub.fresh_mask(constant)
        out.append((pub.dump(ct), c0))
    return out


# -- holder ---------------------------------------------------------------------------------


class CkksHolder:
    """Holder side: normalises, encrypts one-hot coefficient vectors per chunk, releases masked sums."""

    name = NAME

    def __init__(self, query: StatsQuery, fields: list[Field], prepared: dict[str, np.ndarray],
                 hist_idx: list[np.ndarray], groups: np.ndarray, n_groups: int,
                 key: CkksCoeffSecret | None = None) -> None:
        self.query = query
        self.fields = fields
        self.key = key or CkksCoeffSecret()
        self.n_rows = int(groups.shape[0])
        self.groups = groups
        self.n_groups = n_groups
        self.rows_per_chunk = CKKS_POLY_DEGREE
        self.n_chunks = max(1, -(-self.n_rows // self.rows_per_chunk))
        self.bits = value_bits(self.n_rows)
        if self.bits < MIN_VALUE_BITS:
            raise InvalidInput(f"{self.n_rows} rows are too many for the CKKS fixed point",
                               hint="use the Paillier backend")
        self.quantum_bits = release_quantum_bits(self.n_rows)
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
        self.values = np.rint(vals * 2.0**self.bits)
        self._secret = self.key.worker_bytes()
        #: Exact per-(accumulator, group) counts this holder decrypted (its own knowledge).
        self.counts_seen: list[int] = []

    def setup(self) -> dict[str, Any]:
        """What the requester needs: scheme, encodings, fixed point and layout sizes."""
        return {"scheme": SCHEME, "bits": self.bits,
                "encodings": [[c, lo, e] for c, lo, e in self.encodings],
                "n_groups": self.n_groups, "fields": [f.name for f in self.fields],
                "n_chunks": self.n_chunks, "rows_per_chunk": self.rows_per_chunk}

    def key_bytes(self) -> bytes:
        """The public context: parameters and public key (no secret, Galois or relin keys)."""
        return self.key.public_bytes()

    def rows_per_message(self) -> int:
        """Rows per chunk (one chunk = one set of ciphertexts)."""
        return self.rows_per_chunk

    def encrypt_task(self, rows: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) encrypting one chunk of rows."""
        return encrypt_chunk, (self._secret, self.groups[rows], self.values[rows], self.n_groups)

    def wrap(self, blobs: list[bytes]) -> list[bytes]:
        """Split a chunk's ciphertexts into messages."""
        return [self.key.pack(blobs[i:i + CIPHERTEXTS_PER_MESSAGE])
                for i in range(0, len(blobs), CIPHERTEXTS_PER_MESSAGE)]

    def release(self, meta: dict[str, Any], blobs: list[bytes], k: int,
                dp: DpSpec | None, noise: NoiseSource) -> dict[str, Any]:
        """Decrypt coefficient 0 exactly, check k, add DP noise, round to the quantum."""
        try:
            n_acc = int(meta["n_acc"])
            empty = {int(a) for a in meta["empty"]}
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed CKKS aggregate header") from None
        per = self.n_groups * len(self.fields)
        raw: list[bytes] = []
        for b in blobs:
            raw.extend(self.key.unpack(b))
        if n_acc < 1 or len(raw) != (n_acc - len(empty)) * per or not empty <= set(range(n_acc)):
            raise CryptoError("peer sent the wrong number of CKKS aggregates")
        unit, quantum = 2**self.bits, 2**self.quantum_bits
        scales = self._noise_scales(dp)
        out_groups, suppressed = [], []
        it = iter(raw)
        self.counts_seen = []
        for a in range(n_acc):
            if a in empty:
                totals = [[0] * len(self.fields) for _ in range(self.n_groups)]
            else:
                totals = [[self.key.read_constant(next(it)) for _ in self.fields]
                          for _ in range(self.n_groups)]
            counts = {}
            for g in range(self.n_groups):
                c = round(totals[g][0] / unit)
                if abs(totals[g][0] - c * unit) > unit // 4 or not 0 <= c <= self.n_rows:
                    raise CryptoError("an aggregate decrypts to an impossible count",
                                      hint="the peer's aggregate was not computed from our ciphertexts")
                counts[g] = c
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
                    v = totals[g][fi]
                    if dp is not None:
                        v += round(float(noise.sample(dp, 1.0)) * scales[fi] * unit)
                    vals.append(str(self.key.centred(round(v / quantum) * quantum)))
                out_groups.append([a, g, counts[g], vals])
        return {"groups": out_groups, "suppressed": suppressed,
                "quantum": quantum / unit}

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
    """Requester side: selects and adds, masks (flooding counts), unmasks."""

    name = NAME

    def __init__(self, setup: dict[str, Any], key_bytes: bytes, fields: list[Field],
                 n_acc: int, n_rows: int) -> None:
        self.public_bytes = key_bytes
        self.pub = CkksCoeffPublic(key_bytes)
        try:
            scheme = str(setup["scheme"])
            self.bits = int(setup["bits"])
            self.encodings = [(str(c), float(lo), int(e)) for c, lo, e in setup["encodings"]]
            self._n_groups = int(setup["n_groups"])
            names = [str(n) for n in setup["fields"]]
            self.n_chunks = int(setup["n_chunks"])
            rows_per_chunk = int(setup["rows_per_chunk"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed CKKS setup") from None
        if scheme != SCHEME:
            raise ProtocolError(f"peer speaks CKKS scheme {scheme!r}, we speak {SCHEME!r}",
                                hint="upgrade the older node")
        if names != [f.name for f in fields]:
            raise ProtocolError("peer's CKKS fields do not match the query")
        if not (1 <= self._n_groups <= 100_000 and rows_per_chunk == self.pub.n
                and self.n_chunks == max(1, -(-n_rows // rows_per_chunk))
                and MIN_VALUE_BITS <= self.bits <= value_bits(n_rows)):
            raise ProtocolError("peer sent implausible CKKS layout sizes")
        self.fields = fields
        self.n_acc = n_acc
        self.slots = rows_per_chunk
        self.per_chunk = self._n_groups * len(fields)
        self.acc: list[list[Any] | None] = [None] * n_acc
        self._masks: list[list[int]] = []
        self._pending: list[bytes] = []
        self._fresh: list[tuple[bytes, int]] = []

    @property
    def n_groups(self) -> int:
        """Holder-side groups inside each accumulator."""
        return self._n_groups

    def feed(self, blob: bytes) -> list[bytes] | None:
        """Collect ciphertext messages; returns a whole chunk's ciphertexts once complete."""
        self._pending.extend(self.pub.unpack(blob))
        if len(self._pending) > self.per_chunk:
            raise CryptoError("peer sent more CKKS ciphertexts than a chunk holds")
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
            cts = [self.pub.load_ciphertext(b) for b in part]
            cur = self.acc[a]
            self.acc[a] = cts if cur is None else [self.pub.add(x, y) for x, y in zip(cur, cts, strict=True)]

    def _mask_constants(self) -> list[int | None]:
        """Coefficient 0 of each mask: flooding on count fields (the holder reads the count), else uniform."""
        nf, flood = len(self.fields), 2 ** (self.bits - FLOOD_MARGIN)
        return [secrets.randbelow(2 * flood + 1) - flood if i % nf == 0 else None
                for _ in range(self.n_acc) for i in range(self.per_chunk)]

    def mask_task(self) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) making every mask ahead of time, e.g. while the holder works."""
        return make_masks, (self.public_bytes, self._mask_constants())

    def use_masks(self, masks: list[tuple[bytes, int]]) -> None:
        """Keep masks made by :meth:`mask_task` for :meth:`masked_aggregates`."""
        if len(masks) != self.n_acc * self.per_chunk:
            raise CryptoError("wrong number of precomputed CKKS masks")
        self._fresh = masks

    def masked_aggregates(self) -> tuple[dict[str, Any], list[bytes]]:
        """Mask every sum (flooding on count fields) and serialise; empty accumulators are declared."""
        blobs: list[bytes] = []
        empty = []
        self._masks = []
        nf = len(self.fields)
        fresh = self._fresh or make_masks(self.public_bytes, self._mask_constants())
        self._fresh = []
        it = iter(fresh)
        for a in range(self.n_acc):
            cur = self.acc[a]
            mine = [next(it) for _ in range(self.per_chunk)]
            if cur is None:
                empty.append(a)
                self._masks.append([0] * self.per_chunk)
                continue
            masks = []
            for i, (ct, (mask_blob, r0)) in enumerate(zip(cur, mine, strict=True)):
                blob, _ = self.pub.mask(ct, fresh=(self.pub.load_ciphertext(mask_blob), r0))
                masks.append(0 if i % nf == 0 else r0)
                blobs.append(blob)
            self._masks.append(masks)
        messages = [self.pub.pack(blobs[i:i + CIPHERTEXTS_PER_MESSAGE])
                    for i in range(0, len(blobs), CIPHERTEXTS_PER_MESSAGE)]
        return {"n_acc": self.n_acc, "empty": empty}, messages

    def unmask(self, release: dict[str, Any], labels: list[str], n_matched: int,
               noisy: bool) -> list[GroupSums]:
        """Subtract the masks modulo q and undo the fixed point and normalisation."""
        nf, ng = len(self.fields), self._n_groups
        unit = float(2**self.bits)
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
                vals = [int(str(v)) for v in entry[3]]
            except (TypeError, ValueError, IndexError):
                raise ProtocolError("peer sent a malformed release") from None
            if not (0 <= a < self.n_acc and 0 <= g < ng) or len(vals) != nf - 1:
                raise ProtocolError("peer's release names an unknown group or has the wrong width")
            if count < 0 or (not noisy and count > n_matched):
                raise ProtocolError("peer released an impossible count")
            gs = GroupSums(labels[a * ng + g], count)
            masks = self._masks[a]
            norm = {fi: self.pub.centred(vals[fi - 1] - masks[g * nf + fi]) / unit
                    for fi in range(1, nf)}
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


__all__ = ["NAME", "SCHEME", "CkksHolder", "CkksRequester", "encrypt_chunk", "make_masks",
           "select_sum", "value_bits"]
