"""Batched X25519 scalar multiplication: one scalar, many points.

ECDH-PSI spends almost all of its time in ``X25519(k, u)`` with one job
scalar ``k`` and millions of points ``u``. Two implementations are available:

* ``crypto_mb``: Intel's Cryptography Primitives Library (the ``ipp-crypto``
  wheel, Apache-2.0), whose multi-buffer ``mbx_x25519_mb8`` does eight
  independent, constant-time X25519 operations at once in AVX-512 IFMA
  registers. On the project's 2-core AMD EPYC (Zen 4) it measures about
  119,000 operations per second per core, against 27,600 for OpenSSL's
  single-buffer X25519 (``scripts/bench_psi.py --x25519`` prints both).
  It needs a CPU with AVX-512F and AVX-512 IFMA; the library reports
  ``MBX_STATUS_UNSUPPORTED_ISA_ERR`` otherwise, which we check at load.
* ``openssl``: ``cryptography``'s X25519, one point at a time; always there.

:data:`BACKEND` is chosen once per process: ``crypto_mb`` when its library
loads and passes a known-answer test (RFC 7748 §5.2 vectors), else
``openssl``. Setting ``PCNODE_X25519=openssl`` (or ``crypto_mb``) forces a
choice; forcing ``crypto_mb`` where it cannot run is an error, not a silent
fallback. Both backends compute RFC 7748 X25519 exactly (the scalar is
clamped, the top bit of ``u`` is ignored, non-canonical ``u`` is reduced), and
the tests compare them on random and edge-case inputs.

**A defect in crypto_mb, and how we contain it.** On some *structured*
inputs crypto_mb 2026.2.0 returns a wrong result: every u in
[p - 1393, p - 1] except p - 5 .. p - 2 (so u = -1, a small-order point,
does not give zero), and all-ones patterns such as u = 2^92 - 1, for some or
all scalars (``tests/protocols/psi/test_x25519.py`` pins the cases). Hash
outputs are uniformly distributed and never showed a difference from OpenSSL
(millions of random inputs compared), but a peer that *chooses* points and
sees the results of a mis-computation could in principle learn something
about the scalar: whether a crafted point is mis-computed can depend on the
scalar's bits, so each such point may leak about one bit. Points we hashed
ourselves, and peer points whose blinded values stay with us, go through
crypto_mb as they are. Points whose blinded values go back to the party that
chose them (the holder's second pass in PSI and in intersection-aggregate,
``returned_to_sender``) are **audited**: a secret random
:data:`RETURNED_AUDIT_FRACTION` of them (every point of a batch smaller than
:data:`AUDIT_ALL_BELOW`) is recomputed with OpenSSL, and any disagreement
raises :class:`~pcnode.errors.CryptoError` before the batch is returned, so the
job fails and nothing more leaves the node. Scalars are fresh per job, so an
attacker must extract a scalar within one job: getting ``m`` mis-computed
results back needs all ``m`` to escape the audit, probability
``(7/8)^m`` (``m = 186``, what key recovery needs even with 2^64 brute force
for the rest: below 2^-35). ``PCNODE_X25519_RETURNED=openssl`` computes every
such point with OpenSSL instead (about 3x slower on that pass). The
small-order inputs (canonical or not) are mapped to zero by us before
crypto_mb sees them.

A small-order input point gives the all-zero output. Neither backend raises for
it here: :func:`scalar_mult_many` returns the zeros and callers decide (PSI
refuses the peer's message and names the position).

We write no curve arithmetic ourselves: both backends are maintained
libraries. What lives here is the ctypes binding (the wheel ships no Python
API) and the loading of the Intel runtime libraries it links against
(``intel-cmplr-lib-rt``: libintlc, libimf, libsvml, libirng), which pip
installs into ``<sys.prefix>/lib`` where the dynamic loader does not look.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from pcnode.errors import CryptoError, InternalError, InvalidInput

#: Bytes in a u-coordinate and in a scalar.
POINT_BYTES = 32
#: Lanes of one ``mbx_x25519_mb8`` call.
LANES = 8
#: Environment variable that forces a backend: ``crypto_mb``, ``openssl`` or ``auto``.
BACKEND_ENV = "PCNODE_X25519"
#: Environment variable naming a directory that holds libcrypto_mb.so and the
#: Intel runtime libraries, if they are not in ``<sys.prefix>/lib``.
LIBDIR_ENV = "PCNODE_CRYPTO_MB_LIBDIR"

#: The Intel runtime libraries libcrypto_mb needs, in dependency order.
_RUNTIME_LIBS = ("libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so")
_CRYPTO_MB = ("libcrypto_mb.so.13", "libcrypto_mb.so")

_P = 2**255 - 19
#: u-coordinates of every point of order dividing 8 on Curve25519 (RFC 7748 §7 /
#: libsodium's blocklist), as canonical integers. Blinding any of them gives u = 0.
SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        _P - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)

#: RFC 7748 §5.2 test vectors: (scalar, u, X25519(scalar, u)), all little-endian hex.
RFC7748_VECTORS = (
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
)


def _candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(LIBDIR_ENV):
        dirs.append(Path(os.environ[LIBDIR_ENV]))
    dirs += [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"]
    return dirs


def _load_crypto_mb() -> Callable[..., int]:
    """Load libcrypto_mb and its runtime; return ``mbx_x25519_mb8`` (OSError if impossible)."""
    for d in _candidate_dirs():
        lib = next((d / n for n in _CRYPTO_MB if (d / n).exists()), None)
        if lib is None:
            continue
        for dep in _RUNTIME_LIBS:
            path = d / dep
            # Local scope is enough: dlopen matches libcrypto_mb's DT_NEEDED
            # entries against already-loaded sonames.
            ctypes.CDLL(str(path) if path.exists() else dep)
        fn = ctypes.CDLL(str(lib)).mbx_x25519_mb8
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        return fn  # type: ignore[no-any-return]
    raise OSError(f"libcrypto_mb.so not found in {', '.join(map(str, _candidate_dirs()))}")


class _CryptoMb:
    """``mbx_x25519_mb8`` over packed buffers, eight points per call."""

    name = "crypto_mb"

    def __init__(self) -> None:
        self._fn = _load_crypto_mb()

    def scalar_mult_many(self, points: bytes, key: bytes) -> bytes:
        n = len(points) // POINT_BYTES
        if n == 0:
            return b""
        padded = -(-n // LANES) * LANES
        src = np.empty(padded * POINT_BYTES, dtype=np.uint8)
        src[: n * POINT_BYTES] = np.frombuffer(points, dtype=np.uint8)
        src[n * POINT_BYTES :] = np.tile(_BASE_POINT, padded - n)
        rows = src.reshape(-1, POINT_BYTES)[:n]
        small = _small_order_rows(rows)
        if small is not None:
            rows[small] = _BASE_POINT
        dst = np.empty_like(src)
        key_buf = np.frombuffer(key, dtype=np.uint8).copy()
        offsets = np.arange(padded, dtype=np.uint64) * POINT_BYTES
        src_ptrs = offsets + np.uint64(src.ctypes.data)
        dst_ptrs = offsets + np.uint64(dst.ctypes.data)
        key_ptrs = np.full(LANES, key_buf.ctypes.data, dtype=np.uint64)
        fn, kp = self._fn, key_ptrs.ctypes.data
        sp, dp, step = src_ptrs.ctypes.data, dst_ptrs.ctypes.data, LANES * 8
        for g in range(0, padded // LANES * step, step):
            status = fn(dp + g, kp, sp + g)
            # Per-lane status bytes; LOW_ORDER_ERR (zero output) is handled by
            # the caller, anything else means the library itself failed.
            if status and any((status >> (4 * lane)) & 0xF not in (0, 4) for lane in range(LANES)):
                raise InternalError(f"crypto_mb X25519 failed (status {status:#x})")
        if small is not None:
            dst.reshape(-1, POINT_BYTES)[:n][small] = 0
        return dst[: n * POINT_BYTES].tobytes()


def _small_order_encodings() -> np.ndarray:
    """Every 255-bit encoding (top bit cleared) of a point of order dividing 8."""
    values = sorted({v for c in SMALL_ORDER_U for v in (c, c + _P) if v < 2**255})
    return np.array([list(v.to_bytes(POINT_BYTES, "little")) for v in values], dtype=np.uint8)


_SMALL_ORDER = _small_order_encodings()


def _small_order_rows(rows: np.ndarray) -> np.ndarray | None:
    """Mask of rows (n, 32) that encode a small-order point, or None if there is none."""
    masked = rows.copy()
    masked[:, 31] &= 0x7F
    hit = np.zeros(len(rows), dtype=bool)
    for pattern in _SMALL_ORDER:
        hit |= (masked == pattern).all(axis=1)
    return hit if hit.any() else None


class _OpenSsl:
    """``cryptography``'s X25519, one point at a time."""

    name = "openssl"

    def __init__(self) -> None:
        self._load = _public_loader()

    def scalar_mult_many(self, points: bytes, key: bytes) -> bytes:
        exchange = X25519PrivateKey.from_private_bytes(key).exchange
        load = self._load
        step = POINT_BYTES
        try:
            return b"".join([exchange(load(points[i : i + step])) for i in range(0, len(points), step)])
        except ValueError:  # some point has small order: OpenSSL refuses the zero output
            pass
        out = []
        for i in range(0, len(points), step):
            try:
                out.append(exchange(load(points[i : i + step])))
            except ValueError:
                out.append(bytes(step))
        return b"".join(out)


