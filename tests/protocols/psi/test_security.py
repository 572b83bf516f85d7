"""What travels and what can be learnt: raw keys never on the wire, cardinality output
unlinkable to rows, malformed or vanished peers fail cleanly."""

import hashlib
import random
import threading

import numpy as np
import pytest

from pcnode.errors import Cancelled, ChannelError, ChannelTimeout, ProtocolError
from protocols.memory import MemoryNetwork, run_local
from protocols.psi import MODES, PsiParams, run_holder, run_requester
from protocols.psi.curve import P, blind_points
from protocols.psi.stream import (
    MAX_CHUNK_POINTS,
    TAG_HELLO,
    TAG_HOLDER_BLINDED,
    TAG_REPLY,
    TAG_REQUESTER_BLINDED,
    TAG_REQUESTER_DOUBLE,
)

from .helpers import run_psi

KEY_A, KEY_B, KEY_B2 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
SALT = b"unlinkability-test-salt-32-bytes"


def as_bytes(payload):
    return payload if isinstance(payload, bytes) else np.ascontiguousarray(payload).tobytes()


class Recorder:
    """A channel tap keeping every (direction, tag, payload bytes)."""

    def __init__(self):
        self.log = []
        self.lock = threading.Lock()

    def __call__(self, direction, peer, tag, payload):
        with self.lock:
            self.log.append((direction, tag, as_bytes(payload)))

    def points(self, direction, tag):
        blobs = [p for d, t, p in self.log if d == direction and t == tag]
        return np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, 32)

    def received(self):
        """What arrived, tag by tag in arrival order (streams under different tags are
        read concurrently, so their interleaving is not part of the view)."""
        return sorted(((t, p) for d, t, p in self.log if d == "recv"), key=lambda tp: tp[0])


@pytest.mark.parametrize("mode", MODES)
def test_no_raw_key_nor_its_sha256_appears_in_any_message(mode):
    rnd = random.Random(11)
    x = [f"ID-{rnd.randrange(10**9):09d}-京" for _ in range(300)]
    y = x[:150] + [f"ID-{rnd.randrange(10**9):09d}-沪" for _ in range(150)]
    tap_r, tap_s = Recorder(), Recorder()
    run_psi(x, y, mode, taps={"r": [tap_r], "s": [tap_s]})
    wire = b"\x00".join(p for tap in (tap_r, tap_s) for _, _, p in tap.log)
    assert len(wire) > 300 * 32
    for item in x + y:
        raw = item.encode()
        digest = hashlib.sha256(raw).digest()
        for needle in (raw, digest, digest.hex().encode(), raw.hex().encode()):
            assert needle not in wire


def _cardinality_view(x, key_b, mode="cardinality"):
    tap = Recorder()
    run_psi(x, [f"h{i}" for i in range(0, 800, 3)], mode, salt=SALT, keys=(KEY_A, key_b),
            taps={"r": [tap]})
    return tap


def test_cardinality_output_cannot_be_linked_to_requester_rows():
    x = [f"h{i}" for i in range(400)]
    view = _cardinality_view(x, KEY_B)
    sent = view.points("send", TAG_REQUESTER_BLINDED)
    got = view.points("recv", TAG_REQUESTER_DOUBLE)
    # What came back is exactly our values blinded by the holder ...
    double = np.frombuffer(blind_points(sent.tobytes(), KEY_B), np.uint8).reshape(-1, 32)
    assert sorted(map(bytes, got)) == sorted(map(bytes, double))
    # ... in value order: a position says nothing the value does not, and the value
    # needs the holder's secret scalar to be related to anything we sent.
    assert list(map(bytes, got)) == sorted(map(bytes, got))
    where = {bytes(v): j for j, v in enumerate(got)}
    perm = np.array([where[bytes(v)] for v in double])
    assert abs(np.corrcoef(np.arange(len(perm)), perm)[0, 1]) < 0.3
    # Another holder scalar reorders the same rows completely.
    view2 = _cardinality_view(x, KEY_B2)
    got2 = view2.points("recv", TAG_REQUESTER_DOUBLE)
    double2 = np.frombuffer(blind_points(sent.tobytes(), KEY_B2), np.uint8).reshape(-1, 32)
    where2 = {bytes(v): j for j, v in enumerate(got2)}
    perm2 = np.array([where2[bytes(v)] for v in double2])
    assert abs(np.corrcoef(perm, perm2)[0, 1]) < 0.3
    # Contrast: in intersection mode the same check finds the positional link.
    linked = _cardinality_view(x, KEY_B, mode="intersection")
    assert bytes(linked.points("recv", TAG_REQUESTER_DOUBLE)) == bytes(double)


def test_requester_view_in_cardinality_mode_depends_only_on_its_set():
    x = [f"h{i}" for i in range(200)]
    shuffled = x[:]
    random.Random(5).shuffle(shuffled)
    a = _cardinality_view(x + x[:20], KEY_B).received()
    b = _cardinality_view(shuffled, KEY_B).received()
    assert a == b  # byte for byte: row order and duplicates leave no trace
    # The holder's own stream does not depend on the requester's items at all.
    c = _cardinality_view([f"z{i}" for i in range(50)], KEY_B).received()

    def holder_stream(view):
        return [p for t, p in view if t == TAG_HOLDER_BLINDED]

    assert holder_stream(a) == holder_stream(c)


# -- malformed peers -------------------------------------------------------------------------


