"""The one serialisation module of ``protocols``: payloads to bytes and back.

A payload is ``bytes`` or a numpy array. Arrays travel as their dtype string,
shape and raw C-order bytes; nothing is ever pickled, so a hostile peer cannot
make us execute code, and object arrays are refused on both sides.

Small structured messages (parameters, reports) travel as canonical JSON bytes
through :func:`dumps` / :func:`loads`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from pcnode.errors import InvalidInput, ProtocolError

Payload = bytes | np.ndarray

KIND_BYTES = 0
KIND_ARRAY = 1

#: dtypes a peer may send. Object/void dtypes could smuggle pickles or
#: unbounded structures, so only fixed-size numeric kinds are accepted.
ALLOWED_DTYPE_KINDS = frozenset("biuf")

#: A shape has at most this many dimensions; more is a malformed message.
MAX_NDIM = 8

_SHAPE_DIM = struct.Struct(">Q")


def encode(payload: Payload) -> tuple[int, bytes, memoryview]:
    """Split ``payload`` into (kind, meta, data) without copying array memory.

    Raises InvalidInput for anything that is not bytes or a numeric array.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return KIND_BYTES, b"", memoryview(payload).cast("B")
    if isinstance(payload, np.ndarray):
        if payload.dtype.kind not in ALLOWED_DTYPE_KINDS:
            raise InvalidInput(
                f"cannot send an array of dtype {payload.dtype}",
                hint="send numeric arrays (bool, int, uint, float) or bytes",
            )
        arr = np.ascontiguousarray(payload)
        dtype = arr.dtype.str.encode("ascii")
        meta = bytes([len(dtype)]) + dtype + bytes([arr.ndim])
        meta += b"".join(_SHAPE_DIM.pack(d) for d in arr.shape)
        return KIND_ARRAY, meta, memoryview(arr.reshape(-1).view(np.uint8))
    raise InvalidInput(
        f"a payload must be bytes or a numpy array, not {type(payload).__name__}",
        hint="encode structured values with protocols.codec.dumps",
    )


def decode(kind: int, meta: bytes, data: bytes | bytearray | memoryview) -> Payload:
    """Rebuild a payload from (kind, meta, data); ProtocolError if malformed."""
    if kind == KIND_BYTES:
        return bytes(data)
    if kind != KIND_ARRAY:
        raise ProtocolError(f"unknown payload kind {kind}", hint="peer runs an incompatible pcnode")
    try:
        n = meta[0]
        dtype = np.dtype(meta[1 : 1 + n].decode("ascii"))
        ndim = meta[1 + n]
        off = 2 + n
        if ndim > MAX_NDIM or len(meta) != off + 8 * ndim:
            raise ValueError("bad shape header")
        shape = tuple(_SHAPE_DIM.unpack_from(meta, off + 8 * i)[0] for i in range(ndim))
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed array header: {exc}") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise ProtocolError(f"peer sent a refused dtype {dtype}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(
            "array payload has the wrong length",
            expected=expected,
            actual=len(data),
        )
    buf = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) for small structured messages."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"message is not JSON-serialisable: {exc}") from None


def loads(data: bytes) -> Any:
    """Parse JSON bytes from a peer; ProtocolError if they are not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"peer sent malformed JSON: {exc}") from None
