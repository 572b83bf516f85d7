"""mTLS refusals: foreign CA, expired certificate, valid certificate of an unconfigured name."""

from __future__ import annotations

import datetime as dt
import logging
import shutil

import pytest

from node import config as node_config
from node.identity import init_federation, issue_node_identity
from node.jobs.manager import JobManager
from node.services import NodeServices
from node.transport import client
from node.transport.server import build_server
from pcnode.errors import AuthenticationError, status_for
from tests.federation import free_port, make_federation


@pytest.fixture
def tax(tmp_path):
    fed = make_federation(tmp_path, ["tax", "bank"])
    svc = NodeServices(fed.homes["tax"])
    server, port, _ = build_server(svc, JobManager(svc))
    server.start()
    yield fed, port
    server.stop(None)
    client.close_all()


def _intruder(tmp_path, name, ca_dir, port, trust_ca_from=None, **kw):
    home = tmp_path / f"intruder-{name}-{ca_dir.name}"
    issue_node_identity(home, name, ca_dir, **kw)
    node_config.write_initial(home, name, free_port(), free_port())
    if trust_ca_from is not None:
        shutil.copy(trust_ca_from, home / "tls" / "ca.pem")
    node_config.add_peer(home, "tax", f"127.0.0.1:{port}")
    return NodeServices(home)


def test_configured_peer_is_accepted(tax):
    fed, _ = tax
    assert NodeServices(fed.homes["bank"]).peer("tax").health() == "SERVING"


def test_foreign_ca_node_is_refused(tax, tmp_path):
    _fed, port = tax
    init_federation(tmp_path / "foreign")
    intruder = _intruder(tmp_path, "bank", tmp_path / "foreign", port)
    with pytest.raises(AuthenticationError) as err:
        intruder.peer("tax").health()
    assert status_for(err.value)[0] == "UNAUTHENTICATED"


def test_foreign_cert_presented_to_a_server_it_trusts_is_refused_by_the_server(tax, tmp_path):
    fed, port = tax
    init_federation(tmp_path / "foreign2")
    # The intruder trusts the real CA (so it accepts tax) but its own certificate is foreign:
    # only tax's TLS layer can refuse it. Our pre-flight check catches it first...
    intruder = _intruder(tmp_path, "bank", tmp_path / "foreign2", port,
                         trust_ca_from=fed.ca_dir / "ca.pem")
    with pytest.raises(AuthenticationError, match="own certificate"):
        intruder.peer("tax").health()
    # ...and if the pre-flight check is skipped, the server refuses the handshake.
    with pytest.raises(AuthenticationError, match="refused our certificate"):
        _without_preflight(intruder, port).list_catalog()


def _without_preflight(services, port):
    """A PeerClient that skips our own-certificate check, to reach the server's TLS layer."""
    from node.transport.generated.pcnode.v1 import node_pb2_grpc as pb_grpc

    stub = client.PeerClient.__new__(client.PeerClient)
    stub.services, stub.name = services, "tax"
    stub.address = f"127.0.0.1:{port}"
    stub._channel = client._grpc_channel(services, "tax", stub.address)
    stub._stub = pb_grpc.NodeStub(stub._channel)
    return stub


def test_expired_certificate_is_refused(tax, tmp_path):
    fed, port = tax
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    intruder = _intruder(tmp_path, "bank", fed.ca_dir, port, days=1, not_before=past)
    with pytest.raises(AuthenticationError, match="validity"):
        intruder.peer("tax").health()
    with pytest.raises(AuthenticationError, match="refused our certificate"):
        _without_preflight(intruder, port).list_catalog()


def test_unconfigured_name_is_unauthenticated_with_a_log_line(tax, tmp_path, caplog):
    fed, port = tax
    intruder = _intruder(tmp_path, "mallory", fed.ca_dir, port)
    with caplog.at_level(logging.WARNING), pytest.raises(AuthenticationError) as err:
        intruder.peer("tax").list_catalog()
    assert "not a configured peer" in str(err.value)
    assert status_for(err.value)[0] == "UNAUTHENTICATED"
    assert any("refused connection" in r.getMessage() and "mallory" in r.getMessage()
               for r in caplog.records)


def test_peer_added_while_serving_is_accepted_without_restart(tax, tmp_path):
    fed, port = tax
    intruder = _intruder(tmp_path, "mallory", fed.ca_dir, port)
    with pytest.raises(AuthenticationError):
        intruder.peer("tax").list_catalog()
    node_config.add_peer(fed.homes["tax"], "mallory", "127.0.0.1:9")
    assert intruder.peer("tax").list_catalog() == []
