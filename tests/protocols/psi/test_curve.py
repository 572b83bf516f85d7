"""Hash to Curve25519 and X25519 blinding: RFC vectors and the group properties PSI needs."""

import hashlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcnode.errors import ProtocolError
from protocols.psi.blinding import hash_and_blind_chunk
from protocols.psi.curve import (
    SMALL_ORDER_U,
    FieldHasher,
    P,
    blind_one,
    blind_points,
    canonical_mask,
    elligator2_u,
    expand_message_xmd,
    hash_to_u,
    is_on_curve,
    job_dst,
)
from protocols.psi.normalize import Normalization

#: Order of the prime-order subgroup of Curve25519.
ELL = 2**252 + 27742317777372353535851937790883648493

#: curve25519_XMD:SHA-512_ELL2_NU_ vectors (cfrg hash-to-curve poc/vectors):
#: field element u[0] -> x-coordinate of Q = map_to_curve(u[0]).
ELL2_MAP_VECTORS = [
    (0x65D61DFA58CF932CD60F65F24739D1AFE89442E4A3B2E6EA9D65B0865F148901,
     0x1241E151A4DA26769778A6C8AA5A219FF608C6C31BEA49A0558487A102BF6355),
    (0x1393600FD74775F0D19A8EBD282B05349641A8B079C71030BF1BF370C41ACEF9,
     0x25C758D9C7A11A43E72D3DDD7976458330FA9E37F63991457FAC99A70253CFBA),
    (0x3E2240CE35B52E6CE7F2CC4C3E57C03BC1619494256E495DADADB10DCC2675E8,
     0x6C70B60BBEA45867F1E270AF0812137AC64C8931370DAE67A4130141F9BBACB1),
    (0x6719884A782571B55353A8F2946A3E42430F0C769CE85D1A47026D491452B773,
     0x64AAF5AE99E65460BA87F7F3C6871A66C3C5D3E671B33FE723603C0EED7B9922),
]

#: RFC 9380 Appendix K.3 (expand_message_xmd, SHA-512, DST "QUUX-V01-CS02-with-expander").
XMD_DST = b"QUUX-V01-CS02-with-expander"
XMD_VECTORS = [
    (b"", 0x20, "2eaa1f7b5715f4736e6a5dbe288257abf1faa028680c1d938cd62ac699ead642"),
    (b"abc", 0x20, "0eeda81f69376c80c0f8986496f22f21124cb3c562cf1dc608d2c13005553b0f"),
    (b"abcdef0123456789", 0x20,
     "2e375fc05e05e80dbf3083796fde2911789d9e8847e1fcebf4ca4b36e239b338"),
    (b"", 0x80,
     "0687ce02eba5eb3faf1c3c539d1f04babd3c0f420edae244eeb2253b6c6d6865145c31458e824b4e87ca61c3442d"
     "c7c8c9872b0b7250aa33e0668ccebbd2b386de658ca11a1dcceb51368721ae6dcd2d4bc86eaebc4e0d11fa02ad05"
     "3289c9b28a03da6c942b2e12c14e88dbde3b0ba619d6214f47212b628f3e1b537b66efcf"),
]


def ladder(u: int, k: int) -> int:
    """RFC 7748 Montgomery ladder with an unclamped scalar; returns 0 for the identity."""
    x1, x2, z2, x3, z3, swap = u, 1, 0, u, 1, 0
    for t in reversed(range(k.bit_length())):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return x2 * pow(z2, P - 2, P) % P


def u_of(b: bytes) -> int:
    return int.from_bytes(b, "little")


@pytest.mark.parametrize(("u0", "qx"), ELL2_MAP_VECTORS)
def test_elligator2_matches_the_hash_to_curve_vectors(u0, qx):
    assert elligator2_u(u0) == qx


@pytest.mark.parametrize(("msg", "length", "expected"), XMD_VECTORS)
def test_expand_message_xmd_matches_rfc9380(msg, length, expected):
    assert expand_message_xmd(msg, XMD_DST, length).hex() == expected


@given(st.binary(max_size=200))
def test_fast_field_hasher_equals_the_reference_expander(msg):
    dst = job_dst(b"s" * 32)
    assert FieldHasher(dst).expand(msg) == expand_message_xmd(msg, dst, 48)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=P - 1))
def test_map_output_is_on_the_curve_never_the_twist(r):
    u = elligator2_u(r)
    assert 0 <= u < P
    assert is_on_curve(u)
    # The other candidate of the map is on the twist whenever the first is not used.


def test_twist_points_exist_and_are_detected():
    twist = [u for u in range(2, 40) if not is_on_curve(u)]
    assert twist, "expected small u-values on the twist"
    pts = b"".join(u.to_bytes(32, "little") for u in twist)
    with pytest.raises(ProtocolError, match="not a Curve25519 point"):
        blind_points(pts, os.urandom(32), check_curve=True)


def test_blinded_points_lie_in_the_prime_order_subgroup():
    key = os.urandom(32)
    dst = job_dst(os.urandom(32))
    cofactor_seen = False
    for i in range(12):
        u = hash_to_u(f"item-{i}".encode(), FieldHasher(dst))
        cofactor_seen |= ladder(u_of(u), ELL) != 0  # the raw map output has a small component
        blinded = u_of(blind_one(u, key))
        assert blinded not in SMALL_ORDER_U
        assert ladder(blinded, ELL) == 0  # ELL * point = identity: prime-order subgroup
    assert cofactor_seen


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32))
def test_blinding_commutes(msg, a, b):
    u = hash_to_u(msg, FieldHasher(job_dst(b"t" * 32)))
    assert blind_one(blind_one(u, a), b) == blind_one(blind_one(u, b), a)


@pytest.mark.parametrize("u", sorted(SMALL_ORDER_U))
def test_small_order_points_are_refused(u):
    with pytest.raises(ProtocolError, match="small-order"):
        blind_points(u.to_bytes(32, "little"), os.urandom(32), check_curve=False)
    with pytest.raises(ProtocolError):  # with the curve check it may fail that check first
        blind_points(u.to_bytes(32, "little"), os.urandom(32), check_curve=True)


def test_canonical_mask_rejects_values_at_or_above_p_and_the_top_bit():
    vals = [0, 5, P - 1, P, P + 1, 2**255 - 1, 2**255 + 3]
    arr = np.array([list(v.to_bytes(32, "little")) for v in vals], dtype=np.uint8)
    assert canonical_mask(arr).tolist() == [True, True, True, False, False, False, False]


def test_fused_worker_matches_the_reference_path():
    key, dst = os.urandom(32), job_dst(os.urandom(32))
    items = ["a", "b", " é ", "", "x" * 300, b"\x00raw"]
    out, skipped = hash_and_blind_chunk(items, dst, Normalization(strip=False), key)
    ref = b"".join(
        blind_one(hash_to_u(i if isinstance(i, bytes) else i.encode(), FieldHasher(dst)), key)
        for i in items
    )
    assert out == ref and skipped == []


def test_salt_separates_jobs():
    a = hash_to_u(b"same", FieldHasher(job_dst(b"1" * 32)))
    b = hash_to_u(b"same", FieldHasher(job_dst(b"2" * 32)))
    assert a != b
    assert hashlib.sha256(b"same").digest() not in (a, b)
