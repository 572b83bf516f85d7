"""Instrumentation: what the arbiter decrypts, what the guest receives, a host that dies."""

import threading

import numpy as np
import pytest

from pcnode.errors import Cancelled, PeerUnavailable
from protocols.fl import VerticalParams, run_arbiter, run_guest, run_host
from protocols.fl.data import Standardizer
from protocols.memory import MemoryNetwork

from .helpers import breast_cancer_split

PARAMS = VerticalParams(guest="bank", hosts=["tax"], arbiter="operator", epochs=2,
                        batch_size=100, learning_rate=0.3, l2=0.002, tol=0.0, patience=5,
                        seed=5)


def _run(parties, network):
    """Run each party in a thread; return (results, errors) per party without re-raising."""
    results, errors = {}, {}

    def go(name, fn):
        try:
            results[name] = fn(network.channels(name))
        except BaseException as exc:
            errors[name] = exc

    threads = [threading.Thread(target=go, args=item) for item in parties.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a party hung"
    return results, errors


def test_arbiter_only_ever_decrypts_masked_gradients():
    xg, xh, y = breast_cancer_split()
    decrypted, gradients = [], {}

    def probe(event, **f):
        if event == "decrypted":
            decrypted.append((f["party"], f["tag"], f["values"]))
        elif event == "gradient":
            gradients[(f["party"], f["epoch"], f["step"])] = f["values"]

    net = MemoryNetwork(["bank", "tax", "operator"])
    _results, errors = _run({
        "bank": lambda ch: run_guest(ch, xg, y, PARAMS, probe=probe),
        "tax": lambda ch: run_host(ch, xh, PARAMS, probe=probe),
        "operator": lambda ch: run_arbiter(ch, PARAMS, probe=probe),
    }, net)
    assert not errors
    grads = [(party, tag, v) for party, tag, v in decrypted if "/grad/" in tag]
    assert len(grads) == len(gradients) > 0
    everything = np.concatenate([v for _, _, v in decrypted])
    for party, tag, seen in grads:
        _, _, _, epoch, step = tag.split("/")
        true = gradients[(party, int(epoch), int(step))]
        assert seen.shape == true.shape
        # at any plausible fixed-point scale the decrypted value is nowhere near the gradient
        for bits in range(0, 60, 2):
            assert not np.any(np.isclose(seen / 2.0**bits, true, rtol=1e-6, atol=1e-6))
    # masked values are spread over the whole ~2**60 modulus (uniform: about half above 2**58)
    frac = np.mean(np.abs(everything) > 2.0**58)
    assert 0.25 < frac < 0.75


def test_guest_never_receives_host_features_or_host_scores():
    xg, xh, y = breast_cancer_split()
    received = []
    net = MemoryNetwork(["bank", "tax", "operator"])
    for ch in net.channels("bank").values():
        ch.taps.append(lambda d, peer, tag, payload: received.append((d, peer, tag, payload))
                       if d == "recv" else None)
    results, errors = _run({
        "bank": lambda ch: run_guest(ch, xg, y, PARAMS),
        "tax": lambda ch: run_host(ch, xh, PARAMS),
        "operator": lambda ch: run_arbiter(ch, PARAMS),
    }, net)
    assert not errors and received
    std = Standardizer.fit(xh).apply(xh)
    weights = results["tax"].weights
    needles = set()
    for m in (xh, std, std @ weights[:, None]):
        for v in np.asarray(m)[:25].ravel():
            if v != 0.0:
                needles.add(np.float64(v).tobytes())  # 8 bytes: no chance matches
    # arrays come only from the arbiter (masked replies); nothing numeric from the host
    assert all(peer == "operator" for _, peer, _, payload in received
               if isinstance(payload, np.ndarray))
    blob = b"\x00".join(p if isinstance(p, bytes) else p.tobytes() for *_, p in received)
    assert not any(n in blob for n in needles)


@pytest.mark.parametrize("backend", ["ckks"])
def test_a_host_that_dies_mid_training_fails_cleanly_at_guest_and_arbiter(backend):
    xg, xh, y = breast_cancer_split()
    p = VerticalParams(guest="bank", hosts=["tax"], arbiter="operator", backend=backend,
                       epochs=5, batch_size=100, seed=5)
    net = MemoryNetwork(["bank", "tax", "operator"], timeout=60)

    def host(ch):
        def die(epoch, *_):
            if epoch == 0:
                for c in ch.values():
                    c.cancel("host process killed")
                raise RuntimeError("host crashed")
        return run_host(ch, xh, p, on_epoch=die)

    results, errors = _run({
        "bank": lambda ch: run_guest(ch, xg, y, p),
        "tax": host,
        "operator": lambda ch: run_arbiter(ch, p),
    }, net)
    assert isinstance(errors["tax"], RuntimeError)
    assert isinstance(errors["bank"], (Cancelled, PeerUnavailable))
    assert isinstance(errors["operator"], (Cancelled, PeerUnavailable))
    assert not results
