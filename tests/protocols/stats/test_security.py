"""What crosses the wire: no raw value, key or secret leaves the holder; bad ciphertexts are named."""

import json
import struct

import numpy as np
import pytest

from pcnode.errors import CryptoError
from protocols.he.ckks_coeff import CkksCoeffPublic, CkksCoeffSecret, _unpack
from protocols.he.paillier import PaillierPublicKey, PaillierSecretKey
from protocols.stats import StatsQuery

from .helpers import run_stats, shared_key


def _dataset(n_s=60, n_r=50, seed=11):
    rng = np.random.default_rng(seed)
    s_keys = [f"resident-{rng.integers(10**11, 10**12)}X".encode() for _ in range(n_s)]
    r_keys = s_keys[10:] + [f"other-{i:09d}".encode() for i in range(n_r - (n_s - 10))]
    cents = rng.integers(500_001, 9_999_999, (2, n_s))
    cents[cents % 100 == 0] += 1  # never a whole number: cannot collide with a layout integer
    cols = {"income": cents[0] / 100, "tax": cents[1] / 100}
    grp = np.array([["east", "west", "north"][i % 3] for i in range(n_s)])
    return s_keys, r_keys, cols, grp, cents


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, bool):
        return
    elif isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, str):
        try:
            yield float(obj)
        except ValueError:
            yield obj


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_no_raw_value_key_or_secret_in_any_message_the_holder_sends(backend):
    s_keys, r_keys, cols, grp, cents = _dataset()
    sent = []
    tap = lambda direction, peer, tag, payload: direction == "send" and sent.append((tag, payload))  # noqa: E731
    q = StatsQuery.parse("count,sum:income,mean:income,var:tax,hist:tax:5000|50000|100000",
                         group_by="district")
    res, _ = run_stats(q, r_keys, s_keys, cols, group=grp, backend=backend, taps=[tap])
    assert res.intersection_size == 50
    tags = {t for t, _ in sent}
    assert {"stats/setup", "stats/key", "stats/ab", "stats/b", "stats/enc", "stats/release"} <= tags

    raw_values = set(cols["income"].tolist()) | set(cols["tax"].tolist())
    raw_ints = set(cents.ravel().tolist())
    needles = [k for k in s_keys]
    for c in cents.ravel().tolist():
        needles += [struct.pack("<q", c), struct.pack(">q", c)]
    for v in raw_values:
        needles += [struct.pack("<d", v), struct.pack(">d", v), repr(v).encode()]
    if backend == "paillier":
        key = shared_key()
        width = key.public_key.bits // 16
        needles += [int(key._p).to_bytes(width, "big"), int(key._q).to_bytes(width, "big"),
                    int(key._p).to_bytes(width, "little")]
    for tag, payload in sent:
        blob = payload.tobytes() if isinstance(payload, np.ndarray) else payload
        for n in needles:
            assert n not in blob, f"raw material found in {tag}"
        if tag in ("stats/setup", "stats/release"):
            for x in _numbers(json.loads(blob)):
                assert x not in raw_values and x not in raw_ints, f"raw value in {tag}"
        if tag == "stats/key" and backend == "ckks":
            _, parts = _unpack(blob, "public context")
            assert len(parts) == 2  # parameters and a public key, nothing else
            assert CkksCoeffPublic(blob).context_id == blob[5:21]


def _flip_key_id(blob: bytes) -> bytes:
    return blob[:5] + bytes(8) + blob[13:]


def test_foreign_key_ciphertexts_from_the_holder_are_named():
    s_keys, r_keys, cols, *_ = _dataset()
    tamper = lambda tag, p: _flip_key_id(p) if tag == "stats/enc" else p  # noqa: E731
    with pytest.raises(CryptoError, match="foreign Paillier key"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, s_tamper=tamper)


def test_out_of_range_ciphertext_from_the_holder_is_named():
    s_keys, r_keys, cols, *_ = _dataset()

    def tamper(tag, p):
        if tag != "stats/enc":
            return p
        w = shared_key().public_key.ciphertext_bytes
        return p[:19] + b"\xff" * w + p[19 + w:]

    with pytest.raises(CryptoError, match="out of range"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, s_tamper=tamper)


def test_truncated_ciphertext_batch_is_named():
    s_keys, r_keys, cols, *_ = _dataset()
    tamper = lambda tag, p: p[:-7] if tag == "stats/enc" else p  # noqa: E731
    with pytest.raises(CryptoError, match="wrong length"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, s_tamper=tamper)


