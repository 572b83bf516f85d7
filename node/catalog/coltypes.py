"""Declared column types: inference from a source schema, validity checks, numpy conversion.

Every source is read as text (a pyarrow string array per column), so one set of
vectorised checks serves CSV, Parquet and SQL alike. A value "fails its
declared type" when it is not null and does not parse as that type; the
quality profile counts such values, and :func:`to_numpy` turns them into
missing values (NaN or None).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_INTEGER = r"^\s*[+-]?\d+\s*$"
_FLOAT = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
_DATE = r"^\d{4}-\d{2}-\d{2}([ T].*)?$"
_RESIDENT_ID = r"^\d{17}[\dX]$"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]

#: GB 11643-1999 weights of the first 17 digits, and the check character per remainder.
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)


def infer_type(arrow_type: pa.DataType) -> str:
    """Map an Arrow type (from CSV inference or a Parquet schema) to a declared type."""
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type):
        return "date"
    return "string"


def valid_mask(values: pa.Array, declared: str) -> np.ndarray:
    """Boolean numpy mask: True where the value is null or parses as ``declared``."""
    values = _as_string(values)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=bool)
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    if declared == "string":
        return np.ones(n, dtype=bool)
    if declared == "integer":
        ok = pc.match_substring_regex(values, _INTEGER)
    elif declared == "float":
        ok = pc.match_substring_regex(values, _FLOAT)
    elif declared == "boolean":
        ok = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)),
                      value_set=pa.array(_TRUE + _FALSE))
    elif declared == "date":
        shape = pc.match_substring_regex(values, _DATE)
        day = pc.utf8_slice_codeunits(values, 0, 10)
        parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
        # strptime accepts e.g. 2024-02-30; a round trip rejects impossible dates
        again = pc.strftime(parsed, format="%Y-%m-%d")
        ok = pc.and_(shape, pc.equal(again, day))
    elif declared == "resident_id":
        return nulls | resident_id_valid(values)
    else:  # pragma: no cover - declared types are validated at registration
        raise ValueError(f"unknown declared type {declared!r}")
    return nulls | pc.fill_null(ok, False).to_numpy(zero_copy_only=False)


def resident_id_valid(values: pa.Array) -> np.ndarray:
    """True where a value is an 18-character resident ID with a valid GB 11643 check digit."""
    values = _as_string(values)
    shape = pc.fill_null(pc.match_substring_regex(values, _RESIDENT_ID), False)
    shape_np = shape.to_numpy(zero_copy_only=False)
    out = np.zeros(len(values), dtype=bool)
    if not shape_np.any():
        return out
    chosen = pc.filter(values, shape).to_numpy(zero_copy_only=False).astype("S18")
    digits = chosen.view(np.uint8).reshape(-1, 18)
    check = ID_CHECK[(digits[:, :17].astype(np.int64) - 48) @ ID_WEIGHTS % 11]
    out[shape_np] = check == digits[:, 17]
    return out


def id_check_digit(first17: np.ndarray) -> np.ndarray:
    """Check characters (as uint8 ASCII) for an (n, 17) array of digit values 0-9."""
    return ID_CHECK[first17.astype(np.int64) @ ID_WEIGHTS % 11]


def to_numpy(values: pa.Array, declared: str) -> np.ndarray:
    """Convert a text column to numpy by its declared type; invalid values become missing.

    integer -> int64 (float64 with NaN if any value is missing), float -> float64,
    boolean -> float64 (1.0/0.0/NaN), anything else -> object array of str/None.
    """
    values = _as_string(values)
    if declared in ("integer", "float", "boolean"):
        ok = valid_mask(values, declared) & values.is_valid().to_numpy(zero_copy_only=False)
        cleaned = pc.if_else(pa.array(ok), values, pa.scalar(None, pa.string()))
        if declared == "boolean":
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(cleaned))
            truth = pc.is_in(lowered, value_set=pa.array(_TRUE))
            arr = pc.if_else(pc.is_valid(lowered), pc.cast(truth, pa.float64()),
                             pa.scalar(None, pa.float64()))
            return arr.to_numpy(zero_copy_only=False).astype(np.float64)
        trimmed = pc.utf8_trim_whitespace(cleaned)
        if declared == "integer":
            as_int = pc.cast(trimmed, pa.int64())
            if as_int.null_count == 0:
                return as_int.to_numpy(zero_copy_only=False).astype(np.int64)
            return pc.cast(as_int, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        return pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return values.to_numpy(zero_copy_only=False).astype(object)


def _as_string(values: pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return values
