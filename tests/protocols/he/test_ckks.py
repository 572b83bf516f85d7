"""CKKS wrapper: public contexts carry no secret key, foreign or malformed input is named."""

import numpy as np
import pytest
import tenseal as ts

from pcnode.errors import CryptoError, InvalidInput
from protocols.he.ckks import (
    DEFAULT_CKKS_PARAMS,
    CkksParams,
    CkksPublicContext,
    CkksSecretContext,
    encode_vectors,
    round_to_quantum,
)


@pytest.fixture(scope="module")
def sc():
    return CkksSecretContext.generate()


def test_named_parameters():
    p = DEFAULT_CKKS_PARAMS
    assert (p.poly_modulus_degree, p.coeff_mod_bit_sizes, p.scale_bits) == (8192, (60, 40, 40, 60), 40)
    assert p.slots == 4096 and p.bits_after_product == 100
    with pytest.raises(InvalidInput, match="128-bit security"):
        CkksParams(8192, (60, 60, 60, 60))


def test_public_context_has_no_secret_key_and_is_small(sc):
    data = sc.public_context_bytes()
    assert len(data) < 1024  # no Galois (~35 MB), relinearisation or public keys
    pub = CkksPublicContext.from_bytes(data)
    assert not pub.context.is_private()
    assert not pub.context.has_galois_keys()


def test_a_context_with_its_secret_key_is_refused(sc):
    data = sc.public_context_bytes()
    body = sc.context.serialize(save_secret_key=True)
    smuggled = data[: len(data) - len(sc.context.serialize(save_public_key=False, save_secret_key=False,
                                                           save_galois_keys=False, save_relin_keys=False))]
    with pytest.raises(CryptoError, match="secret key"):
        CkksPublicContext.from_bytes(smuggled + body)


def test_a_context_with_extra_keys_is_refused(sc):
    data = sc.public_context_bytes()
    plain = sc.context.serialize(save_public_key=False, save_secret_key=False,
                                 save_galois_keys=False, save_relin_keys=False)
    other = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    other.global_scale = 2**40
    pub_with_key = other.serialize(save_secret_key=False, save_galois_keys=False, save_relin_keys=True)
    with pytest.raises(CryptoError, match="not the public context"):
        CkksPublicContext.from_bytes(data[: len(data) - len(plain)] + pub_with_key)


@pytest.mark.parametrize("blob", [b"", b"garbage" * 10, b"PCCK1" + bytes(40)])
def test_malformed_context(blob):
    with pytest.raises(CryptoError):
        CkksPublicContext.from_bytes(blob)


def test_encrypt_decrypt_and_foreign_context(sc):
    x = np.linspace(-1, 1, 100)
    v = sc.encrypt(x)
    assert np.allclose(sc.decrypt(v)[:100], x, atol=1e-6)
    blob = encode_vectors(sc.context_id, [v])
    assert len(sc.load_vectors(blob, expected=1)) == 1
    other = CkksSecretContext.generate()
    with pytest.raises(CryptoError, match="foreign context"):
        sc.load_vectors(encode_vectors(other.context_id, [other.encrypt(x)]))
    with pytest.raises(CryptoError, match="does not parse"):
        sc.load_vectors(encode_vectors(sc.context_id, [b"not a ciphertext" * 20]))
    with pytest.raises(CryptoError, match="wrong number"):
        sc.load_vectors(blob, expected=2)
    with pytest.raises(CryptoError, match="trailing"):
        sc.load_vectors(blob + b"x")


def test_product_gain_is_measured_close_to_one(sc):
    g = sc.product_gain()
    assert g != 1.0 and abs(g - 1) < 1e-5


def test_round_to_quantum():
    assert round_to_quantum(10.3, 0.25) == 10.25
    with pytest.raises(InvalidInput):
        round_to_quantum(float("nan"), 1.0)