def fake_holder(payloads):
    """A holder that accepts the hello, then sends ``payloads`` as its blinded stream."""

    def holder(ch):
        link = ch["r"]
        link.recv_json(TAG_HELLO)
        link.send_json(TAG_REPLY, {"ok": True})
        for p in payloads:
            link.send(TAG_HOLDER_BLINDED, p)

    return holder


def run_against(holder, x=("a", "b")):
    p = PsiParams(workers=0, compute_timeout=0)
    return run_local({"r": lambda ch: run_requester(ch["s"], list(x), p), "s": holder},
                     timeout=20)


def pt(u):
    return np.frombuffer(u.to_bytes(32, "little"), np.uint8).reshape(1, 32)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (np.zeros((3, 32), np.int32), "wrong dtype"),
        (np.zeros((3, 31), np.uint8), "wrong shape"),
        (np.zeros(32, np.uint8), "wrong shape"),
        (b"not points", "expected an array"),
        (np.full((1, 32), 0xFF, np.uint8), "not a canonical"),
        (pt(P), "not a canonical"),
        (np.concatenate([pt(9), pt(4)]), "out of canonical order or duplicated"),
        (np.concatenate([pt(9), pt(9)]), "out of canonical order or duplicated"),
        (pt(1), "small-order"),
        (np.zeros((MAX_CHUNK_POINTS + 1, 32), np.uint8), "sent a chunk of"),
    ],
)
def test_malformed_holder_stream_is_a_protocol_error(payload, message):
    with pytest.raises(ProtocolError, match=message):
        run_against(fake_holder([payload]))


def test_order_is_checked_across_chunks():
    with pytest.raises(ProtocolError, match="out of canonical order"):
        run_against(fake_holder([pt(9), pt(4)]))


def test_holder_returning_the_wrong_count_is_caught():
    def holder(ch):
        link = ch["r"]
        link.recv_json(TAG_HELLO)
        link.send_json(TAG_REPLY, {"ok": True})
        link.send(TAG_HOLDER_BLINDED, np.zeros((0, 32), np.uint8))
        link.send(TAG_REQUESTER_DOUBLE, pt(9))
        link.send(TAG_REQUESTER_DOUBLE, np.zeros((0, 32), np.uint8))

    with pytest.raises(ProtocolError, match="returned 1 double-blinded points for our 2"):
        run_against(holder)


def test_refusal_reason_reaches_the_requester():
    def holder(ch):
        ch["r"].recv_json(TAG_HELLO)
        ch["r"].send_json(TAG_REPLY, {"ok": False, "reason": "grant expired"})

    with pytest.raises(ProtocolError, match="refused the PSI job: grant expired"):
        run_against(holder)


def test_malformed_hello_is_refused_by_the_holder():
    def requester(ch):
        ch["s"].send_json(TAG_HELLO, {"protocol": "pcnode-psi", "version": 1})

    with pytest.raises(ProtocolError, match="malformed PSI hello"):
        run_local({"r": requester,
                   "s": lambda ch: run_holder(ch["r"], ["a"], PsiParams(workers=0))})


# -- vanished peers -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("die_at", ["hello", "mid-stream"])
def test_peer_dying_mid_protocol_gives_cancelled_not_a_hang(die_at):
    def holder(ch):
        link = ch["r"]
        link.recv_json(TAG_HELLO)
        if die_at == "mid-stream":
            link.send_json(TAG_REPLY, {"ok": True})
            link.send(TAG_HOLDER_BLINDED, pt(9))
        link.cancel("holder node stopped")

    with pytest.raises(Cancelled, match="holder node stopped"):
        run_against(holder, x=[f"k{i}" for i in range(100)])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("victim", ["requester", "holder"])
def test_a_crashing_party_cancels_the_other(victim):
    errors = {}

    def crash(stage, done, total):
        if stage == "blinded" and done > 50:
            raise RuntimeError("simulated crash")

    def wrap(role, fn):
        def party(ch):
            try:
                return fn(ch)
            except Exception as exc:
                errors[role] = exc
                raise
        return party

    p = PsiParams(workers=0, task_items=16, chunk_size=16)
    x = [f"k{i}" for i in range(300)]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_local({
            "requester": wrap("requester", lambda ch: run_requester(
                ch["holder"], x, p, progress=crash if victim == "requester" else None)),
            "holder": wrap("holder", lambda ch: run_holder(
                ch["requester"], x, p, progress=crash if victim == "holder" else None)),
        }, timeout=30)
    survivor = "holder" if victim == "requester" else "requester"
    assert isinstance(errors[survivor], ChannelError)
    assert "stopped: RuntimeError" in str(errors[survivor]) or isinstance(
        errors[survivor], Cancelled)


def test_a_silent_peer_times_out():
    net = MemoryNetwork(["r", "s"], timeout=0.2)
    p = PsiParams(workers=0, compute_timeout=0)
    with pytest.raises(ChannelTimeout):
        run_local({"r": lambda ch: run_requester(ch["s"], ["a"], p), "s": lambda ch: None},
                  network=net)


def test_holder_returning_too_many_points_is_caught():
    def holder(ch):
        link = ch["r"]
        link.recv_json(TAG_HELLO)
        link.send_json(TAG_REPLY, {"ok": True})
        link.send(TAG_HOLDER_BLINDED, np.zeros((0, 32), np.uint8))
        link.send(TAG_REQUESTER_DOUBLE, np.concatenate([pt(4), pt(9), pt(16)]))

    with pytest.raises(ProtocolError, match="more double-blinded points than the 2"):
        run_against(holder)
