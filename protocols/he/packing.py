"""Fixed-point encoding and slot packing of many small sums into one Paillier plaintext.

Fixed point
-----------
A real ``x`` is carried as the integer ``round(x * 10^d)`` (:class:`FixedPoint`,
``d`` = declared decimals). Values with at most ``d`` decimals are therefore
exact, and every sum of them is exact. A column is then shifted by its lower
bound ``lo`` so that what is packed is never negative: ``x' = x_fp - lo`` in
``[0, 2^value_bits)`` (:class:`ColumnEncoding`).

Slots and their bit budget
--------------------------
A plaintext (``n`` has ``B`` bits; usable ``B - 1``) is cut into slots, one per
(group, field). A field is ``count``, ``sum:C``, ``sumsq:C`` or ``hist:C:i``.
Summing the rows' plaintexts sums every slot at once, so each slot needs room
for the largest possible sum over ``N`` rows (``N`` = rows the holder
encrypted) - the *data bits* - plus, where the requester masks it, room for the
mask and its carry::

    count, hist bins        data = L                     (L = bit_length(N))
    sum:C                   data = v_C + L               (v_C = value bits of C)
    sumsq:C                 data = 2 v_C + L
    masked slot width       data + MASK_BITS + 1
    unmasked slot width     data            (only counts the holder must see for k)

The mask ``r`` of a slot is uniform in ``[0, 2^(data + MASK_BITS))``, so the
masked slot ``v + r`` never carries into its neighbour and is within
statistical distance ``2^-MASK_BITS`` of a value independent of ``v``.

Slots of one group are kept together; a group that does not fit in the rest of
a plaintext starts the next one, so a row of ``G`` groups and ``F`` fields
needs ``ceil(G * sum(widths) / (B - 1))`` ciphertexts (one or two in the
common cases; see docs/STATS.md for worked budgets).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcnode.errors import InvalidInput, ProtocolError

#: Statistical masking parameter: a masked slot leaks at most 2^-40 (statistical
#: distance) about the sum under it - the usual choice for statistical hiding.
MASK_BITS = 40
#: One extra bit per masked slot absorbs the carry of ``sum + mask``.
CARRY_BITS = 1
#: Largest decimals accepted: 10^12 keeps typical values well inside 2^53 before rounding.
MAX_DECIMALS = 12
#: A fixed-point value must be exactly representable as a float64 integer.
_MAX_EXACT = 2**53


@dataclass(frozen=True)
class FixedPoint:
    """Decimal fixed point: ``x -> round(x * 10^decimals)``."""

    decimals: int

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= MAX_DECIMALS:
            raise InvalidInput(f"precision must be 0..{MAX_DECIMALS} decimals, not {self.decimals}")

    @property
    def scale(self) -> int:
        """The scale factor 10^decimals."""
        return 10**self.decimals

    def encode(self, values: np.ndarray, column: str = "value") -> np.ndarray:
        """Encode floats as int64 fixed-point integers; InvalidInput if not finite or too large."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InvalidInput(f"column {column!r} has missing or non-finite values",
                               hint="drop or impute them before a joint statistic")
        y = np.rint(x * self.scale)
        if y.size and float(np.max(np.abs(y))) >= _MAX_EXACT:
            raise InvalidInput(
                f"column {column!r} is too large for {self.decimals} decimals of fixed point",
                hint="declare fewer decimals",
            )
        return y.astype(np.int64)

    def decode(self, value: int) -> float:
        """Fixed-point integer back to a float."""
        return value / self.scale


