"""Coefficient-packed CKKS: exact read-out, uniform masks, and what a peer may not send."""

import numpy as np
import pytest

from pcnode.errors import CryptoError, InvalidInput
from protocols.he.ckks_coeff import CKKS_POLY_DEGREE, CkksCoeffPublic, CkksCoeffSecret, noise_bound
from protocols.he.coefficients import reversed_selection

N = CKKS_POLY_DEGREE


@pytest.fixture(scope="module")
def keys():
    secret = CkksCoeffSecret()
    return secret, CkksCoeffPublic(secret.public_bytes())


def _select(pub, blobs, weights):
    acc = None
    plain = pub.selection(weights)
    for b in blobs:
        acc = pub.multiply_add(acc, pub.load_ciphertext(b), plain)
    return acc


def test_reversed_selection_layout():
    out = reversed_selection(np.array([1.0, 2.0, 3.0]), 8)
    assert out.tolist() == [1, 0, 0, 0, 0, 0, -3, -2]


def test_selected_sum_is_read_exactly_up_to_the_noise_bound(keys):
    secret, pub = keys
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 2**38, N).astype(np.float64) for _ in range(3)]
    sel = (rng.random(N) < 0.4).astype(np.float64)
    acc = _select(pub, [secret.encrypt(r) for r in rows], sel)
    blob, r0 = pub.mask(acc)
    got = secret.centred(secret.read_constant(blob) - r0)
    want = int(sum(int(v) for r in rows for v in r[sel == 1]))
    assert abs(got - want) <= noise_bound(3 * int(sel.sum()))


def test_masks_are_uniform_and_a_set_constant_is_exact(keys):
    secret, pub = keys
    zero = secret.encrypt(np.zeros(N))
    seen = [secret.read_constant(pub.mask(pub.load_ciphertext(zero))[0]) for _ in range(8)]
    assert len(set(seen)) == 8 and max(abs(v) for v in seen) > 2**50  # uniform mod q ~ 2^60
    blob, c0 = pub.mask(pub.load_ciphertext(zero), constant=12345)
    assert c0 == 12345 and abs(secret.read_constant(blob) - 12345) <= noise_bound(1)


def test_worker_copy_encrypts_for_the_same_key(keys):
    secret, pub = keys
    worker = CkksCoeffSecret.from_worker_bytes(secret.worker_bytes())
    blob = worker.encrypt(np.full(N, 7.0))
    acc = _select(pub, [blob], np.ones(N))
    assert abs(secret.read_constant(pub.dump(acc)) - 7 * N) <= noise_bound(N)
    with pytest.raises(InvalidInput):
        worker.public_bytes()


def test_too_large_coefficients_are_refused(keys):
    secret, _ = keys
    with pytest.raises(InvalidInput, match="too large"):
        secret.encrypt(np.full(N, 2.0**41))


def test_foreign_truncated_and_malformed_input_is_named(keys):
    secret, pub = keys
    other = CkksCoeffSecret()
    with pytest.raises(CryptoError, match="foreign context"):
        pub.unpack(other.pack([other.encrypt(np.zeros(N))]))
    batch = secret.pack([secret.encrypt(np.zeros(N))])
    with pytest.raises(CryptoError, match=r"truncated|impossible length"):
        pub.unpack(batch[:-10])
    with pytest.raises(CryptoError, match="trailing"):
        pub.unpack(batch + b"x")
    with pytest.raises(CryptoError, match="not a pcnode CKKS"):
        pub.unpack(b"XXXXX" + batch[5:])
    with pytest.raises(CryptoError, match="wrong number"):
        pub.unpack(batch, expected=2)
    with pytest.raises(CryptoError, match="malformed ciphertext"):
        pub.load_ciphertext(secret.encrypt(np.zeros(N))[:200])


def test_public_context_carries_no_secret_and_a_secret_one_is_refused(keys):
    secret, _ = keys
    data = secret.public_bytes()
    assert len(data) < 300_000  # parameters + public key; no Galois (~35 MB) or relin keys
    with pytest.raises(CryptoError, match="secret key"):
        CkksCoeffPublic(secret.worker_bytes())