def _public_loader() -> Callable[[bytes], X25519PublicKey]:
    """``X25519PublicKey.from_public_bytes`` without its per-call backend check (~2.5 µs).

    Falls back to the public API if a future ``cryptography`` moves the binding.
    """
    X25519PublicKey.from_public_bytes(_BASE_POINT.tobytes())  # raises if unsupported
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        loader = rust_openssl.x25519.from_public_bytes
        loader(_BASE_POINT.tobytes())
        return loader  # type: ignore[no-any-return]
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - other versions
        return X25519PublicKey.from_public_bytes


#: u = 9, the Curve25519 base point; pads the last multi-buffer group.
_BASE_POINT = np.frombuffer(bytes([9]) + bytes(POINT_BYTES - 1), dtype=np.uint8)


def _known_answer(impl: _CryptoMb | _OpenSsl) -> bool:
    points = b"".join(bytes.fromhex(u) for _, u, _ in RFC7748_VECTORS)
    for i, (k, _, want) in enumerate(RFC7748_VECTORS):
        got = impl.scalar_mult_many(points, bytes.fromhex(k))[i * POINT_BYTES : (i + 1) * POINT_BYTES]
        if got != bytes.fromhex(want):
            return False
    return True


def _choose() -> _CryptoMb | _OpenSsl:
    wanted = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "crypto_mb", "openssl"):
        raise InvalidInput(f"{BACKEND_ENV}={wanted!r} is not a known X25519 backend",
                           hint="use crypto_mb, openssl or auto (the default)")
    if wanted == "openssl":
        return _OpenSsl()
    try:
        impl = _CryptoMb()
        if _known_answer(impl):
            return impl
        reason = "it failed the RFC 7748 known-answer test"
    except (OSError, AttributeError, InternalError) as exc:
        reason = str(exc)
    if wanted == "crypto_mb":
        raise InvalidInput(f"the crypto_mb X25519 backend cannot run here: {reason}",
                           hint="install the ipp-crypto and intel-cmplr-lib-rt wheels on a CPU "
                                f"with AVX-512 IFMA, or unset {BACKEND_ENV}")
    return _OpenSsl()