@dataclass(frozen=True)
class ColumnEncoding:
    """How one column is packed: ``x' = x_fp - lo`` in ``[0, 2^value_bits)``."""

    name: str
    lo: int
    value_bits: int

    @classmethod
    def from_bounds(cls, name: str, lo_fp: int, hi_fp: int) -> ColumnEncoding:
        """Encoding covering the fixed-point range ``[lo_fp, hi_fp]``."""
        if hi_fp < lo_fp:
            raise InvalidInput(f"bounds of {name!r} are reversed")
        return cls(name, int(lo_fp), max(1, int(hi_fp - lo_fp).bit_length()))

    @classmethod
    def covering(cls, name: str, values_fp: np.ndarray) -> ColumnEncoding:
        """Encoding derived from the data, rounded outward to powers of two.

        Only the power-of-two envelope is disclosed: ``lo`` is 0 or ``-2^k``,
        and ``value_bits`` is one more than the bit length of the largest magnitude.
        """
        if values_fp.size == 0:
            return cls(name, 0, 1)
        mn, mx = int(values_fp.min()), int(values_fp.max())
        mag = max(abs(mn), abs(mx), 1)
        k = mag.bit_length()
        if mn < 0:
            return cls(name, -(1 << k), k + 1)
        return cls(name, 0, k)

    def shift(self, values_fp: np.ndarray) -> np.ndarray:
        """``x' = x_fp - lo`` as int64, checked to lie in range."""
        out = values_fp.astype(np.int64) - self.lo
        if out.size and (int(out.min()) < 0 or int(out.max()) >= (1 << self.value_bits)):
            raise InvalidInput(f"column {self.name!r} has values outside its declared bounds",
                               hint="clip the column or widen its bounds")
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form (lo as a decimal string: it may exceed 2^53)."""
        return {"name": self.name, "lo": str(self.lo), "value_bits": self.value_bits}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ColumnEncoding:
        """Parse :meth:`to_json` from a peer."""
        try:
            enc = cls(str(d["name"]), int(d["lo"]), int(d["value_bits"]))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed column encoding") from None
        if not 1 <= enc.value_bits <= 64:
            raise ProtocolError("peer sent a column encoding of an unsupported width")
        return enc


@dataclass(frozen=True)
class FieldSpec:
    """One quantity summed per group: its name, data bits and whether it is masked."""

    name: str
    data_bits: int
    masked: bool

    @property
    def width(self) -> int:
        """Slot width in bits."""
        return self.data_bits + (MASK_BITS + CARRY_BITS if self.masked else 0)


@dataclass(frozen=True)
class Slot:
    """One (group, field) position inside one ciphertext's plaintext."""

    group: int
    field: int
    ct: int
    offset: int


