"""GrpcChannel over real mTLS on loopback: payload sizes, ordering, timeouts, cancellation, loss."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from node.jobs.manager import JobManager
from node.services import NodeServices
from node.transport import client
from node.transport.server import build_server
from pcnode.errors import Cancelled, ChannelTimeout, PeerUnavailable
from tests.federation import make_federation


class LinkOnlyJobs(JobManager):
    """A JobManager that hands inbound links to the test instead of running a job."""

    def __init__(self, services: NodeServices) -> None:
        super().__init__(services)
        self.inbound: dict[str, object] = {}
        self.arrived = threading.Condition()

    def attach(self, job_id, caller, channel):  # type: ignore[override]
        with self.arrived:
            self.inbound[job_id] = channel
            self.arrived.notify_all()

        class _Job:
            class spec:
                timeout = 30.0

        return _Job()

    def wait(self, job_id: str):
        with self.arrived:
            assert self.arrived.wait_for(lambda: job_id in self.inbound, timeout=30)
            return self.inbound[job_id]


@pytest.fixture
def pair(tmp_path):
    fed = make_federation(tmp_path, ["alpha", "beta"])
    svc_a = NodeServices(fed.homes["alpha"])
    svc_b = NodeServices(fed.homes["beta"])
    jobs = LinkOnlyJobs(svc_b)
    server, _, _ = build_server(svc_b, jobs)
    server.start()
    counter = iter(range(10**6))

    def link(timeout: float = 30.0):
        job_id = f"{next(counter):032x}"
        a_end = svc_a.peer("beta").link(job_id, timeout)
        b_end = jobs.wait(job_id)
        b_end.timeout = timeout
        return a_end, b_end

    yield link, server
    server.stop(None)
    client.close_all()


def test_bytes_and_arrays_both_directions(pair):
    link, _ = pair
    a, b = link()
    a.send("x", b"hello")
    b.send("y", np.arange(10, dtype=np.int64))
    assert b.recv("x") == b"hello"
    assert np.array_equal(a.recv_array("y", dtype=np.int64), np.arange(10))
    a.send("empty", b"")
    assert b.recv("empty") == b""


def test_single_300mb_payload(pair):
    link, _ = pair
    a, b = link(timeout=120)
    payload = np.random.default_rng(1).integers(0, 255, size=300 << 20, dtype=np.uint8)
    sender = threading.Thread(target=a.send, args=("big", payload))
    sender.start()
    got = b.recv_array("big", dtype=np.uint8, timeout=120)
    sender.join()
    assert got.shape == payload.shape
    assert np.array_equal(got, payload)
    assert a.sent.hexdigest() == b.received.hexdigest()


def test_100k_small_messages_keep_order(pair):
    link, _ = pair
    a, b = link(timeout=120)
    n = 100_000

    def send_all():
        for i in range(n):
            a.send("m", i.to_bytes(4, "big"))

    t = threading.Thread(target=send_all)
    t.start()
    for i in range(n):
        assert b.recv("m") == i.to_bytes(4, "big")
    t.join()
    assert b.received.messages == n
    assert a.sent.hexdigest() == b.received.hexdigest()


def test_recv_timeout_names_peer_and_tag(pair):
    link, _ = pair
    a, _ = link()
    with pytest.raises(ChannelTimeout, match="'nothing' from beta"):
        a.recv("nothing", timeout=0.2)


def test_cancel_reaches_the_other_end(pair):
    link, _ = pair
    a, b = link()
    a.cancel("operator abort")
    with pytest.raises(Cancelled, match="operator abort"):
        b.recv("anything", timeout=30)


def test_vanished_peer_is_an_error_not_a_hang(pair):
    link, server = pair
    a, _ = link(timeout=60)
    server.stop(None)  # the serving peer disappears mid-job
    with pytest.raises(PeerUnavailable):
        a.recv("reply", timeout=60)