def test_foreign_and_malformed_ckks_vectors_are_named():
    s_keys, r_keys, cols, *_ = _dataset()
    other = CkksCoeffSecret()

    def foreign(tag, p):
        if tag != "stats/enc":
            return p
        n = len(_unpack(p, "batch")[1])
        return other.pack([other.encrypt(np.zeros(8192))] * n)

    with pytest.raises(CryptoError, match="foreign context"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, backend="ckks",
                  s_tamper=foreign)

    def garbage(tag, p):
        if tag != "stats/enc":
            return p
        context_id, blobs = _unpack(p, "batch")
        return p[:5] + context_id + struct.pack(">I", len(blobs)) + b"".join(
            struct.pack(">I", 100) + b[:100] for b in blobs)

    with pytest.raises(CryptoError, match="malformed ciphertext"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, backend="ckks",
                  s_tamper=garbage)

    with pytest.raises(CryptoError, match="truncated"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, backend="ckks",
                  s_tamper=lambda tag, p: p[:10] if tag == "stats/enc" else p)


def test_a_context_carrying_the_secret_key_is_refused_by_the_requester():
    s_keys, r_keys, cols, *_ = _dataset()

    def leak(tag, p):
        if tag != "stats/key":
            return p
        return CkksCoeffSecret().worker_bytes()  # parameters and a secret key

    with pytest.raises(CryptoError, match="secret key"):
        run_stats(StatsQuery.parse("count"), r_keys, s_keys, cols, backend="ckks", s_tamper=leak)


def test_forged_ckks_aggregates_from_the_requester_are_named():
    s_keys, r_keys, cols, *_ = _dataset()
    box: dict = {}

    def keep_key(tag, p):
        if tag == "stats/key":
            box["pub"] = CkksCoeffPublic(p)
        return p

    def forged(tag, p):  # well-formed ciphertexts under the holder's key, not our aggregate
        if tag != "stats/agg/data":
            return p
        pub = box["pub"]
        n = len(pub.unpack(p))
        return pub.pack([pub.mask(None)[0] for _ in range(n)])

    with pytest.raises(CryptoError, match="impossible count"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, backend="ckks",
                  s_tamper=keep_key, r_tamper=forged)

    with pytest.raises(CryptoError, match="wrong number of CKKS aggregates"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, backend="ckks",
                  s_tamper=keep_key,
                  r_tamper=lambda tag, p: box["pub"].pack(box["pub"].unpack(p)[:1])
                  if tag == "stats/agg/data" else p)


def test_malformed_aggregates_from_the_requester_are_named_at_both_ends():
    s_keys, r_keys, cols, *_ = _dataset()
    pk: PaillierPublicKey = shared_key().public_key

    def too_big(tag, p):
        if tag != "stats/agg/data":
            return p
        return p[:19] + (int(pk.nsquare) + 1).to_bytes(pk.ciphertext_bytes, "big") \
            + p[19 + pk.ciphertext_bytes:]

    with pytest.raises(CryptoError, match="out of range"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, r_tamper=too_big)

    def forged(tag, p):  # a well-formed ciphertext that is not an aggregate of ours
        if tag != "stats/agg/data":
            return p
        n = (len(p) - 19) // pk.ciphertext_bytes
        return pk.encode_ciphertexts([pk.encrypt(pk.n - 1 - i) for i in range(n)])

    with pytest.raises(CryptoError, match="impossible count"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, r_tamper=forged)

    other = PaillierSecretKey.generate()

    def foreign(tag, p):
        if tag != "stats/agg/data":
            return p
        return other.public_key.encode_ciphertexts(other.encrypt_many([1]))

    with pytest.raises(CryptoError, match="foreign Paillier key"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, r_tamper=foreign)


def test_requester_cannot_split_an_ungrouped_query_into_accumulators():
    s_keys, r_keys, cols, *_ = _dataset()

    def split(tag, p):
        if tag != "stats/agg":
            return p
        meta = json.loads(p)
        meta["n_acc"] = 5
        return json.dumps(meta).encode()

    from pcnode.errors import ProtocolError

    with pytest.raises(ProtocolError, match="aggregate header"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, r_tamper=split)


def test_requester_refuses_a_layout_that_would_show_the_holder_its_sums():
    s_keys, r_keys, cols, *_ = _dataset()

    def unmask(tag, p):
        if tag != "stats/setup":
            return p
        setup = json.loads(p)
        for f in setup["backend_setup"]["layout"]["fields"]:
            f[2] = False
        return json.dumps(setup).encode()

    from pcnode.errors import ProtocolError

    with pytest.raises(ProtocolError, match="unmasked"):
        run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, s_tamper=unmask)