class SlotLayout:
    """Assignment of every (group, field) to a ciphertext and bit offset."""

    def __init__(self, fields: Sequence[FieldSpec], n_groups: int, plaintext_bits: int,
                 slots: Sequence[Slot] | None = None) -> None:
        if n_groups < 1 or not fields:
            raise InvalidInput("a layout needs at least one group and one field")
        self.fields = list(fields)
        self.n_groups = n_groups
        self.plaintext_bits = plaintext_bits
        for f in self.fields:
            if f.width > plaintext_bits:
                raise InvalidInput(
                    f"field {f.name!r} needs {f.width} bits, more than a plaintext holds",
                    hint="declare fewer decimals or tighter bounds, or use a larger key",
                )
        self.slots = list(slots) if slots is not None else self._assign()
        self.n_ciphertexts = 1 + max(s.ct for s in self.slots)
        # plan[g][t] = [(field index, offset), ...]
        self.plan: list[list[list[tuple[int, int]]]] = [
            [[] for _ in range(self.n_ciphertexts)] for _ in range(n_groups)
        ]
        self._pos: dict[tuple[int, int], tuple[int, int]] = {}
        for s in self.slots:
            self.plan[s.group][s.ct].append((s.field, s.offset))
            self._pos[(s.group, s.field)] = (s.ct, s.offset)
        self._check()

    def _assign(self) -> list[Slot]:
        slots: list[Slot] = []
        ct, used = 0, 0
        block = sum(f.width for f in self.fields)
        for g in range(self.n_groups):
            if used and used + block > self.plaintext_bits:
                ct, used = ct + 1, 0
            for i, f in enumerate(self.fields):
                if used + f.width > self.plaintext_bits:
                    ct, used = ct + 1, 0
                slots.append(Slot(g, i, ct, used))
                used += f.width
        return slots

    def _check(self) -> None:
        seen = set()
        ends: dict[int, list[tuple[int, int]]] = {}
        for s in self.slots:
            if not (0 <= s.group < self.n_groups and 0 <= s.field < len(self.fields)):
                raise ProtocolError("slot layout names an unknown group or field")
            if (s.group, s.field) in seen:
                raise ProtocolError("slot layout assigns a (group, field) twice")
            seen.add((s.group, s.field))
            ends.setdefault(s.ct, []).append((s.offset, s.offset + self.fields[s.field].width))
        if len(seen) != self.n_groups * len(self.fields):
            raise ProtocolError("slot layout leaves a (group, field) without a slot")
        for spans in ends.values():
            spans.sort()
            if spans[0][0] < 0 or spans[-1][1] > self.plaintext_bits:
                raise ProtocolError("slot layout overflows a plaintext")
            if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
                raise ProtocolError("slot layout has overlapping slots")

    # -- use -----------------------------------------------------------------------------

    def pack(self, group: int, values: Sequence[int]) -> list[int]:
        """Plaintexts (one per ciphertext) of a row in ``group`` with per-field ``values``."""
        out = []
        for entries in self.plan[group]:
            m = 0
            for f, off in entries:
                m += int(values[f]) << off
            out.append(m)
        return out

    def slot_value(self, plaintexts: Sequence[int], group: int, field: int) -> int:
        """Read the (group, field) slot out of decrypted plaintexts."""
        ct, off = self._pos[(group, field)]
        return (int(plaintexts[ct]) >> off) & ((1 << self.fields[field].width) - 1)

    def used_bits(self, ct: int) -> int:
        """Bits of ciphertext ``ct``'s plaintext covered by slots; a genuine sum never exceeds them."""
        return max(s.offset + self.fields[s.field].width for s in self.slots if s.ct == ct)

    def ciphertext_of(self, group: int) -> list[int]:
        """Indices of the ciphertexts holding any slot of ``group``."""
        return [t for t, entries in enumerate(self.plan[group]) if entries]

    def random_masks(self) -> tuple[list[int], dict[tuple[int, int], int]]:
        """Fresh masks: the plaintext to add per ciphertext, and each slot's mask."""
        per_ct = [0] * self.n_ciphertexts
        per_slot: dict[tuple[int, int], int] = {}
        for s in self.slots:
            f = self.fields[s.field]
            if f.masked:
                r = secrets.randbits(f.data_bits + MASK_BITS)
                per_slot[(s.group, s.field)] = r
                per_ct[s.ct] += r << s.offset
        return per_ct, per_slot

    # -- wire form ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """JSON form for the peer that sums and masks."""
        return {
            "fields": [[f.name, f.data_bits, f.masked] for f in self.fields],
            "n_groups": self.n_groups,
            "plaintext_bits": self.plaintext_bits,
            "slots": [[s.group, s.field, s.ct, s.offset] for s in self.slots],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], plaintext_bits: int) -> SlotLayout:
        """Parse and validate a layout from a peer against our key's plaintext size."""
        try:
            fields = [FieldSpec(str(n), int(b), bool(m)) for n, b, m in d["fields"]]
            slots = [Slot(int(g), int(f), int(t), int(o)) for g, f, t, o in d["slots"]]
            n_groups = int(d["n_groups"])
            declared = int(d["plaintext_bits"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent a malformed slot layout") from None
        if declared != plaintext_bits:
            raise ProtocolError("peer's slot layout does not match its key size",
                                expected=plaintext_bits, actual=declared)
        if any(f.data_bits < 1 or f.data_bits > 4096 for f in fields) or n_groups > 100_000:
            raise ProtocolError("peer sent a slot layout with implausible sizes")
        try:
            return cls(fields, n_groups, plaintext_bits, slots)
        except InvalidInput as exc:
            raise ProtocolError(f"peer sent an invalid slot layout: {exc}") from None

    def describe(self) -> str:
        """One-line budget summary, e.g. for a log (no data)."""
        used = sum(f.width for f in self.fields) * self.n_groups
        return (f"{self.n_groups} groups x {len(self.fields)} fields, {used} bits in "
                f"{self.n_ciphertexts} ciphertext(s) of {self.plaintext_bits} bits")


def bits_for_count(n: int) -> int:
    """Bits needed for a count of up to ``n`` rows."""
    return max(1, int(n).bit_length())


__all__ = [
    "CARRY_BITS",
    "MASK_BITS",
    "ColumnEncoding",
    "FieldSpec",
    "FixedPoint",
    "Slot",
    "SlotLayout",
    "bits_for_count",
]
