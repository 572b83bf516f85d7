"""The ECDH adapter: blinding commutes, salts separate jobs, small-order points are refused."""

import numpy as np
import pytest

from pcnode.errors import CryptoError
from protocols.stats import ecdh


def test_blinding_commutes():
    items = [b"alice", b"bob", "\u5f20\u4e09".encode()]
    a, b = ecdh.new_scalar(), ecdh.new_scalar()
    ab = ecdh.reblind(ecdh.hash_and_blind(items, b"salt", a), b)
    ba = ecdh.reblind(ecdh.hash_and_blind(items, b"salt", b), a)
    assert ab.shape == (3, 32) and ab.dtype == np.uint8
    assert np.array_equal(ab, ba)
    assert len({bytes(r) for r in ab}) == 3


def test_salt_and_scalar_change_everything():
    a = ecdh.new_scalar()
    x = ecdh.hash_and_blind([b"k"], b"salt1", a)
    assert not np.array_equal(x, ecdh.hash_and_blind([b"k"], b"salt2", a))
    assert not np.array_equal(x, ecdh.hash_and_blind([b"k"], b"salt1", ecdh.new_scalar()))


def test_hash_lands_on_the_curve():
    p = 2**255 - 19
    for i in range(50):
        u = int.from_bytes(ecdh.hash_to_u(f"item{i}".encode(), b"s"), "little")
        rhs = (u**3 + 486662 * u * u + u) % p
        assert pow(rhs, (p - 1) // 2, p) in (0, 1)  # a square: the point is on the curve, not the twist


def test_small_order_point_is_refused():
    zero = np.zeros((1, 32), dtype=np.uint8)
    with pytest.raises(CryptoError, match="small order"):
        ecdh.reblind(zero, ecdh.new_scalar())


def test_wrong_shape_is_refused():
    with pytest.raises(CryptoError, match=r"\(n, 32\)"):
        ecdh.reblind(np.zeros((2, 31), dtype=np.uint8), ecdh.new_scalar())
