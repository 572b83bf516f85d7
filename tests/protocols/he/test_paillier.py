"""Paillier wrapper: fast owner encryption, homomorphic sums, serialisation and validation."""

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcnode.errors import CryptoError, InvalidInput
from protocols.he.paillier import (
    DEFAULT_PAILLIER_BITS,
    STRONG_PAILLIER_BITS,
    PaillierPublicKey,
    PaillierSecretKey,
    fast_encrypt,
    short_exponent_bits,
)


@pytest.fixture(scope="module")
def sk():
    return PaillierSecretKey.generate()


@pytest.fixture(scope="module")
def other():
    return PaillierSecretKey.generate()


def test_default_key_is_2048_bits_and_exponents_are_twice_the_security(sk):
    assert sk.public_key.bits == DEFAULT_PAILLIER_BITS == 2048
    assert short_exponent_bits(2048) == 224
    assert short_exponent_bits(3072) == 256


@pytest.mark.slow
def test_3072_bit_option():
    k = PaillierSecretKey.generate(STRONG_PAILLIER_BITS)
    assert k.public_key.bits == 3072
    assert k.decrypt(k.encrypt_many([12345])[0]) == 12345


def test_unsupported_size_is_refused():
    with pytest.raises(InvalidInput, match="unsupported Paillier key size"):
        PaillierSecretKey.generate(1024)


@settings(max_examples=30, deadline=None)
@given(ms=st.lists(st.integers(min_value=0, max_value=2**2000), min_size=1, max_size=8))
def test_fast_encryption_decrypts_and_sums(sk, ms):
    cts = sk.encrypt_many(ms)
    assert [sk.decrypt(c) for c in cts] == ms
    total = sk.public_key.sum(cts)
    assert sk.decrypt(total) == sum(ms) % sk.public_key.n


def test_fast_encryption_is_randomised(sk):
    a, b = sk.encrypt_many([7, 7])
    assert a != b


def test_public_encrypt_rerandomize_and_add_plain(sk):
    pk = sk.public_key
    c = pk.encrypt(41)
    c2 = pk.rerandomize(pk.add_plain(c, 1))
    assert c2 != c and sk.decrypt(c2) == 42


def test_public_key_round_trip_and_separation(sk):
    pk = PaillierPublicKey.from_bytes(sk.public_key.to_bytes())
    assert pk == sk.public_key and pk.key_id == sk.key_id
    assert not hasattr(pk, "decrypt")
    assert str(sk.public_key.n) not in repr(sk)  # no secrets in reprs


@pytest.mark.parametrize("blob", [b"", b"PCPK1\x08\x00" + b"\x01" * 256, b"XXXXX" + b"\x00" * 300])
def test_malformed_public_key_is_a_crypto_error(blob):
    with pytest.raises(CryptoError):
        PaillierPublicKey.from_bytes(blob)


def test_ciphertext_batch_round_trip(sk):
    pk = sk.public_key
    cts = sk.encrypt_many([1, 2, 3])
    blob = pk.encode_ciphertexts(cts)
    assert len(blob) == 19 + 3 * pk.ciphertext_bytes
    assert pk.decode_ciphertexts(blob, check_coprime=True, expected=3) == cts


def test_foreign_key_batch_is_named(sk, other):
    blob = other.public_key.encode_ciphertexts(other.encrypt_many([5]))
    with pytest.raises(CryptoError, match="foreign Paillier key"):
        sk.public_key.decode_ciphertexts(blob)


def test_out_of_range_ciphertext_is_named(sk):
    pk = sk.public_key
    blob = pk.encode_ciphertexts([pk.nsquare - 1])
    bad = blob[:19] + (int(pk.nsquare) + 5).to_bytes(pk.ciphertext_bytes, "big")
    with pytest.raises(CryptoError, match="out of range"):
        pk.decode_ciphertexts(bad)
    zero = blob[:19] + bytes(pk.ciphertext_bytes)
    with pytest.raises(CryptoError, match="out of range"):
        pk.decode_ciphertexts(zero)


def test_non_coprime_ciphertext_is_named(sk):
    pk = sk.public_key
    p = int(sk._p)
    blob = pk.encode_ciphertexts([p])
    with pytest.raises(CryptoError, match="not coprime"):
        pk.decode_ciphertexts(blob, check_coprime=True)
    with pytest.raises(CryptoError, match="not coprime"):
        sk.decrypt(gmpy2.mpz(p) * 3)


def test_wrong_length_and_count(sk):
    pk = sk.public_key
    blob = pk.encode_ciphertexts(sk.encrypt_many([1, 2]))
    with pytest.raises(CryptoError, match="wrong length"):
        pk.decode_ciphertexts(blob[:-1])
    with pytest.raises(CryptoError, match="wrong number"):
        pk.decode_ciphertexts(blob, expected=3)


def test_secret_key_must_match_public_key(sk, other):
    with pytest.raises(CryptoError, match="does not match"):
        PaillierSecretKey(sk.public_key, other._p, other._q)


def test_plaintext_out_of_range(sk):
    with pytest.raises(InvalidInput):
        fast_encrypt(sk.material(), [sk.public_key.n])
    with pytest.raises(InvalidInput):
        sk.public_key.encrypt(-1)


def test_large_jobs_use_the_wide_window_table(sk):
    from protocols.he.paillier import DJN_WINDOW_BITS_LARGE, LARGE_JOB_ENCRYPTIONS

    km = sk.material(encryptions=LARGE_JOB_ENCRYPTIONS)
    assert km.window_bits == DJN_WINDOW_BITS_LARGE
    cts = fast_encrypt(km, [0, 1, 2**100])
    assert [sk.decrypt(c) for c in cts] == [0, 1, 2**100]
