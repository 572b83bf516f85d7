"""Paillier backend of intersection-aggregate: packed fixed-point slots, exact sums.

Holder: every row becomes ``layout.n_ciphertexts`` plaintexts in which only the
slots of the row's group are non-zero (one-hot by position), encrypted with the
fast owner-side path. Requester: multiplies the ciphertexts of matched rows per
accumulator, adds a fresh encryption of its per-slot masks (which also
re-randomises the product, so the holder cannot tell which rows it came from),
and sends it back. Holder: decrypts, reads the counts (unmasked), applies k and
DP noise, and returns only masked slots of released groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from pcnode.errors import CryptoError, ProtocolError

from ..dp import DpSpec, NoiseSource
from ..he.packing import ColumnEncoding, FieldSpec, FixedPoint, SlotLayout, bits_for_count
from ..he.paillier import (
    DEFAULT_PAILLIER_BITS,
    FastKeyMaterial,
    PaillierPublicKey,
    PaillierSecretKey,
    fast_encrypt_encoded,
)
from .fields import COUNT, HIST, SUM, SUMSQ, Field
from .query import StatsQuery
from .result import GroupSums, suppress

NAME = "paillier"
#: Serialised ciphertexts per message stay under this (gRPC's default limit is 4 MiB).
MAX_MESSAGE_BYTES = 2 << 20


# -- worker functions (module level: they run in spawn pools) -----------------------------


def encrypt_rows(km: FastKeyMaterial, layout: SlotLayout, fields: Sequence[Field],
                 groups: np.ndarray, xs: np.ndarray, hists: np.ndarray) -> bytes:
    """Pack and encrypt rows: ``groups`` (n,), ``xs`` (columns, n) shifted fixed point,
    ``hists`` (histograms, n) bin indices. Returns a ciphertext blob, row-major."""
    msgs: list[int] = []
    n = int(groups.shape[0])
    xs_l = [col.tolist() for col in xs]
    hs_l = [h.tolist() for h in hists]
    g_l = groups.tolist()
    for i in range(n):
        vals = []
        for f in fields:
            if f.kind == COUNT:
                vals.append(1)
            elif f.kind == SUM:
                vals.append(xs_l[f.column][i])
            elif f.kind == SUMSQ:
                v = xs_l[f.column][i]
                vals.append(v * v)
            else:
                vals.append(1 if hs_l[f.hist][i] == f.bin else 0)
        msgs.extend(layout.pack(g_l[i], vals))
    return fast_encrypt_encoded(km, msgs)


def select_products(key_bytes: bytes, per_row: int, blob: bytes, positions: np.ndarray,
                    accs: np.ndarray, n_acc: int) -> list[list[int]]:
    """Check a ciphertext chunk and multiply the rows at ``positions`` into accumulator ``accs[i]``.

    Every ciphertext is range-checked; returns ``n_acc x per_row`` products.
    """
    pk = _public_key(key_bytes)
    cts = pk.decode_ciphertexts(blob)
    if len(cts) % per_row:
        raise CryptoError("ciphertext chunk does not hold whole rows")
    n2 = pk.nsquare
    out: list[list[Any]] = [[1] * per_row for _ in range(n_acc)]
    for p, a in zip(positions.tolist(), accs.tolist(), strict=True):
        base = p * per_row
        if base + per_row > len(cts):
            raise ProtocolError("a matched position is beyond its ciphertext chunk")
        row = out[a]
        for t in range(per_row):
            row[t] = row[t] * cts[base + t] % n2
    return [[int(c) for c in r] for r in out]


_PK_CACHE: dict[bytes, PaillierPublicKey] = {}


def _public_key(key_bytes: bytes) -> PaillierPublicKey:
    pk = _PK_CACHE.get(key_bytes)
    if pk is None:
        _PK_CACHE.clear()
        pk = _PK_CACHE[key_bytes] = PaillierPublicKey.from_bytes(key_bytes)
    return pk


# -- holder ----------------------------------------------------------------------------


class PaillierHolder:
    """Holder side: encodes, packs, encrypts, and releases masked sums of groups with count >= k."""

    name = NAME

    def __init__(self, query: StatsQuery, fields: list[Field], prepared: dict[str, np.ndarray],
                 hist_idx: list[np.ndarray], groups: np.ndarray, n_groups: int,
                 key: PaillierSecretKey | None = None, bits: int = DEFAULT_PAILLIER_BITS) -> None:
        self.query = query
        self.fields = fields
        self.key = key or PaillierSecretKey.generate(bits)
        self.pk = self.key.public_key
        self.fp = FixedPoint(query.decimals)
        self.n_rows = int(groups.shape[0])
        self.groups = groups
        self.n_groups = n_groups
        self.encodings: list[ColumnEncoding] = []
        xs = []
        for c in query.value_columns:
            x_fp = self.fp.encode(prepared[c], c)
            if c in query.bounds:
                lo, hi = query.bounds[c]
                enc = ColumnEncoding.from_bounds(c, int(np.rint(lo * self.fp.scale)),
                                                 int(np.rint(hi * self.fp.scale)))
            else:
                enc = ColumnEncoding.covering(c, x_fp)
            self.encodings.append(enc)
            xs.append(enc.shift(x_fp))
        self.xs = np.stack(xs) if xs else np.zeros((0, self.n_rows), dtype=np.int64)
        self.hists = (np.stack(hist_idx) if hist_idx
                      else np.zeros((0, self.n_rows), dtype=np.int32))
        lb = bits_for_count(self.n_rows)
        specs = []
        for f in fields:
            if f.kind == COUNT:
                specs.append(FieldSpec(f.name, lb, masked=False))
            elif f.kind == SUM:
                specs.append(FieldSpec(f.name, self.encodings[f.column].value_bits + lb, True))
            elif f.kind == SUMSQ:
                specs.append(FieldSpec(f.name, 2 * self.encodings[f.column].value_bits + lb, True))
            else:
                specs.append(FieldSpec(f.name, lb, True))
        self.layout = SlotLayout(specs, n_groups, self.pk.plaintext_bits)
        self._km = self.key.material(encryptions=self.n_rows * self.layout.n_ciphertexts)
        #: Exact per-(accumulator, group) counts this holder decrypted (its own knowledge).
        self.counts_seen: list[int] = []

    def setup(self) -> dict[str, Any]:
        """What the requester needs to aggregate and unmask."""
        return {"layout": self.layout.to_json(),
                "encodings": [e.to_json() for e in self.encodings],
                "decimals": self.query.decimals}

    def key_bytes(self) -> bytes:
        """The public key."""
        return self.pk.to_bytes()

    def rows_per_message(self) -> int:
        """Rows per ciphertext message, keeping messages under :data:`MAX_MESSAGE_BYTES`."""
        return max(1, MAX_MESSAGE_BYTES // (self.layout.n_ciphertexts * self.pk.ciphertext_bytes))

    def encrypt_task(self, rows: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) encrypting the given rows (positions into the holder's arrays)."""
        return encrypt_rows, (self._km, self.layout, self.fields, self.groups[rows],
                              self.xs[:, rows], self.hists[:, rows])

    # -- release ---------------------------------------------------------------------------

    def release(self, meta: dict[str, Any], blobs: list[bytes], k: int,
                dp: DpSpec | None, noise: NoiseSource) -> dict[str, Any]:
        """Decrypt the masked aggregates, apply k (and DP), return what may be released."""
        n_acc = _int(meta, "n_acc")
        per = self.layout.n_ciphertexts
        cts: list[Any] = []
        for b in blobs:
            cts.extend(self.pk.decode_ciphertexts(b, check_coprime=True))
        if len(cts) != n_acc * per:
            raise CryptoError("peer sent the wrong number of aggregate ciphertexts",
                              expected=n_acc * per, actual=len(cts))
        plain = [self.key.decrypt(c, "aggregate ciphertext") for c in cts]
        for i, m in enumerate(plain):
            if m >> self.layout.used_bits(i % per):
                raise CryptoError("an aggregate decrypts to an impossible count or width",
                                  hint="the peer's aggregate was not computed from our ciphertexts")
        self.counts_seen = []
        scales = self._noise_scales(dp)
        out_groups = []
        suppressed = []
        for a in range(n_acc):
            pts = plain[a * per:(a + 1) * per]
            counts = {g: self.layout.slot_value(pts, g, 0) for g in range(self.n_groups)}
            if any(c > self.n_rows for c in counts.values()):
                raise CryptoError("an aggregate decrypts to an impossible count",
                                  hint="the peer's aggregate was not computed from our ciphertexts")
            self.counts_seen.extend(counts[g] for g in range(self.n_groups))
            if dp is not None:
                counts = {g: max(0, round(c + float(noise.sample(dp, 1.0)) * scales[0]))
                          for g, c in counts.items()}
            withheld = suppress(counts, k) if self.n_groups > 1 else {
                g for g, c in counts.items() if c < k}
            for g in range(self.n_groups):
                if g in withheld:
                    suppressed.append([a, g])
                    continue
                vals = []
                for fi in range(1, len(self.fields)):
                    v = self.layout.slot_value(pts, g, fi)
                    if dp is not None:
                        v += round(float(noise.sample(dp, 1.0)) * scales[fi])
                    vals.append(str(v))
                out_groups.append([a, g, counts[g], vals])
        return {"groups": out_groups, "suppressed": suppressed}

    def _noise_scales(self, dp: DpSpec | None) -> list[float]:
        """Per field, the sensitivity in slot units (noise = unit-sensitivity sample x this)."""
        if dp is None:
            return [0.0] * len(self.fields)
        out = []
        for f in self.fields:
            if f.kind in (COUNT, HIST):
                out.append(1.0)
            else:
                span = float((1 << self.encodings[f.column].value_bits) - 1)
                if self.query.value_columns[f.column] in self.query.bounds:
                    lo, hi = self.query.bounds[self.query.value_columns[f.column]]
                    span = float(np.rint(hi * self.fp.scale) - np.rint(lo * self.fp.scale))
                out.append(span if f.kind == SUM else span * span)
        return out