_IMPL = _choose()
#: The backend this process uses: ``"crypto_mb"`` or ``"openssl"``.
BACKEND: str = _IMPL.name
#: Fraction of returned-to-sender points recomputed with OpenSSL when crypto_mb
#: is in use (see the module docstring for the bound this gives); 1/8 costs
#: about 4.4 µs per point against 35 µs for OpenSSL on every point.
RETURNED_AUDIT_FRACTION = 1 / 8
#: Batches smaller than this are audited in full (the cost is negligible).
AUDIT_ALL_BELOW = 64
#: Environment variable: ``audit`` (default) or ``openssl`` (every returned point by OpenSSL).
RETURNED_ENV = "PCNODE_X25519_RETURNED"


def scalar_mult_many(points: bytes, key: bytes, *, returned_to_sender: bool = False) -> bytes:
    """``X25519(key, u)`` for every packed 32-byte ``u`` in ``points``, packed likewise.

    A small-order ``u`` gives 32 zero bytes in its place (callers must check).
    ``returned_to_sender`` says the results go back to the party that chose
    the points: with crypto_mb they are then audited against OpenSSL (see the
    module docstring), and a disagreement raises CryptoError.
    """
    if len(key) != POINT_BYTES:
        raise InternalError("X25519 scalar must be 32 bytes")
    if len(points) % POINT_BYTES:
        raise InternalError("packed points are not a multiple of 32 bytes")
    points, key = bytes(points), bytes(key)
    out = _IMPL.scalar_mult_many(points, key)
    if returned_to_sender and not isinstance(_IMPL, _OpenSsl):
        if _returned_policy() == "openssl":
            return _openssl().scalar_mult_many(points, key)
        _audit(points, key, out)
    return out


