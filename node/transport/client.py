"""``PeerClient``: this node calling one configured peer over mTLS.

Any process holding the node's home (the CLI, the SDK, ``pcnode serve``) can
act as the node for outbound calls. gRPC channels are cached per process and
peer, so one TCP/TLS connection carries every call and stream to that peer.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.transport.credentials import channel_credentials, client_options
from node.transport.generated.pcnode.v1 import node_pb2 as pb
from node.transport.generated.pcnode.v1 import node_pb2_grpc as pb_grpc
from node.transport.status import error_from_rpc
from node.transport.stream_channel import GrpcChannel
from pcnode.errors import ProtocolError

if TYPE_CHECKING:
    from node.services import NodeServices

#: Deadline for unary control calls (catalog, applications, job opening).
UNARY_TIMEOUT_S = 30.0

_channels: dict[tuple[str, str, str], grpc.Channel] = {}
_lock = threading.Lock()


def check_own_certificate(services: NodeServices) -> None:
    """Refuse to dial with a certificate peers would refuse anyway, and say why.

    Expired, not-yet-valid or foreign-CA certificates are caught here with a
    precise message instead of an opaque handshake failure at the peer.
    """
    from node.identity import verify_node_certificate
    from pcnode.errors import AuthenticationError

    cfg = services.config
    try:
        verify_node_certificate(cfg.tls_cert.read_bytes(), services.ca_certificate)
    except AuthenticationError as exc:
        raise AuthenticationError(
            f"this node's own certificate {cfg.tls_cert} is unusable: {exc.message}",
            hint="re-issue it from the federation CA (pcnode init with a new HOME)",
        ) from None


def _grpc_channel(services: NodeServices, peer: str, address: str) -> grpc.Channel:
    key = (str(services.config.home), peer, address)
    with _lock:
        ch = _channels.get(key)
        if ch is None:
            ch = grpc.secure_channel(address, channel_credentials(services.config),
                                     options=client_options(peer))
            _channels[key] = ch
        return ch


def close_all() -> None:
    """Close every cached channel (tests and process shutdown)."""
    with _lock:
        for ch in _channels.values():
            ch.close()
        _channels.clear()


class PeerClient:
    """Calls to one peer; every failure becomes a PcnodeError naming the peer."""

    def __init__(self, services: NodeServices, name: str) -> None:
        check_own_certificate(services)
        self.services = services
        self.name = name
        self.address = services.config.peer(name).address
        self._channel = _grpc_channel(services, name, self.address)
        self._stub = pb_grpc.NodeStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float = UNARY_TIMEOUT_S) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.name) from None

    def health(self, timeout: float = 5.0) -> str:
        """The peer's health status name (e.g. SERVING)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.name) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def open_job(self, spec: bytes, signature: bytes) -> pb.OpenJobReply:
        """Ask the peer to take part in a job."""
        return self._call("OpenJob", pb.OpenJobRequest(spec=spec, signature=signature))

    def cancel_job(self, job_id: str, reason: str) -> None:
        """Tell the peer to cancel a job (best effort)."""
        self._call("CancelJob", pb.CancelJobRequest(job_id=job_id, reason=reason), timeout=5.0)

    def link(self, job_id: str, timeout: float) -> GrpcChannel:
        """Open the data-plane stream for ``job_id`` and return our end of it."""
        ch = GrpcChannel(self.services.name, self.name, timeout)

        def requests():
            yield pb.Frame(hello=pb.Hello(job_id=job_id))
            yield from ch.outbound_frames()

        call = self._stub.Link(requests())
        ch.cancel_call = call.cancel
        threading.Thread(target=ch.pump, args=(call,), name=f"link-{self.name}",
                         daemon=True).start()
        return ch

    def _json(self, reply: pb.JsonReply) -> Any:
        try:
            return json.loads(reply.body)
        except ValueError:
            raise ProtocolError(f"{self.name} sent malformed JSON") from None

    def list_catalog(self) -> list[dict[str, Any]]:
        """Dataset metadata the peer lets us see (never rows)."""
        return self._json(self._call("ListCatalog", pb.ListCatalogRequest()))

    def submit_application(self, body: dict[str, Any]) -> dict[str, Any]:
        """File an application at the peer; returns the filed application."""
        return self._json(self._call("SubmitApplication",
                                     pb.JsonRequest(body=json.dumps(body).encode())))

    def application_status(self, app_id: str) -> dict[str, Any]:
        """Status of an application we filed at the peer."""
        return self._json(self._call("GetApplication",
                                     pb.GetApplicationRequest(application_id=app_id)))
