"""Exact integer-coefficient encoding through SEAL's CKKS encoder.

SEAL's CKKS slot ``j`` is the plaintext polynomial evaluated at
``zeta**(3**j mod 2N)`` with ``zeta = exp(i*pi/N)``. Handing the encoder those
evaluations of an *integer* polynomial, with scale 1, makes it round back to
exactly that polynomial, as long as the coefficients stay well inside float64
(we keep them below 2**40, where the FFT's error is far below 1/2).

That is what coefficient packing needs: values sit in polynomial
coefficients, and a product with a plaintext polynomial computes inner
products (``sum_i a_i b_i`` in coefficient 0 when ``b`` is laid out reversed
and negated, ``b_i`` at exponent ``-i``), with no rotations and no Galois keys.
"""

from __future__ import annotations

import numpy as np

#: Largest |coefficient| that round-trips exactly through the float64 encoder.
MAX_EXACT_COEFFICIENT = 2**40


class CoefficientEmbedding:
    """The canonical embedding of degree-``n`` polynomials, as SEAL's CKKS encoder orders slots."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.zeta = np.exp(1j * np.pi * np.arange(n) / n)
        self.gen = np.array([pow(3, j, 2 * n) for j in range(n // 2)], dtype=np.int64)
        self.slot_index = (self.gen - 1) // 2

    def slots(self, coeffs: np.ndarray) -> np.ndarray:
        """Canonical-embedding slot values of integer coefficient rows (…, N)."""
        full = np.fft.ifft(coeffs * self.zeta, axis=-1) * self.n
        return full[..., self.slot_index]

    def coefficients(self, slots: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Coefficients at ``positions`` of the polynomial with these decoded slots.

        Inverse of :meth:`slots`: the evaluations at the conjugate roots are the
        conjugates, and one FFT of size N recovers every coefficient.
        """
        full = np.empty(self.n, dtype=np.complex128)
        full[self.slot_index] = slots
        full[self.n - 1 - self.slot_index] = np.conj(slots)
        coeffs = (np.fft.fft(full) / self.n * np.conj(self.zeta)).real
        return coeffs[positions]


def reversed_selection(weights: np.ndarray, n: int) -> np.ndarray:
    """Coefficients of ``b`` with ``b_0 = w_0`` and ``-w_i`` at ``n - i``.

    In the negacyclic ring ``X**n = -1``, so ``X**-i = -X**(n-i)``: the product
    of a polynomial ``a`` with this ``b`` has ``sum_i a_i w_i`` as coefficient 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[-1] > n:
        raise ValueError("more weights than coefficients")
    out = np.zeros((*w.shape[:-1], n))
    out[..., 0] = w[..., 0]
    m = w.shape[-1]
    if m > 1:
        out[..., n - m + 1:] = -w[..., :0:-1]
    return out


__all__ = ["MAX_EXACT_COEFFICIENT", "CoefficientEmbedding", "reversed_selection"]
