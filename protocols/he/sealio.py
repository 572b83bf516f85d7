"""Byte-level access to SEAL objects held by tenseal.

tenseal's ``sealapi`` binding saves and loads SEAL objects only through file
paths, and ``save`` always compresses. This module hides that behind
``dump_ciphertext``/``load_ciphertext`` and ``plaintext_from_ntt`` (which writes
an uncompressed SEAL plaintext in SEAL's documented serialisation layout and
loads it, so that uniformly random NTT-form polynomials can be made without a
per-coefficient Python loop).

Scratch files live in a private temporary directory (``/dev/shm`` when it
exists) with one file per thread, and only ever hold ciphertexts or random
masks, never raw data.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import threading
from typing import Any

import numpy as np

from pcnode.errors import CryptoError

#: SEAL serialisation header: magic, header size 16, version major/minor,
#: compression mode (0 = none), reserved, total size.
_SEAL_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")
_version: tuple[int, int] | None = None

#: tmpfs, so that scratch copies of ciphertexts never reach a disk.
_SHM = "/dev/shm"  # noqa: S108 - a private mkdtemp directory is made inside it

_lock = threading.Lock()
_dir: str | None = None
_local = threading.local()


def _scratch_dir() -> str:
    global _dir
    with _lock:
        if _dir is None:
            base = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
            _dir = tempfile.mkdtemp(prefix="pcnode-he-", dir=base)
            atexit.register(shutil.rmtree, _dir, True)
        return _dir


def _path(kind: str) -> str:
    paths = getattr(_local, "paths", None)
    if paths is None:
        paths = _local.paths = {}
    if kind not in paths:
        paths[kind] = os.path.join(_scratch_dir(), f"{kind}-{os.getpid()}-{threading.get_ident()}")
    return paths[kind]


def dump(obj: Any) -> bytes:
    """Serialise a SEAL object (ciphertext, public key, a seeded ``Serializable``, ...) to bytes."""
    path = _path("out")
    obj.save(path)
    with open(path, "rb") as fh:
        return fh.read()


def load(obj: Any, context: Any, data: bytes, what: str = "ciphertext") -> Any:
    """Load ``data`` into the SEAL object ``obj``; malformed bytes raise CryptoError."""
    path = _path("in")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        obj.load(context, path)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CryptoError(f"peer sent a malformed {what}: {exc}",
                          hint="the peer runs an incompatible pcnode or the data is corrupt") from None
    return obj


def _seal_version() -> tuple[int, int]:
    """The (major, minor) SEAL version this tenseal build writes in its headers."""
    global _version
    if _version is None:
        import tenseal.sealapi as sealapi

        head = dump(sealapi.Plaintext())[:_HEADER.size]
        magic, _size, major, minor, _c, _r, _t = _HEADER.unpack(head)
        if magic != _SEAL_MAGIC:
            raise CryptoError("unexpected SEAL serialisation header from tenseal")
        _version = (major, minor)
    return _version


def load_parameters(data: bytes) -> Any:
    """SEAL ``EncryptionParameters`` from bytes written by :func:`dump`."""
    import tenseal.sealapi as sealapi

    path = _path("in")
    with open(path, "wb") as fh:
        fh.write(data)
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    try:
        parms.load(path)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CryptoError(f"peer sent malformed encryption parameters: {exc}") from None
    return parms


def plaintext_bytes(parms_id: list[int], values: np.ndarray, scale: float = 1.0) -> bytes:
    """An uncompressed SEAL ``Plaintext`` image holding ``values`` (NTT form at ``parms_id``)."""
    data = np.ascontiguousarray(values, dtype="<u8").tobytes()
    n = len(values)
    version = _seal_version()
    inner = _HEADER.pack(_SEAL_MAGIC, 16, *version, 0, 0, 16 + 8 + len(data))
    inner += struct.pack("<Q", n) + data
    body = np.asarray(parms_id, dtype="<u8").tobytes() + struct.pack("<Qd", n, scale) + inner
    return _HEADER.pack(_SEAL_MAGIC, 16, *version, 0, 0, 16 + len(body)) + body


def plaintext_from_ntt(context: Any, parms_id: list[int], values: np.ndarray) -> Any:
    """A SEAL ``Plaintext`` in NTT form with exactly ``values`` (one residue per slot)."""
    import tenseal.sealapi as sealapi

    pt = sealapi.Plaintext()
    return load(pt, context, plaintext_bytes(parms_id, values), what="plaintext")


__all__ = ["dump", "load", "load_parameters", "plaintext_bytes", "plaintext_from_ntt"]
