"""Key normalisation applied to every item before it is hashed to the curve.

Two parties only match keys that normalise to the same bytes, so both must use
the same :class:`Normalization`; the requester proposes it in the job's hello
and the holder refuses a mismatch.

Order of the steps (each optional):

1. ``nfkc``: Unicode NFKC, which folds full-width digits and letters
   (full-width ``\\uff11\\uff38`` → ``1X``) and compatibility forms;
2. ``strip``: remove leading and trailing white space;
3. ``casefold``: Unicode case folding (stronger than ``lower``);
4. ``resident_id``: rules for the 18-character PRC resident identity number
   (GB 11643-1999): a trailing ``x`` becomes ``X`` (applied after case folding,
   so it wins), and with ``resident_id_check`` an 18-character value whose
   check character is wrong is treated as invalid.

``bytes`` items are taken verbatim: normalisation applies to ``str`` only.
Items that are invalid (a failed resident-ID check) or empty after
normalisation when ``skip_empty`` is set are skipped and counted, never sent.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, fields
from typing import Any

from pcnode.errors import InvalidInput, ProtocolError

#: GB 11643-1999 weights of the first 17 digits of a resident identity number.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character for each weighted sum mod 11.
RESIDENT_ID_CHECK = "10X98765432"
#: Length of a second-generation resident identity number.
RESIDENT_ID_LENGTH = 18


@dataclass(frozen=True)
class Normalization:
    """Which normalisation steps to apply to ``str`` keys (see the module docstring)."""

    strip: bool = True
    casefold: bool = False
    nfkc: bool = False
    resident_id: bool = False
    resident_id_check: bool = False
    skip_empty: bool = False

    def to_dict(self) -> dict[str, bool]:
        """The options as a JSON-ready dict (sent in the PSI hello)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Normalization:
        """Rebuild from :meth:`to_dict` output; ProtocolError if malformed."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - names or not all(
            isinstance(v, bool) for v in data.values()
        ):
            raise ProtocolError("malformed normalisation options in the PSI hello")
        return cls(**data)

    @classmethod
    def parse(cls, spec: str) -> Normalization:
        """Parse a comma-separated option list, e.g. ``"strip,nfkc,casefold,resident_id"``.

        ``"none"`` or ``""`` turns every step off.
        """
        names = {f.name for f in fields(cls)}
        words = [w.strip().replace("-", "_") for w in spec.split(",") if w.strip()]
        if words in ([], ["none"]):
            return cls(strip=False)
        unknown = [w for w in words if w not in names]
        if unknown:
            raise InvalidInput(
                f"unknown normalisation option(s): {', '.join(sorted(unknown))}",
                hint=f"choose from {', '.join(sorted(names))}",
            )
        return cls(**{n: n in words for n in names})


def resident_id_valid(value: str) -> bool:
    """True if ``value`` is 17 digits plus a correct GB 11643-1999 check character."""
    if len(value) != RESIDENT_ID_LENGTH or not value[:17].isascii() or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], RESIDENT_ID_WEIGHTS, strict=True))
    return value[17] == RESIDENT_ID_CHECK[total % 11]


def normalize(item: str, norm: Normalization) -> str | None:
    """Normalise one key; None means the item is invalid or empty and must be skipped."""
    s = item
    if norm.nfkc:
        s = unicodedata.normalize("NFKC", s)
    if norm.strip:
        s = s.strip()
    if norm.casefold:
        s = s.casefold()
    if norm.resident_id and len(s) == RESIDENT_ID_LENGTH and s[-1] == "x":
        s = s[:-1] + "X"
    if norm.resident_id_check and not resident_id_valid(s):
        return None
    if norm.skip_empty and not s:
        return None
    return s


def encode_item(item: str | bytes, norm: Normalization) -> bytes | None:
    """Normalise and encode one item to the bytes that are hashed; None to skip it."""
    if isinstance(item, bytes):
        return None if (norm.skip_empty and not item) else item
    if not isinstance(item, str):
        raise InvalidInput(
            f"a PSI item must be str or bytes, not {type(item).__name__}",
            hint="convert keys to text before intersecting",
        )
    s = normalize(item, norm)
    return None if s is None else s.encode("utf-8", "surrogatepass")


__all__ = [
    "RESIDENT_ID_CHECK",
    "RESIDENT_ID_WEIGHTS",
    "Normalization",
    "encode_item",
    "normalize",
    "resident_id_valid",
]
