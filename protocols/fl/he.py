"""The thin HE layer of federated LR: coefficient-packed CKKS (tenseal/SEAL) and Paillier.

Both backends offer the same operations to :mod:`protocols.fl.vertical`:

* ``encrypt_rows`` / ``add_plain_rows`` / ``add_rows``: an encrypted vector with
  one value per batch row (the residual, the partial predictors);
* ``prepare`` + ``matvec``: ``Xᵀ[[v]]`` for a plaintext matrix ``X`` the party
  holds, giving encrypted *sums*, one per column;
* ``mask``: adds a fresh encryption of a uniformly random mask to every sum
  (hiding the value perfectly *and* re-randomising the ciphertext), and keeps
  the mask so that ``unmask`` can remove it from the arbiter's reply;
* the arbiter's key object ``decrypt_masked``: decrypts masked sums only.

Values are fixed point: a plaintext ``v`` with ``bits`` travels as
``round(v * 2**bits)``; a product of operands with ``a`` and ``b`` bits has
``a + b`` bits, and ``unmask`` divides it back out.

CKKS layout (why there are no rotations and no Galois keys)
-----------------------------------------------------------
A ciphertext carries ``n_in = N / n_out`` row values in polynomial
*coefficients* ``0 .. n_in-1``. For a block of ``n_out`` features the party
encodes its feature values as the polynomial with ``x[i, r]`` at exponent
``r*n_in - i`` (negacyclically wrapped). In the product, coefficient
``r*n_in`` is exactly ``sum_i v_i x[i, r]``, the gradient sum of feature ``r``
(the layout of Cheetah, Huang et al. 2022). Products are accumulated over all
row chunks of the batch before anything else, so one batch of ``B`` rows and
``F`` features costs ``ceil(B/n_in) * ceil(F/n_out)`` plaintext-ciphertext
products and yields ``ceil(F/n_out)`` ciphertexts. The other coefficients hold
cross terms that must never be revealed: each output ciphertext gets a fresh
encryption of a polynomial that is uniform modulo ``q`` added to it, so what
the arbiter decrypts is uniform, and the arbiter returns only the designated
coefficients. Those are read with SEAL's CKKS decoder (the slots are the
canonical embedding of the polynomial, so a designated coefficient is a fixed
linear form of the slots), which costs up to about 2**20 absolute error on
values of size 2**59 (measured: median 2**18, max 2**19.9 over 240 decryptions);
at 2**30 or more per unit that is below 1e-3 of one unit, far below what a
gradient step needs.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcnode.errors import CryptoError, InvalidInput, ProtocolError

from ..he import sealio
from ..he.ckks_coeff import (
    CKKS_COEFF_BITS,
    CKKS_POLY_DEGREE,
    MAX_RESULT_BITS,
    CkksCoeffContext,
    coeff_parameters,
    uniform_ntt,
)

# --- security and precision parameters ---------------------------------------------------

#: Bits of fixed-point precision for encrypted per-row values (residual,
#: partial predictors). 2**-22 rounding, and encryption noise divided by
#: 2**22, are far below the Taylor-loss error.
ROW_BITS = 22

#: Highest precision used for plaintext matrices; lowered automatically when a
#: batch is so large that results could reach MAX_RESULT_BITS.
MAX_MATRIX_BITS = 16

#: Lowest acceptable matrix precision; below it the batch is refused.
MIN_MATRIX_BITS = 6

#: Paillier modulus size: 2048 bits gives 112-bit security (NIST SP 800-57).
PAILLIER_KEY_BITS = 2048

#: Paillier fixed-point precision (there is no overflow concern with 2048 bits).
PAILLIER_MATRIX_BITS = 16

#: Row encryptions use the Damgard-Jurik-Nielsen short-exponent randomiser
#: (h**n)**a with a of this many bits (4x the 112-bit strength of the key); the
#: guest, who sees these ciphertexts, has no factorisation. Masks that reach
#: the arbiter get a full-size r**n instead, so what it decrypts is a
#: uniformly random encryption.
DJN_EXPONENT_BITS = 448

#: Window of the fixed-base table for (h**n)**a (8 bits: 56 x 256 entries).
_DJN_WINDOW = 8

#: Window of the bucket multi-exponentiation in ``PaillierOps.matvec``.
_MULTIEXP_WINDOW = 6

#: Bytes per Paillier ciphertext on the wire (values are < n**2).
_PAILLIER_CT_BYTES = 2 * PAILLIER_KEY_BITS // 8


def matrix_bits(rows: int, max_abs_x: float, max_abs_v: float, row_bits: int = ROW_BITS) -> int:
    """The matrix precision for ``rows`` rows so that ``|X^T v| * 2**bits`` cannot wrap."""
    bound = max(rows, 1) * max(max_abs_x, 1e-12) * max(max_abs_v, 1e-12)
    bits = min(MAX_MATRIX_BITS, MAX_RESULT_BITS - row_bits - math.ceil(math.log2(bound)))
    if bits < MIN_MATRIX_BITS:
        raise InvalidInput(
            f"a batch of {rows} rows with values this large does not fit the CKKS precision",
            hint="use a smaller batch size, or clip extreme feature values",
        )
    return bits


def _fixed(values: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64) * float(2**bits))


def _pack_list(blobs: list[bytes]) -> bytes:
    out = [len(blobs).to_bytes(4, "big")]
    for b in blobs:
        out.append(len(b).to_bytes(4, "big"))
        out.append(b)
    return b"".join(out)


def _unpack_list(data: bytes, limit: int) -> list[bytes]:
    try:
        n = int.from_bytes(data[:4], "big")
        if n > limit:
            raise ValueError(f"too many items ({n} > {limit})")
        off, out = 4, []
        for _ in range(n):
            ln = int.from_bytes(data[off:off + 4], "big")
            off += 4
            if off + ln > len(data):
                raise ValueError("truncated item")
            out.append(data[off:off + ln])
            off += ln
        if off != len(data):
            raise ValueError("trailing bytes")
        return out
    except ValueError as exc:
        raise ProtocolError(f"malformed ciphertext list: {exc}") from None


# ========================================================================================
# CKKS
# ========================================================================================


class _CkksBase(CkksCoeffContext):
    """State shared by the key holder and the public-key parties (SEAL via tenseal.sealapi).

    The parameters (N = 8192, one 60-bit prime: all vertical-LR arithmetic is
    linear, so no rescaling, relinearisation or rotation, hence no special
    prime) are :mod:`protocols.he.ckks_coeff`'s.
    """

    def _decode_at(self, pt: Any, positions: np.ndarray) -> np.ndarray:
        slots = np.asarray(self.encoder.decode_complex(pt))
        return self.emb.coefficients(slots, positions)


class CkksArbiterKey(_CkksBase):
    """The arbiter's secret CKKS key. Only :meth:`public_bytes` leaves the arbiter."""

    def __init__(self) -> None:
        super().__init__(coeff_parameters())
        keygen = self._s.KeyGenerator(self.seal)
        self._public_key = self._s.PublicKey()
        keygen.create_public_key(self._public_key)
        self.decryptor = self._s.Decryptor(self.seal, keygen.secret_key())
        self.decryptions = 0

    def public_bytes(self) -> bytes:
        """The public context: parameters and public key (no secret, relin or Galois keys)."""
        return _pack_list([sealio.dump(self.parms), sealio.dump(self._public_key)])

    def decrypt_masked(self, payload: bytes, n_out: int | None = None) -> np.ndarray:
        """Decrypt masked sums and return only their designated coefficients.

        ``n_out`` is the layout agreed for the job; a payload asking for another
        layout (hence other coefficients) is refused.
        """
        head, *blobs = _unpack_list(payload, limit=1 << 16)
        try:
            n_features, asked = (int(x) for x in head.decode().split(","))
        except ValueError:
            raise ProtocolError("malformed masked-sum header") from None
        if asked < 1 or self.n % asked or n_features < 0 or (n_out is not None
                                                              and asked != n_out):
            raise ProtocolError("masked sums have an invalid or unagreed layout")
        n_out = asked
        n_groups = -(-n_features // n_out)
        if len(blobs) != n_groups:
            raise ProtocolError("masked sums do not match their header",
                                expected=n_groups, actual=len(blobs))
        positions = np.arange(n_out) * (self.n // n_out)
        out = np.empty(n_groups * n_out)
        for g, blob in enumerate(blobs):
            ct = sealio.load(self._s.Ciphertext(), self.seal, blob)
            if ct.size() != 2 or ct.parms_id() != self.parms_id:
                raise CryptoError("masked sum is not a fresh-size ciphertext at the data level")
            pt = self._s.Plaintext()
            self.decryptor.decrypt(ct, pt)
            self.decryptions += 1
            out[g * n_out:(g + 1) * n_out] = self._decode_at(pt, positions)
        return out[:n_features]


@dataclass
class CkksRows:
    """An encrypted vector: ``n`` values in ``len(cts)`` chunks of ``n_in`` coefficients."""

    cts: list[Any]
    n: int


@dataclass
class CkksSums:
    """Encrypted column sums: feature ``f`` sits in ``cts[f // n_out]`` at ``(f % n_out) * n_in``."""

    cts: list[Any | None]
    n_features: int


@dataclass
class CkksMatrix:
    """A plaintext matrix encoded for :meth:`CkksOps.matvec` (plaintexts per chunk and block)."""

    plains: list[list[Any | None]]
    n_rows: int
    n_features: int
    bits: int


@dataclass
class MaskState:
    """What a party keeps to remove its masks from the arbiter's reply."""

    masks: np.ndarray
    n_features: int


class CkksOps(_CkksBase):
    """The public-key operations a guest or host performs under the arbiter's CKKS key."""

    def __init__(self, public: bytes, n_out: int) -> None:
        items = _unpack_list(public, limit=2)
        if len(items) != 2:
            raise CryptoError("the arbiter's public context must hold parameters and a public key",
                              hint="the arbiter must send only the public context")
        super().__init__(sealio.load_parameters(items[0]))
        public_key = sealio.load(self._s.PublicKey(), self.seal, items[1], what="public key")
        if n_out < 1 or self.n % n_out:
            raise InvalidInput(f"n_out must divide {self.n}")
        self.n_out = n_out
        self.n_in = self.n // n_out
        self.encryptor = self._s.Encryptor(self.seal, public_key)
        self.positions = np.arange(n_out) * self.n_in
        base = np.arange(n_out)[:, None] * self.n_in - np.arange(self.n_in)[None, :]
        self._w_sign = np.where(base < 0, -1.0, 1.0)
        self._w_pos = np.mod(base, self.n)

    # -- rows ---------------------------------------------------------------------------

    def _row_coeffs(self, values: np.ndarray, bits: int) -> np.ndarray:
        fixed = _fixed(values, bits)
        chunks = -(-len(fixed) // self.n_in)
        coeffs = np.zeros((chunks, self.n))
        padded = np.zeros(chunks * self.n_in)
        padded[:len(fixed)] = fixed
        coeffs[:, :self.n_in] = padded.reshape(chunks, self.n_in)
        return coeffs

    def encrypt_rows(self, values: np.ndarray, bits: int) -> CkksRows:
        """Encrypt one fixed-point value per row."""
        cts = []
        for coeffs in self._row_coeffs(values, bits):
            ct = self._s.Ciphertext(self.seal)
            self.encryptor.encrypt(next(self.plaintexts(coeffs[None, :])), ct)
            cts.append(ct)
        return CkksRows(cts, len(values))

    def add_plain_rows(self, rows: CkksRows, values: np.ndarray, bits: int) -> None:
        """Add plaintext per-row values (same fixed point as ``rows``) in place."""
        rows.cts = self.plus_plain_rows(rows, values, bits).cts

    def plus_plain_rows(self, rows: CkksRows, values: np.ndarray, bits: int) -> CkksRows:
        """A new encrypted vector ``rows + values`` (``rows`` is left unchanged)."""
        if len(values) != rows.n:
            raise InvalidInput("row count mismatch in add_plain_rows")
        out = []
        for ct, coeffs in zip(rows.cts, self._row_coeffs(values, bits), strict=True):
            res = self._s.Ciphertext(self.seal)
            self.evaluator.add_plain(ct, next(self.plaintexts(coeffs[None, :])), res)
            out.append(res)
        return CkksRows(out, rows.n)

    def add_rows(self, rows: CkksRows, other: CkksRows) -> None:
        """Add another encrypted vector in place."""
        if rows.n != other.n:
            raise ProtocolError("encrypted vectors of different lengths")
        for a, b in zip(rows.cts, other.cts, strict=True):
            self.evaluator.add_inplace(a, b)

    def dump_rows(self, rows: CkksRows) -> bytes:
        """Serialise an encrypted vector."""
        return _pack_list([str(rows.n).encode(), *(sealio.dump(ct) for ct in rows.cts)])

    def load_rows(self, data: bytes, n: int) -> CkksRows:
        """Load an encrypted vector of ``n`` rows sent by a peer."""
        head, *blobs = _unpack_list(data, limit=1 << 20)
        if head != str(n).encode() or len(blobs) != -(-n // self.n_in):
            raise ProtocolError("encrypted vector has the wrong length", expected=n)
        cts = []
        for blob in blobs:
            ct = sealio.load(self._s.Ciphertext(), self.seal, blob)
            if ct.size() != 2 or ct.parms_id() != self.parms_id:
                raise CryptoError("encrypted vector holds a ciphertext at the wrong level")
            cts.append(ct)
        return CkksRows(cts, n)

    # -- matrices ---------------------------------------------------------------------------

    def prepare(self, x: np.ndarray, bits: int) -> CkksMatrix:
        """Encode ``x`` (rows x features) once; reuse it for every epoch of the batch."""
        x = np.asarray(x, dtype=np.float64)
        rows, feats = x.shape
        chunks = -(-rows // self.n_in)
        groups = -(-feats // self.n_out)
        padded = np.zeros((chunks * self.n_in, groups * self.n_out))
        padded[:rows, :feats] = _fixed(x, bits)
        plains: list[list[Any | None]] = []
        for c in range(chunks):
            block = padded[c * self.n_in:(c + 1) * self.n_in].reshape(self.n_in, groups, self.n_out)
            coeffs = np.zeros((groups, self.n))
            # coefficient (r*n_in - i) mod N carries x[i, r] (negated when wrapped)
            vals = block.transpose(1, 2, 0) * self._w_sign  # groups x n_out x n_in
            coeffs[:, self._w_pos.ravel()] = vals.reshape(groups, -1)
            slots = self.emb.slots(coeffs)
            row = []
            for g in range(groups):
                if not np.any(coeffs[g]):
                    row.append(None)
                    continue
                pt = self._s.Plaintext()
                self.encoder.encode(slots[g].tolist(), 1.0, pt)
                row.append(pt)
            plains.append(row)
        return CkksMatrix(plains, rows, feats, bits)

    def matvec(self, rows: CkksRows, matrix: CkksMatrix) -> CkksSums:
        """``Xᵀ[[v]]``: plaintext-block x ciphertext products summed over all chunks."""
        if rows.n != matrix.n_rows or len(rows.cts) != len(matrix.plains):
            raise ProtocolError("encrypted vector and matrix have different row counts",
                                expected=matrix.n_rows, actual=rows.n)
        groups = -(-matrix.n_features // self.n_out)
        acc: list[Any | None] = [None] * groups
        tmp = self._s.Ciphertext(self.seal)
        for ct, plains in zip(rows.cts, matrix.plains, strict=True):
            for g, pt in enumerate(plains):
                if pt is None:
                    continue
                if acc[g] is None:
                    acc[g] = self._s.Ciphertext(self.seal)
                    self.evaluator.multiply_plain(ct, pt, acc[g])
                else:
                    self.evaluator.multiply_plain(ct, pt, tmp)
                    self.evaluator.add_inplace(acc[g], tmp)
        return CkksSums(acc, matrix.n_features)

    def encrypt_sums(self, values: np.ndarray, bits: int) -> CkksSums:
        """Encrypt plain sums into the designated positions (e.g. a host's loss term)."""
        values = np.atleast_1d(np.asarray(values, dtype=np.float64))
        groups = -(-len(values) // self.n_out)
        padded = np.zeros(groups * self.n_out)
        padded[:len(values)] = _fixed(values, bits)
        cts: list[Any | None] = []
        for g in range(groups):
            coeffs = np.zeros(self.n)
            coeffs[self.positions] = padded[g * self.n_out:(g + 1) * self.n_out]
            ct = self._s.Ciphertext(self.seal)
            self.encryptor.encrypt(next(self.plaintexts(coeffs[None, :])), ct)
            cts.append(ct)
        return CkksSums(cts, len(values))

    def add_sums(self, sums: CkksSums, other: CkksSums) -> None:
        """Add other encrypted sums (same features, same fixed point) in place."""
        if sums.n_features != other.n_features:
            raise ProtocolError("encrypted sums of different lengths")
        for g, ct in enumerate(other.cts):
            if ct is None:
                continue
            if sums.cts[g] is None:
                sums.cts[g] = ct
            else:
                self.evaluator.add_inplace(sums.cts[g], ct)

    def dump_sums(self, sums: CkksSums) -> bytes:
        """Serialise encrypted sums for another party (never for the arbiter: use mask)."""
        blobs = [b"" if ct is None else sealio.dump(ct) for ct in sums.cts]
        return _pack_list([str(sums.n_features).encode(), *blobs])

    def load_sums(self, data: bytes, n_features: int) -> CkksSums:
        """Load encrypted sums sent by a peer."""
        head, *blobs = _unpack_list(data, limit=1 << 16)
        if head != str(n_features).encode() or len(blobs) != -(-n_features // self.n_out):
            raise ProtocolError("encrypted sums have the wrong length", expected=n_features)
        cts: list[Any | None] = []
        for blob in blobs:
            cts.append(None if not blob else
                       sealio.load(self._s.Ciphertext(), self.seal, blob))
        return CkksSums(cts, n_features)

    # -- masking --------------------------------------------------------------------------

    def fresh_masks(self, count: int) -> list[tuple[Any, np.ndarray]]:
        """``count`` masks: a fresh encryption of a uniform polynomial and its designated values.

        They depend on no data, so a party makes them while it waits for a peer.
        """
        out = []
        for _ in range(count):
            r_pt = sealio.plaintext_from_ntt(self.seal, self.parms_id, uniform_ntt(self.q, self.n))
            ct = self._s.Ciphertext(self.seal)
            self.encryptor.encrypt(r_pt, ct)  # fresh randomness: re-randomises c1 too
            out.append((ct, self._decode_at(r_pt, self.positions)))
        return out

    def groups(self, n_features: int) -> int:
        """Output ciphertexts (hence masks) for ``n_features`` sums."""
        return -(-n_features // self.n_out)

    def mask(self, sums: CkksSums, masks: list[tuple[Any, np.ndarray]] | None = None
             ) -> tuple[bytes, MaskState]:
        """Add a fresh encryption of a uniform polynomial to each sum; return payload and masks.

        The arbiter decrypts uniform noise; only the designated coefficients it
        returns can be unmasked, and only by this party. ``masks`` (from
        :meth:`fresh_masks`, used once) saves making them here.
        """
        if masks is None or len(masks) != len(sums.cts):
            masks = self.fresh_masks(len(sums.cts))
        blobs, values = [], []
        for ct, (out, r_values) in zip(sums.cts, masks, strict=True):
            if ct is not None:
                self.evaluator.add_inplace(out, ct)
            values.append(r_values)
            blobs.append(sealio.dump(out))
        head = f"{sums.n_features},{self.n_out}".encode()
        state = MaskState(np.concatenate(values) if values else np.zeros(0), sums.n_features)
        return _pack_list([head, *blobs]), state

    def unmask(self, state: MaskState, reply: Any, bits: int) -> np.ndarray:
        """Remove the masks from the arbiter's reply and undo the fixed point."""
        if not isinstance(reply, np.ndarray) or reply.dtype != np.float64 \
                or reply.shape != (state.n_features,):
            raise ProtocolError("arbiter reply has the wrong shape or type")
        diff = reply - state.masks[:state.n_features]
        q = float(self.q)
        diff = np.mod(diff + q / 2, q) - q / 2
        return diff / float(2**bits)


# ========================================================================================
# Paillier
# ========================================================================================


class PaillierArbiterKey:
    """The arbiter's Paillier key pair (phe + gmpy2). Only the modulus leaves the arbiter."""

    def __init__(self, key_bits: int = PAILLIER_KEY_BITS) -> None:
        from phe import paillier

        self.public, self.private = paillier.generate_paillier_keypair(n_length=key_bits)
        self.decryptions = 0

    def public_bytes(self) -> bytes:
        """The public modulus ``n``, big-endian."""
        n = self.public.n
        return n.to_bytes((n.bit_length() + 7) // 8, "big")

    def decrypt_masked(self, payload: bytes, n_out: int | None = None) -> bytes:
        """Decrypt masked sums; the reply is the masked plaintexts, fixed width big-endian."""
        del n_out  # one value per ciphertext: there is no layout to agree
        cts = _paillier_unpack(payload, self.public.nsquare)
        width = (self.public.n.bit_length() + 7) // 8
        out = []
        for c in cts:
            out.append(self.private.raw_decrypt(c).to_bytes(width, "big"))
            self.decryptions += 1
        return b"".join(out)


def _paillier_pack(cts: list[int]) -> bytes:
    return b"".join(int(c).to_bytes(_PAILLIER_CT_BYTES, "big") for c in cts)


def _paillier_unpack(data: bytes, nsquare: int) -> list[int]:
    if len(data) % _PAILLIER_CT_BYTES:
        raise ProtocolError("Paillier ciphertext list has a ragged length")
    out = []
    for i in range(0, len(data), _PAILLIER_CT_BYTES):
        c = int.from_bytes(data[i:i + _PAILLIER_CT_BYTES], "big")
        if not 0 < c < nsquare:
            raise CryptoError("Paillier ciphertext out of range")
        out.append(c)
    return out


@dataclass
class PaillierRows:
    """An encrypted vector: one Paillier ciphertext per row."""

    cts: list[int]
    n: int


@dataclass
class PaillierSums:
    """Encrypted column sums, one ciphertext per feature."""

    cts: list[int]
    n_features: int


@dataclass
class PaillierMatrix:
    """A fixed-point integer matrix for :meth:`PaillierOps.matvec`."""

    x: np.ndarray
    n_rows: int
    n_features: int
    bits: int


class PaillierOps:
    """Public-key Paillier operations (``g = n + 1``, raw gmpy2 arithmetic)."""

    def __init__(self, public: bytes) -> None:
        import gmpy2

        self._g = gmpy2
        n = int.from_bytes(public, "big")
        if n.bit_length() < PAILLIER_KEY_BITS - 8 or n % 2 == 0:
            raise CryptoError("the arbiter's Paillier modulus is too small or malformed")
        self.n = gmpy2.mpz(n)
        self.nsq = self.n * self.n
        self._table: list[list[Any]] | None = None

    def _enc(self, m: int) -> Any:
        """Standard encryption with a full-size random r**n."""
        r = secrets.randbelow(int(self.n) - 1) + 1
        return (1 + (m % self.n) * self.n) * self._g.powmod(r, self.n, self.nsq) % self.nsq

    def _djn_table(self) -> list[list[Any]]:
        if self._table is None:
            x = secrets.randbelow(int(self.n) - 2) + 2
            base = self._g.powmod(-x * x % self.n, self.n, self.nsq)  # h**n, h = -x**2
            table = []
            for _ in range(-(-DJN_EXPONENT_BITS // _DJN_WINDOW)):
                row = [self._g.mpz(1), base]
                for _ in range(2, 1 << _DJN_WINDOW):
                    row.append(row[-1] * base % self.nsq)
                table.append(row)
                base = row[-1] * base % self.nsq  # base**(2**window)
            self._table = table
        return self._table

    def _enc_fast(self, m: int) -> Any:
        """Encryption with the DJN randomiser (h**n)**a from a fixed-base table."""
        table = self._djn_table()
        a = secrets.randbits(DJN_EXPONENT_BITS)
        r = self._g.mpz(1)
        mask = (1 << _DJN_WINDOW) - 1
        for row in table:
            d = a & mask
            if d:
                r = r * row[d] % self.nsq
            a >>= _DJN_WINDOW
        return (1 + (m % self.n) * self.n) * r % self.nsq

    def encrypt_rows(self, values: np.ndarray, bits: int) -> PaillierRows:
        """Encrypt one fixed-point value per row."""
        return PaillierRows([self._enc_fast(int(v)) for v in _fixed(values, bits)],
                            len(values))

    def add_plain_rows(self, rows: PaillierRows, values: np.ndarray, bits: int) -> None:
        """Add plaintext per-row values in place."""
        if len(values) != rows.n:
            raise InvalidInput("row count mismatch in add_plain_rows")
        for i, v in enumerate(_fixed(values, bits)):
            rows.cts[i] = rows.cts[i] * (1 + (int(v) % self.n) * self.n) % self.nsq

    def plus_plain_rows(self, rows: PaillierRows, values: np.ndarray, bits: int
                        ) -> PaillierRows:
        """A new encrypted vector ``rows + values``."""
        out = PaillierRows(list(rows.cts), rows.n)
        self.add_plain_rows(out, values, bits)
        return out

    def add_rows(self, rows: PaillierRows, other: PaillierRows) -> None:
        """Add another encrypted vector in place."""
        if rows.n != other.n:
            raise ProtocolError("encrypted vectors of different lengths")
        rows.cts = [a * b % self.nsq for a, b in zip(rows.cts, other.cts, strict=True)]

    def dump_rows(self, rows: PaillierRows) -> bytes:
        """Serialise an encrypted vector."""
        return _paillier_pack(rows.cts)

    def load_rows(self, data: bytes, n: int) -> PaillierRows:
        """Load an encrypted vector of ``n`` rows."""
        cts = [self._g.mpz(c) for c in _paillier_unpack(data, int(self.nsq))]
        if len(cts) != n:
            raise ProtocolError("encrypted vector has the wrong length", expected=n,
                                actual=len(cts))
        return PaillierRows(cts, n)

    def prepare(self, x: np.ndarray, bits: int) -> PaillierMatrix:
        """Fixed-point encode ``x`` (rows x features)."""
        x = np.asarray(x, dtype=np.float64)
        return PaillierMatrix(_fixed(x, bits).astype(np.int64), x.shape[0], x.shape[1], bits)

    def matvec(self, rows: PaillierRows, matrix: PaillierMatrix) -> PaillierSums:
        """``Xᵀ[[v]]`` by bucket multi-exponentiation.

        Exponents are offset by ``M`` to be non-negative; the offset is removed
        with one inversion of ``(prod c_i)**M`` shared by all columns.
        """
        if rows.n != matrix.n_rows:
            raise ProtocolError("encrypted vector and matrix have different row counts")
        nsq = self.nsq
        offset = int(np.max(np.abs(matrix.x))) + 1 if matrix.x.size else 1
        prod = self._g.mpz(1)
        for c in rows.cts:
            prod = prod * c % nsq
        correction = self._g.invert(self._g.powmod(prod, offset, nsq), nsq)
        width = max(1, int(2 * offset).bit_length())
        out = []
        for j in range(matrix.n_features):
            exps = (matrix.x[:, j] + offset).astype(np.int64)
            out.append(self._multiexp(rows.cts, exps, width) * correction % nsq)
        return PaillierSums(out, matrix.n_features)

    def _multiexp(self, bases: list[Any], exps: np.ndarray, width: int) -> Any:
        """``prod bases[i]**exps[i]`` (exps >= 0, < 2**width) with Pippenger buckets."""
        nsq, w = self.nsq, _MULTIEXP_WINDOW
        result = self._g.mpz(1)
        for t in range(-(-width // w) - 1, -1, -1):
            for _ in range(w):
                result = result * result % nsq
            buckets: list[Any] = [None] * (1 << w)
            digits = ((exps >> (w * t)) & ((1 << w) - 1)).tolist()
            for c, d in zip(bases, digits, strict=True):
                if d:
                    b = buckets[d]
                    buckets[d] = c if b is None else b * c % nsq
            running, acc = self._g.mpz(1), self._g.mpz(1)
            for d in range((1 << w) - 1, 0, -1):
                if buckets[d] is not None:
                    running = running * buckets[d] % nsq
                acc = acc * running % nsq
            result = result * acc % nsq
        return result

    def encrypt_sums(self, values: np.ndarray, bits: int) -> PaillierSums:
        """Encrypt plain sums."""
        values = np.atleast_1d(np.asarray(values, dtype=np.float64))
        return PaillierSums([self._enc(int(v)) for v in _fixed(values, bits)], len(values))

    def add_sums(self, sums: PaillierSums, other: PaillierSums) -> None:
        """Add other encrypted sums in place."""
        if sums.n_features != other.n_features:
            raise ProtocolError("encrypted sums of different lengths")
        sums.cts = [a * b % self.nsq for a, b in zip(sums.cts, other.cts, strict=True)]

    def dump_sums(self, sums: PaillierSums) -> bytes:
        """Serialise encrypted sums for another party."""
        return _paillier_pack(sums.cts)

    def load_sums(self, data: bytes, n_features: int) -> PaillierSums:
        """Load encrypted sums sent by a peer."""
        cts = [self._g.mpz(c) for c in _paillier_unpack(data, int(self.nsq))]
        if len(cts) != n_features:
            raise ProtocolError("encrypted sums have the wrong length")
        return PaillierSums(cts, n_features)

    def fresh_masks(self, count: int) -> list[tuple[Any, int]]:
        """``count`` (encryption of r, r) pairs with r uniform modulo ``n``."""
        out = []
        for _ in range(count):
            r = secrets.randbelow(int(self.n))
            out.append((self._enc(r), r))
        return out

    def groups(self, n_features: int) -> int:
        """Ciphertexts (hence masks) for ``n_features`` sums."""
        return n_features

    def mask(self, sums: PaillierSums, masks: list[tuple[Any, int]] | None = None
             ) -> tuple[bytes, MaskState]:
        """Multiply each sum by a fresh encryption of a uniform mask modulo ``n``."""
        if masks is None or len(masks) != len(sums.cts):
            masks = self.fresh_masks(len(sums.cts))
        cts = [c * m % self.nsq for c, (m, _) in zip(sums.cts, masks, strict=True)]
        values = np.array([r for _, r in masks], dtype=object)
        return _paillier_pack(cts), MaskState(values, sums.n_features)

    def unmask(self, state: MaskState, reply: Any, bits: int) -> np.ndarray:
        """Remove the masks modulo ``n``, centre, and undo the fixed point."""
        n = int(self.n)
        width = (n.bit_length() + 7) // 8
        if not isinstance(reply, bytes) or len(reply) != width * state.n_features:
            raise ProtocolError("arbiter reply has the wrong length")
        out = np.empty(state.n_features)
        for i in range(state.n_features):
            v = (int.from_bytes(reply[i * width:(i + 1) * width], "big") - int(state.masks[i])) % n
            if v > n // 2:
                v -= n
            out[i] = v / float(2**bits)
        return out


Ops = CkksOps | PaillierOps
ArbiterKey = CkksArbiterKey | PaillierArbiterKey


def new_arbiter_key(backend: str) -> ArbiterKey:
    """Generate the arbiter's key for ``backend`` ("ckks" or "paillier")."""
    if backend == "ckks":
        return CkksArbiterKey()
    if backend == "paillier":
        return PaillierArbiterKey()
    raise InvalidInput(f"unknown HE backend {backend!r}", hint="use 'ckks' or 'paillier'")


def open_ops(backend: str, public: bytes, n_out: int = 1) -> Ops:
    """The public-key operations for ``backend`` from the arbiter's public bytes."""
    if backend == "ckks":
        return CkksOps(public, n_out)
    if backend == "paillier":
        return PaillierOps(public)
    raise InvalidInput(f"unknown HE backend {backend!r}", hint="use 'ckks' or 'paillier'")


def choose_n_out(total_rows: int, batch_rows: int, max_features: int) -> int:
    """Features per CKKS output ciphertext minimising encryptions per epoch.

    A host encrypts ``rows / n_in`` row ciphertexts per epoch and masks
    ``batches * ceil(F / n_out)`` sums, each costing one public-key encryption.
    """
    batches = max(1, -(-total_rows // max(batch_rows, 1)))
    best, best_cost = 1, float("inf")
    n_out = 1
    while n_out <= 256:
        n_in = CKKS_POLY_DEGREE // n_out
        cost = batches * -(-batch_rows // n_in) + batches * -(-max_features // n_out)
        if cost < best_cost:
            best, best_cost = n_out, cost
        n_out *= 2
    return best


__all__ = [
    "CKKS_COEFF_BITS",
    "CKKS_POLY_DEGREE",
    "PAILLIER_KEY_BITS",
    "ROW_BITS",
    "ArbiterKey",
    "CkksArbiterKey",
    "CkksOps",
    "MaskState",
    "Ops",
    "PaillierArbiterKey",
    "PaillierOps",
    "choose_n_out",
    "matrix_bits",
    "new_arbiter_key",
    "open_ops",
]