# -- requester ---------------------------------------------------------------------------


class PaillierRequester:
    """Requester side: multiplies matched rows, masks, and unmasks the holder's release."""

    name = NAME

    def __init__(self, setup: dict[str, Any], key_bytes: bytes, fields: list[Field],
                 n_acc: int) -> None:
        self.pk = PaillierPublicKey.from_bytes(key_bytes)
        self.key_bytes = key_bytes
        self.layout = SlotLayout.from_json(setup.get("layout"), self.pk.plaintext_bits)
        try:
            self.encodings = [ColumnEncoding.from_json(e) for e in setup["encodings"]]
            self.decimals = int(setup["decimals"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed Paillier setup") from None
        if [f.name for f in self.layout.fields] != [f.name for f in fields]:
            raise ProtocolError("peer's slot layout does not match the query's fields")
        if any(f.masked != (i > 0) for i, f in enumerate(self.layout.fields)):
            raise ProtocolError("peer's slot layout leaves a value field unmasked",
                                hint="only counts may be decrypted unmasked by the holder")
        self.fields = fields
        self.n_acc = n_acc
        self.per_row = self.layout.n_ciphertexts
        self.acc: list[list[Any]] = [[1] * self.per_row for _ in range(n_acc)]
        self._masks: list[dict[tuple[int, int], int]] = []

    @property
    def n_groups(self) -> int:
        """Holder-side groups inside each accumulator."""
        return self.layout.n_groups

    def select_task(self, blob: bytes, positions: np.ndarray,
                    accs: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
        """(function, args) multiplying the matched rows of one ciphertext message."""
        return select_products, (self.key_bytes, self.per_row, blob, positions, accs, self.n_acc)

    def absorb(self, partial: list[list[int]]) -> None:
        """Fold a task's products into the accumulators."""
        n2 = self.pk.nsquare
        for a in range(self.n_acc):
            for t in range(self.per_row):
                self.acc[a][t] = self.acc[a][t] * partial[a][t] % n2

    def masked_aggregates(self) -> tuple[dict[str, Any], list[bytes]]:
        """Mask every accumulator (fresh encryption of the masks re-randomises it) and serialise."""
        out = []
        self._masks = []
        for a in range(self.n_acc):
            per_ct, per_slot = self.layout.random_masks()
            self._masks.append(per_slot)
            for t in range(self.per_row):
                c = self.acc[a][t]
                self.pk.check_coprime(c, "aggregate of the holder's ciphertexts")
                out.append(self.pk.add(c, self.pk.encrypt(per_ct[t])))
        step = max(1, MAX_MESSAGE_BYTES // self.pk.ciphertext_bytes)
        blobs = [self.pk.encode_ciphertexts(out[i:i + step]) for i in range(0, len(out), step)]
        return {"n_acc": self.n_acc}, blobs

    def unmask(self, release: dict[str, Any], labels: list[str], n_matched: int,
               noisy: bool) -> list[GroupSums]:
        """Remove the masks and undo the fixed-point shift; exact ``Fraction`` sums."""
        scale = 10**self.decimals
        sums = {}
        for a, g in _pairs(release.get("suppressed", []), self.n_acc, self.n_groups):
            sums[(a, g)] = GroupSums(labels[a * self.n_groups + g], 0, True)
        for entry in release.get("groups", []):
            try:
                a, g, count, vals = int(entry[0]), int(entry[1]), int(entry[2]), entry[3]
                raw = [int(v) for v in vals]
            except (TypeError, ValueError, IndexError):
                raise ProtocolError("peer sent a malformed release") from None
            if not (0 <= a < self.n_acc and 0 <= g < self.n_groups) or len(raw) != len(self.fields) - 1:
                raise ProtocolError("peer's release names an unknown group or has the wrong width")
            if count < 0 or (not noisy and count > n_matched):
                raise ProtocolError("peer released an impossible count")
            gs = GroupSums(labels[a * self.n_groups + g], count)
            masks = self._masks[a]
            values = {}
            for fi, u in enumerate(raw, start=1):
                v = u - masks[(g, fi)]
                if not noisy and not 0 <= v < (1 << self.layout.fields[fi].data_bits):
                    raise ProtocolError("peer released a value inconsistent with its mask")
                values[fi] = v
            self._reconstruct(gs, values, count, scale)
            sums[(a, g)] = gs
        if len(sums) != self.n_acc * self.n_groups:
            raise ProtocolError("peer's release does not cover every group")
        return [sums[(a, g)] for a in range(self.n_acc) for g in range(self.n_groups)]

    def _reconstruct(self, gs: GroupSums, values: dict[int, int], n: int, scale: int) -> None:
        s1_raw: dict[int, int] = {}
        for fi, f in enumerate(self.fields):
            if f.kind == SUM:
                s1_raw[f.column] = values[fi]
        for fi, f in enumerate(self.fields):
            if f.kind == HIST:
                key = f.name.rsplit("#", 1)[0]
                gs.hist.setdefault(key, []).append(values[fi])
                continue
            if f.kind == COUNT:
                continue
            enc = self.encodings[f.column]
            lo = enc.lo
            if f.kind == SUM:
                gs.s1[enc.name] = Fraction(values[fi] + n * lo, scale)
            else:
                s1 = s1_raw[f.column]
                gs.s2[enc.name] = Fraction(values[fi] + 2 * lo * s1 + n * lo * lo, scale * scale)


def _int(meta: dict[str, Any], key: str) -> int:
    try:
        v = int(meta[key])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"peer sent a message without a valid {key!r}") from None
    if v < 0 or v > 1_000_000:
        raise ProtocolError(f"peer sent an implausible {key!r}")
    return v


def _pairs(items: Any, n_acc: int, n_groups: int) -> list[tuple[int, int]]:
    try:
        out = [(int(a), int(g)) for a, g in items]
    except (TypeError, ValueError):
        raise ProtocolError("peer sent a malformed suppression list") from None
    if any(not (0 <= a < n_acc and 0 <= g < n_groups) for a, g in out):
        raise ProtocolError("peer's suppression list names an unknown group")
    return out


__all__ = ["NAME", "PaillierHolder", "PaillierRequester", "encrypt_rows", "select_products"]