def _returned_policy() -> str:
    policy = os.environ.get(RETURNED_ENV, "audit").strip().lower() or "audit"
    if policy not in ("audit", "openssl"):
        raise InvalidInput(f"{RETURNED_ENV}={policy!r} is not a known policy",
                           hint="use audit (the default) or openssl")
    return policy


def _audit(points: bytes, key: bytes, out: bytes) -> None:
    """Recompute a secret random sample with OpenSSL; CryptoError if any result differs."""
    n = len(points) // POINT_BYTES
    if n < AUDIT_ALL_BELOW:
        picked = np.arange(n)
    else:
        rng = np.random.default_rng(secrets.randbits(128))
        picked = np.flatnonzero(rng.random(n) < RETURNED_AUDIT_FRACTION)
    if not picked.size:
        return
    src = np.frombuffer(points, dtype=np.uint8).reshape(n, POINT_BYTES)[picked]
    got = np.frombuffer(out, dtype=np.uint8).reshape(n, POINT_BYTES)[picked]
    want = np.frombuffer(_openssl().scalar_mult_many(src.tobytes(), key), dtype=np.uint8)
    bad = np.flatnonzero((got != want.reshape(-1, POINT_BYTES)).any(axis=1))
    if bad.size:
        raise CryptoError(
            f"X25519 self-check failed: crypto_mb and OpenSSL disagree on {bad.size} of "
            f"{picked.size} audited points; nothing from this batch is returned",
            hint="the peer may be sending crafted points; report it, or set "
                 f"{RETURNED_ENV}=openssl", position=int(picked[bad[0]]))


_OPENSSL: _OpenSsl | None = None


def _openssl() -> _OpenSsl:
    global _OPENSSL
    if _OPENSSL is None:
        _OPENSSL = _IMPL if isinstance(_IMPL, _OpenSsl) else _OpenSsl()
    return _OPENSSL


def backend(name: str) -> Callable[[bytes, bytes], bytes]:
    """``scalar_mult_many`` of a named backend (for tests and benchmarks)."""
    if name == "openssl":
        return _OpenSsl().scalar_mult_many
    if name == "crypto_mb":
        return _CryptoMb().scalar_mult_many
    raise InvalidInput(f"unknown X25519 backend {name!r}", hint="use crypto_mb or openssl")


def available_backends() -> list[str]:
    """The backends that load and pass the known-answer test in this process."""
    names = ["openssl"]
    try:
        if _known_answer(_CryptoMb()):
            names.insert(0, "crypto_mb")
    except (OSError, AttributeError, InternalError):
        pass
    return names


__all__ = [
    "AUDIT_ALL_BELOW",
    "BACKEND",
    "BACKEND_ENV",
    "LANES",
    "RETURNED_AUDIT_FRACTION",
    "RETURNED_ENV",
    "RFC7748_VECTORS",
    "SMALL_ORDER_U",
    "available_backends",
    "backend",
    "scalar_mult_many",
]
